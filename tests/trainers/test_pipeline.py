"""The one training pipeline's cache of finished models: the same inputs reuse a model, any
setting that changes what is learned trains anew, and a student setting never retrains a teacher."""

from __future__ import annotations

import pytest

import distill_ner.trainers.teachers as teachers_module
import distill_ner.trainers.trainer as trainer
from distill_ner.data.spec import load_spec
from distill_ner.trainers.args import TrainingArgs
from distill_ner.trainers.inference import read_meta
from distill_ner.trainers.pipeline import student, teachers
from tests.trainers.conftest import tiny_args

pytestmark = pytest.mark.slow


def test_finished_models_are_reused_and_only_what_changed_is_trained(tiny_bert, data, tmp_path, monkeypatch):
    args = TrainingArgs(**tiny_args(tiny_bert, epochs=1, student_layers=1))
    spec = load_spec("species")
    messages: list[str] = []
    (teacher,) = teachers(data["train"], data["dev"], tmp_path / "teacher", args, spec=spec, log=messages.append)
    first = student(data["train"], data["dev"], teacher, tmp_path / "student", args, log=messages.append)
    assert messages == [] and read_meta(first).cache_key

    def no_training(*_, **__):
        raise AssertionError("trained again")

    monkeypatch.setattr(teachers_module, "train_teachers", no_training)
    monkeypatch.setattr(trainer, "train_student", no_training)
    student_only = args.model_copy(update={"temperature": 3.0, "student_layers": 2})
    assert teachers(data["train"], data["dev"], tmp_path / "teacher", student_only, spec=spec, log=messages.append) == [teacher]
    assert student(data["train"], data["dev"], teacher, tmp_path / "student", args, log=messages.append) == first
    assert len(messages) == 2 and all(m.startswith("reusing ") for m in messages)
    with pytest.raises(AssertionError, match="trained again"):  # a KD setting is part of what makes a student
        student(data["train"], data["dev"], teacher, tmp_path / "student", student_only, log=messages.append)
    with pytest.raises(AssertionError, match="trained again"):  # so are its data
        student(data["train"][1:], data["dev"], teacher, tmp_path / "student", args, log=messages.append)
    with pytest.raises(AssertionError, match="trained again"):  # and a teacher setting retrains the teacher
        teachers(data["train"], data["dev"], tmp_path / "teacher", args.model_copy(update={"learning_rate": 1e-3}), spec=spec, log=messages.append)
