"""Silver examples (LLM labels no human reviewed, left by a review budget) train at a lower weight
(`silver_weight`), or not at all."""

from __future__ import annotations

import json

import pytest
import torch

from tests.trainers.conftest import tiny_args
from distill_ner.data.example import Review
from distill_ner.trainers.args import TrainingArgs
from distill_ner.trainers.trainer import _Fit, silver_weighted, train_teacher


def mean_rows(outputs: torch.Tensor, teacher: torch.Tensor | None, labels: torch.Tensor) -> torch.Tensor:
    return outputs.mean()


def test_silver_rows_count_their_weight_in_the_loss():
    outputs = torch.tensor([1.0, 2.0, 3.0, 4.0], requires_grad=True)
    labels = torch.zeros(4)
    silver = torch.tensor([False, True, False, True])
    loss = silver_weighted(mean_rows, silver, 0.25, outputs, None, labels)
    assert loss.item() == pytest.approx(0.5 * 2.0 + 0.5 * 0.25 * 3.0)  # half the rows reviewed (mean 2), half silver (mean 3)
    loss.backward()
    assert outputs.grad.tolist() == pytest.approx([0.25, 0.0625, 0.25, 0.0625])  # a silver row moves the model a quarter as much
    assert silver_weighted(mean_rows, torch.zeros(4, dtype=torch.bool), 0.25, outputs, None, labels).item() == pytest.approx(2.5)  # no silver: as it was
    assert silver_weighted(mean_rows, torch.ones(4, dtype=torch.bool), 0.25, outputs, None, labels).item() == pytest.approx(0.25 * 2.5)


@pytest.mark.slow
def test_silver_examples_train_at_their_weight_or_not_at_all(tiny_bert, data, tmp_path, monkeypatch):
    first_losses: list[float] = []
    loss_of = _Fit._loss

    def recording(self, idx, phase, step, steps):
        loss = loss_of(self, idx, phase, step, steps)
        if step == 0:
            first_losses.append(loss.item())
        return loss

    monkeypatch.setattr(_Fit, "_loss", recording)
    reviewed = data["train"][:24]
    silver = [e.model_copy(update={"review": Review(status="silver")}) for e in reviewed]
    args = tiny_args(tiny_bert, epochs=1, relations=False)

    def trained(train, out, **more) -> dict:
        return json.loads((train_teacher(train, [], tmp_path / out, {**args, **more}) / "model.json").read_text())

    assert trained(reviewed, "reviewed")["n_train"] == 24
    assert trained(silver, "silver", silver_weight=0.25)["n_train"] == 24
    # the same windows in the same order from the same start: as silver, the first batch's loss is a quarter
    assert first_losses[1] == pytest.approx(0.25 * first_losses[0], rel=1e-4)
    # weight 0: silver examples are left out of training; by default they count half
    assert trained([*data["train"][24:48], *silver], "left-out", silver_weight=0.0)["n_train"] == 24
    assert TrainingArgs().silver_weight == 0.5
