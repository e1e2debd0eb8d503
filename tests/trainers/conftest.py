"""A tiny trained teacher and its data, shared by the trainer tests (trained once per session)."""

from __future__ import annotations

from pathlib import Path

import pytest

from distill_ner.data.example import Example
from distill_ner.data.spec import load_spec
from tests.trainers.synthetic import make_examples
from distill_ner.trainers.trainer import train_teacher


def tiny_args(tiny_bert: Path, **more) -> dict:
    """Training arguments for the tiny random BERT: a few seconds per run."""
    return {"encoder": str(tiny_bert), "epochs": 6, "batch_size": 8, "learning_rate": 3e-3, "head_learning_rate": 3e-3, "max_length": 64, "stride": 16, "progress": False, "threads": 2, **more}


@pytest.fixture(scope="session")
def data() -> dict[str, list[Example]]:
    ex = make_examples(90, seed=1)
    return {"train": ex[:60], "dev": ex[60:75], "test": ex[75:]}


@pytest.fixture(scope="session")
def teacher(tiny_bert, data, tmp_path_factory) -> Path:
    return train_teacher(data["train"], data["dev"], tmp_path_factory.mktemp("models") / "teacher", tiny_args(tiny_bert), spec=load_spec("species"))
