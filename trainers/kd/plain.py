"""No KD: cross-entropy on the gold labels only (the teacher's training, and the baseline)."""

from __future__ import annotations

from typing import Any

from distill_ner.trainers.kd.base import Phase, cross_entropy


class Plain:
    uses_teacher = False

    def phases(self, args: Any) -> list[Phase]:
        return [Phase("train", args.epochs, lambda student, teacher, labels, step, steps: cross_entropy(student, labels))]


METHOD = Plain()
