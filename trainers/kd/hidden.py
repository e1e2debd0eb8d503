"""Intermediate-layer transfer: Hinton KD plus a loss between hidden states (`hinton_hidden`).

After Moonshine (Crowley et al., NeurIPS 2018: a student that is a simple transformation of its
teacher, trained to match the teacher's intermediate representations) and Patient KD (Sun et al.,
EMNLP 2019). A student made of k of the teacher's n layers stands for the teacher in blocks of n/k
layers; the output of its layer j is pulled (MSE over the real word pieces) towards the output of
the last teacher layer of block j, `(j + 1) * n // k - 1`, with weight `args.hidden_weight`, on
top of the output KD. The teacher's hidden states are computed on the fly (too big to cache).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from distill_ner.trainers.kd.base import Phase
from distill_ner.trainers.kd.hinton import hinton_loss


def matched_teacher_layers(n_teacher: int, n_student: int) -> list[int]:
    """For each student layer, the teacher layer whose output it learns: the last of its block."""
    return [(j + 1) * n_teacher // n_student - 1 for j in range(n_student)]


def hidden_loss(student: list[torch.Tensor], teacher: list[torch.Tensor], mask: torch.Tensor) -> torch.Tensor:
    """Mean over the matched layers of the MSE between student and teacher hidden states [B, T, H] at `mask`."""
    pairs = [F.mse_loss(s[mask].float(), t[mask].float()) for s, t in zip(student, teacher, strict=True)]
    return torch.stack(pairs).mean()


class HintonHidden:
    uses_teacher = True
    matches_layers = True  # the student must be made of the teacher's layers

    def phases(self, args: Any) -> list[Phase]:
        alpha, temperature = args.alpha or 0.0, args.temperature
        return [Phase("train", args.epochs, lambda s, t, y, step, steps: hinton_loss(s, t, y, alpha, temperature), hidden_weight=args.hidden_weight)]


METHOD = HintonHidden()
