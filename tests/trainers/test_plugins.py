"""A package of the user's own adds a KD method through an entry point, without editing ours."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from distill_ner.data.formats import write_jsonl

pytestmark = pytest.mark.slow

PLUGIN = '''
import torch.nn.functional as F
from distill_ner.trainers.kd.base import Phase, tagged

def teacher_ce(student, teacher, labels, step, steps):  # cross-entropy on the teacher's argmax, not the gold labels
    s, t, _ = tagged(student, teacher, labels)
    return F.cross_entropy(s, t.argmax(-1))

class TeacherCE:
    uses_teacher = True
    def phases(self, args):
        return [Phase("train", args.epochs, teacher_ce)]

METHOD = TeacherCE()
'''
PYPROJECT = '''
[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "distill-teacher-ce"
version = "0.1.0"

[project.entry-points."distill_ner.kd_methods"]
teacher_ce = "distill_teacher_ce:METHOD"
'''


def test_a_kd_method_of_an_installed_plug_in_trains_a_student(teacher, data, tmp_path):
    package = tmp_path / "plugin"
    (package / "distill_teacher_ce").mkdir(parents=True)
    (package / "distill_teacher_ce" / "__init__.py").write_text(PLUGIN)
    (package / "pyproject.toml").write_text(PYPROJECT)
    site = tmp_path / "site"  # installed there, not into the shared environment; on PYTHONPATH below
    pip = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--target", str(site), str(package)]
    subprocess.run(pip, check=True, capture_output=True, timeout=300)
    train, dev = write_jsonl(tmp_path / "train.jsonl", data["train"]), write_jsonl(tmp_path / "dev.jsonl", data["dev"])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    command = [sys.executable, "-m", "distill_ner.flows.cli", "train", "--train", str(train), "--dev", str(dev), "--teacher", str(teacher),
               "--kd", "teacher_ce", "--student-layers", "1", "--epochs", "1", "-s", "progress=false", "--out", str(tmp_path / "models")]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    student = json.loads((tmp_path / "models" / "student-teacher_ce" / "model.json").read_text())
    assert student["kd"] == "teacher_ce" and student["teacher"] == str(teacher)
    without = subprocess.run(command, capture_output=True, text=True, timeout=300)  # the same command where the plug-in is not installed
    assert without.returncode != 0 and "--kd 'teacher_ce'" in without.stderr
