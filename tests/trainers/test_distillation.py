"""KD methods (the registry, Hinton KD, Annealing-KD) and the teacher-logits cache, on fixed tensors."""

import math

import pytest
import torch
import torch.nn.functional as F

from distill_ner.data.errors import DistillError
from distill_ner.trainers.args import TrainingArgs
from distill_ner.trainers.kd import check_kd, kd_method, kd_names, register_kd
from distill_ner.trainers.kd.annealing import annealing_factor, annealing_loss, annealing_temperature
from distill_ner.trainers.kd.hinton import hinton_loss
from distill_ner.trainers.teacher_cache import cached_teacher_logits

STUDENT = torch.tensor([[[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]]])
TEACHER = torch.tensor([[[2.0, 1.0, 0.0], [0.5, 0.5, 2.0]]])
LABELS = torch.tensor([[1, 2]])


def test_hinton_loss_is_cross_entropy_at_alpha_zero():
    expected = F.cross_entropy(STUDENT[0], LABELS[0])
    assert torch.allclose(hinton_loss(STUDENT, TEACHER, LABELS, alpha=0.0, temperature=3.0), expected)


def test_hinton_loss_matches_hand_computed_value():
    alpha, t = 0.7, 2.0
    kl = 0.0
    for s_row, t_row in zip(STUDENT[0].tolist(), TEACHER[0].tolist()):
        p = [math.exp(x / t) / sum(math.exp(y / t) for y in t_row) for x in t_row]
        q = [math.exp(x / t) / sum(math.exp(y / t) for y in s_row) for x in s_row]
        kl += sum(pi * math.log(pi / qi) for pi, qi in zip(p, q))
    kl /= 2  # mean over the two positions
    ce = 0.0
    for row, y in zip(STUDENT[0].tolist(), LABELS[0].tolist()):
        ce += -math.log(math.exp(row[y]) / sum(math.exp(x) for x in row))
    ce /= 2
    expected = alpha * t * t * kl + (1 - alpha) * ce
    assert hinton_loss(STUDENT, TEACHER, LABELS, alpha=alpha, temperature=t).item() == pytest.approx(expected, rel=1e-5)


def test_ignored_positions_do_not_count():
    labels = torch.tensor([[1, -100]])
    full = hinton_loss(STUDENT[:, :1], TEACHER[:, :1], labels[:, :1], alpha=0.5, temperature=2.0)
    assert hinton_loss(STUDENT, TEACHER, labels, alpha=0.5, temperature=2.0).item() == pytest.approx(full.item())


def test_annealing_temperature_steps_down_by_one_per_epoch_to_one():
    t_max = 4.0
    assert [annealing_temperature(e, t_max) for e in range(6)] == [4.0, 3.0, 2.0, 1.0, 1.0, 1.0]
    assert [annealing_factor(e, t_max) for e in range(5)] == pytest.approx([0.25, 0.5, 0.75, 1.0, 1.0])


def test_annealing_loss_regresses_on_scaled_teacher_logits():
    assert annealing_loss(TEACHER * 0.5, TEACHER, LABELS, 0.5).item() == pytest.approx(0.0)
    assert annealing_loss(STUDENT, TEACHER, LABELS, 1.0).item() == pytest.approx(F.mse_loss(STUDENT, TEACHER).item())


def test_annealing_phase_one_takes_one_epoch_per_temperature_and_phase_two_trains_on_the_labels():
    first, second = kd_method("annealing").phases(TrainingArgs(epochs=6, anneal_max_temperature=4.0))
    assert (first.name, first.epochs, first.early_stop, second.name, second.epochs, second.early_stop) == ("anneal", 4, False, "train", 6, True)
    steps = 40  # 10 batches per epoch over phase 1's four epochs
    assert first.loss(TEACHER * 0.25, TEACHER, LABELS, 0, steps).item() == pytest.approx(0.0)  # epoch 0: T = 4, phi = 1/4
    assert first.loss(TEACHER * 0.5, TEACHER, LABELS, 10, steps).item() == pytest.approx(0.0)  # epoch 1: T = 3, phi = 1/2
    assert first.loss(TEACHER, TEACHER, LABELS, 39, steps).item() == pytest.approx(0.0)  # last epoch: T = 1, the teacher itself
    assert second.loss(STUDENT, TEACHER, LABELS, 0, 1).item() == pytest.approx(F.cross_entropy(STUDENT[0], LABELS[0]).item())
    longer, _ = kd_method("annealing").phases(TrainingArgs(epochs=10, anneal_max_temperature=2.0, anneal_epoch_share=0.5))
    assert longer.epochs == 5


def test_hinton_phase_uses_the_arguments_alpha_and_temperature():
    (phase,) = kd_method("hinton").phases(TrainingArgs(alpha=0.7, temperature=3.0))
    assert phase.loss(STUDENT, TEACHER, LABELS, 0, 1).item() == pytest.approx(hinton_loss(STUDENT, TEACHER, LABELS, 0.7, 3.0).item())
    assert kd_method("hinton").uses_teacher and not kd_method("none").uses_teacher


def test_the_registry_lists_checks_and_extends_the_methods(tmp_path, monkeypatch):
    assert kd_names()[:3] == ["none", "hinton", "annealing"]
    with pytest.raises(DistillError, match="unknown KD method 'hintn'.*none, hinton, annealing"):
        check_kd("hintn")
    with pytest.raises(ValueError, match="unknown KD method"):
        TrainingArgs(kd="hintn")
    (tmp_path / "my_kd.py").write_text(
        "from trainers.kd.base import Phase, cross_entropy\n"
        "class Twice:\n"
        "    uses_teacher = False\n"
        "    def phases(self, args):\n"
        "        return [Phase('train', args.epochs, lambda s, t, y, step, steps: 2 * cross_entropy(s, y))]\n"
        "METHOD = Twice()\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr("distill_ner.trainers.kd.KD_METHODS", __import__("distill_ner.trainers.kd", fromlist=["KD_METHODS"]).KD_METHODS.copy())
    register_kd("twice", "my_kd")
    assert TrainingArgs(kd="twice").kd == "twice"
    (phase,) = kd_method("twice").phases(TrainingArgs(kd="twice"))
    assert phase.loss(STUDENT, None, LABELS, 0, 1).item() == pytest.approx(2 * F.cross_entropy(STUDENT[0], LABELS[0]).item())


def test_teacher_logits_are_computed_once_and_reused(tmp_path):
    (tmp_path / "heads.pt").write_bytes(b"weights")
    calls = []

    def compute():
        calls.append(1)
        return {"ner": [torch.randn(3, 5), torch.randn(2, 5)], "re": [torch.randn(4)]}

    inputs = [[1, 2, 3], [4, 5]]
    first = cached_teacher_logits(tmp_path, inputs, compute, "ner")
    second = cached_teacher_logits(tmp_path, inputs, compute, "ner")
    assert len(calls) == 1
    assert all(torch.equal(a, b) for k in ("ner", "re") for a, b in zip(first[k], second[k]))
    cached_teacher_logits(tmp_path, [[1, 2, 3], [4, 6]], compute, "ner")  # other inputs: a miss
    assert len(calls) == 2
