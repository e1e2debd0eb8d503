"""Annealing-KD (Jafari et al., EACL 2021), as the authors' code runs it (huawei-noah/Efficient-NLP).

Phase 1 regresses the student's logits on `phi(T) * teacher logits` (MSE), with
`phi(T) = 1 - (T - 1) / t_max` and the temperature T stepping down by one each epoch, from t_max
to 1, so the student first matches a flattened teacher and ends on the teacher itself. Phase 1
takes at least t_max epochs (the last ones at T = 1). Phase 2 starts from the best phase-1 epoch
on dev, with a fresh optimizer, and trains on the hard labels (cross-entropy) with early stopping
for `args.epochs` epochs.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from distill_ner.trainers.kd.base import Phase, cross_entropy, tagged


def phase_one_epochs(t_max: float, share_of: int = 0, share: float = 0.0) -> int:
    """Epochs of phase 1: one per temperature step (ceil(t_max)), more if `share` of `share_of` epochs is more."""
    return max(math.ceil(t_max), round(share_of * share))


def annealing_temperature(epoch: int, t_max: float) -> float:
    """The phase-1 temperature of epoch `epoch` (0-based): t_max, t_max - 1, ..., down to 1 and then 1."""
    return max(1.0, t_max - epoch)


def annealing_factor(epoch: int, t_max: float) -> float:
    """phi(T) = 1 - (T - 1) / t_max: 1/t_max in the first epoch, 1 from epoch ceil(t_max) - 1 on."""
    return 1.0 - (annealing_temperature(epoch, t_max) - 1.0) / t_max


def annealing_loss(student: torch.Tensor, teacher: torch.Tensor, labels: torch.Tensor, factor: float) -> torch.Tensor:
    """Phase-1 Annealing-KD loss: MSE between student logits and `factor * teacher logits`."""
    s, t, _ = tagged(student, teacher, labels)
    if s.numel() == 0:
        return student.sum() * 0.0
    return F.mse_loss(s, factor * t)


class Annealing:
    uses_teacher = True

    def phases(self, args: Any) -> list[Phase]:
        t_max = args.anneal_max_temperature
        first = phase_one_epochs(t_max, args.epochs, args.anneal_epoch_share)

        def phase_one(student: torch.Tensor, teacher: torch.Tensor | None, labels: torch.Tensor, step: int, steps: int) -> torch.Tensor:
            epoch = step * first // max(1, steps)
            return annealing_loss(student, teacher, labels, annealing_factor(epoch, t_max))

        return [
            Phase("anneal", first, phase_one, early_stop=False),
            Phase("train", args.epochs, lambda s, t, y, step, steps: cross_entropy(s, y)),
        ]


METHOD = Annealing()
