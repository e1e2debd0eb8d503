"""What a KD method is: phases of training, each with the loss of one batch."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import torch
import torch.nn.functional as F

from distill_ner.trainers.ner import IGNORE

SOFT_ONLY = -1  # a position with the teacher's soft target but no gold label (transfer-set texts)

# loss(student logits [..., C], teacher logits [..., C] or None, labels [...], step, total steps of the phase)
Loss = Callable[[torch.Tensor, torch.Tensor | None, torch.Tensor, int, int], torch.Tensor]


@dataclass(frozen=True)
class Phase:
    """`epochs` of training with `loss`; with `early_stop`, the best dev evaluation is kept and
    training stops after `patience` evaluations without improvement."""

    name: str
    epochs: int
    loss: Loss
    early_stop: bool = True
    hidden_weight: float = 0.0  # > 0: add the intermediate-layer loss (trainers/kd/hidden.py) with this weight


class KDMethod(Protocol):
    """A KD method: whether it needs the teacher's logits, and its phases for given arguments."""

    uses_teacher: bool

    def phases(self, args: Any) -> list[Phase]: ...


def tagged(student: torch.Tensor, teacher: torch.Tensor | None, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """Student logits, teacher logits and labels at the positions whose label is not IGNORE (the
    labels of transfer-set positions are SOFT_ONLY: only a teacher's loss may use them)."""
    mask = labels != IGNORE
    return student[mask].float(), (teacher[mask].float() if teacher is not None else None), labels[mask]


def cross_entropy(student: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over the positions with a gold label (0 with a gradient when there are none)."""
    mask = labels >= 0
    return F.cross_entropy(student[mask].float(), labels[mask]) if mask.any() else student.sum() * 0.0
