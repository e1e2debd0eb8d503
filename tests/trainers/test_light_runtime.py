"""`pip install distill-ner` (no extras) runs an exported ONNX student: a fresh virtual environment
with only the package, no torch and none of the pipeline's machinery, loads it with `spacy.load`
and finds the same entities as the project's environment."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from distill_ner.trainers.export.to_spacy import export_spacy

pytest.importorskip("onnxruntime")
pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
PIPELINE_ONLY = ("torch", "prefect", "label_studio_sdk", "openai", "distributed", "matplotlib", "datasets")

# Loads the pipeline, prints its entities for each text (JSON), and which pipeline-only modules got imported.
LOAD = """
import json, sys
import spacy
nlp = spacy.load(sys.argv[1])
ents = [[(e.start_char, e.end_char, e.label_) for e in doc.ents] for doc in nlp.pipe(json.loads(sys.argv[2]))]
print(json.dumps({"ents": ents, "imported": sorted(m for m in sys.modules if m.split(".")[0] in json.loads(sys.argv[3]))}))
"""


@pytest.fixture(scope="module")
def light_python(tmp_path_factory) -> Path:
    """A fresh virtual environment with `pip install <repo>` and nothing else (about a minute).
    Built from a copy of the package's files: a build in the checkout would leave a `build/` there."""
    root = tmp_path_factory.mktemp("light")
    source = root / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "data", "annotators", "trainers", "flows"):
        (shutil.copytree if (REPO / name).is_dir() else shutil.copy2)(REPO / name, source / name, **({"ignore": shutil.ignore_patterns("__pycache__")} if (REPO / name).is_dir() else {}))
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    install = subprocess.run([str(python), "-m", "pip", "install", "-q", str(source)], capture_output=True, text=True, env=env, timeout=900)
    assert install.returncode == 0, install.stdout[-2000:] + install.stderr[-2000:]
    return python


def test_an_int8_onnx_student_runs_where_only_the_package_is_installed(light_python, teacher, data, tmp_path):
    texts = [e.text for e in data["test"]]
    pipeline = export_spacy(teacher, tmp_path / "onnx-int8", runtime="onnx", quantize="int8")
    args = [LOAD, str(pipeline), json.dumps(texts), json.dumps(PIPELINE_ONLY)]
    here = json.loads(subprocess.run([sys.executable, "-c", *args], capture_output=True, text=True, check=True).stdout)
    light = subprocess.run([str(light_python), "-c", *args], capture_output=True, text=True)
    assert light.returncode == 0, light.stderr[-3000:]
    result = json.loads(light.stdout)
    assert result["imported"] == []
    assert any(result["ents"]) and result["ents"] == here["ents"]
    no_torch = subprocess.run([str(light_python), "-c", "import torch"], capture_output=True, text=True)
    assert no_torch.returncode != 0 and "No module named 'torch'" in no_torch.stderr


def test_without_the_extras_a_torch_student_and_the_commands_say_what_to_install(light_python, teacher, tmp_path):
    pipeline = export_spacy(teacher, tmp_path / "torch")
    load = subprocess.run([str(light_python), "-c", "import spacy, sys; spacy.load(sys.argv[1])", str(pipeline)], capture_output=True, text=True)
    assert load.returncode != 0 and "distill-ner[torch]" in load.stderr.strip().splitlines()[-1]
    cli = subprocess.run([str(light_python.parent / "distill"), "--help"], capture_output=True, text=True)
    assert cli.returncode == 1 and "pip install 'distill-ner[pipeline]'" in cli.stderr and "Traceback" not in cli.stderr
