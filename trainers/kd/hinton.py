"""Hinton KD (Hinton et al., 2015): soft targets of the teacher at temperature T plus the gold labels.

`alpha * T^2 * KL(softmax(teacher/T) || softmax(student/T)) + (1 - alpha) * CE(student, labels)`,
averaged over positions whose label is not -100 (word pieces for NER, pairs for relations); on
transfer-set positions (label SOFT_ONLY, no gold) only the KL term applies.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from distill_ner.trainers.kd.base import Phase, cross_entropy, tagged


def hinton_loss(student: torch.Tensor, teacher: torch.Tensor, labels: torch.Tensor, alpha: float, temperature: float) -> torch.Tensor:
    """Hinton KD loss on logits [..., C] with hard labels [...] (-100 = ignored position)."""
    s, t, y = tagged(student, teacher, labels)
    if s.numel() == 0:
        return student.sum() * 0.0
    ce = cross_entropy(s, y)  # gold positions only; transfer-set positions (SOFT_ONLY) have the KL term alone
    if alpha == 0:
        return ce
    kl = F.kl_div(F.log_softmax(s / temperature, -1), F.log_softmax(t / temperature, -1), log_target=True, reduction="batchmean")
    return alpha * temperature**2 * kl + (1 - alpha) * ce


class Hinton:
    uses_teacher = True

    def phases(self, args: Any) -> list[Phase]:
        alpha, temperature = args.alpha or 0.0, args.temperature
        return [Phase("train", args.epochs, lambda student, teacher, labels, step, steps: hinton_loss(student, teacher, labels, alpha, temperature))]


METHOD = Hinton()
