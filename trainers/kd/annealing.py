"""Annealing-KD (Jafari et al., 2021).

Phase 1 regresses the student's logits on `phi(T) * teacher logits` (MSE), where
`phi(T) = 1 - (T - 1) / t_max` and T steps down from t_max to 1, so phi rises step by step from
1/t_max to 1 (`annealing_factor`). Phase 2 trains on the hard labels (cross-entropy) with early
stopping. `args.anneal_epoch_share` of the epochs go to phase 1.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from trainers.kd.base import Phase, cross_entropy, tagged


def annealing_temperature(step: int, total_steps: int, t_max: float) -> float:
    """Phase-1 temperature: t_max for the first 1/t_max of the steps, then one lower each stretch, down to 1."""
    levels = max(1, math.ceil(t_max))
    stretch = max(1, math.ceil(total_steps / levels))
    return max(1.0, t_max - step // stretch)


def annealing_factor(step: int, total_steps: int, t_max: float) -> float:
    """phi(T) = 1 - (T - 1) / t_max: 1/t_max at the first step, 1 at the last stretch."""
    return 1.0 - (annealing_temperature(step, total_steps, t_max) - 1.0) / t_max


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
        first = max(1, round(args.epochs * args.anneal_epoch_share))
        return [
            Phase("anneal", first, lambda s, t, y, step, steps: annealing_loss(s, t, y, annealing_factor(step, steps, t_max)), early_stop=False),
            Phase("train", max(1, args.epochs - first), lambda s, t, y, step, steps: cross_entropy(s, y)),
        ]


METHOD = Annealing()
