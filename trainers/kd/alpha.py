"""The KD weight for a pruned student: the smaller the kept fraction, the more the student learns
from the teacher's soft targets (the teacher saw all the data) and the less from the hard labels
of the few examples left, after "Distilling the Knowledge in Data Pruning" (Ben-Baruch et al.,
ICML 2025).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from distill_ner.data.errors import DistillError

# (kept fraction, KD weight alpha) anchors, linearly interpolated and flat outside:
# alpha = 1 - fraction / 2 between 10% (alpha 0.95) and all the data (alpha 0.5).
DEFAULT_ALPHA_SCHEDULE: tuple[tuple[float, float], ...] = ((0.1, 0.95), (1.0, 0.5))


def kd_alpha_for_fraction(fraction: float, schedule: Sequence[tuple[float, float]] | None = None) -> float:
    """The weight of the KD loss (the hard-label loss gets `1 - alpha`) for a kept fraction.

    Default schedule: 0.5 on all the data, rising linearly to 0.95 at 10% and below
    (0.75 at 50%). Pass `schedule` as `(fraction, alpha)` anchors to override it.
    """
    if not 0 < fraction <= 1:
        raise DistillError(f"pruning fraction must be in (0, 1], got {fraction}")
    anchors = sorted(schedule or DEFAULT_ALPHA_SCHEDULE)
    if not anchors or any(not 0 <= a <= 1 for _, a in anchors):
        raise DistillError(f"KD alpha schedule {list(anchors)}: needs at least one (fraction, alpha) pair with alpha in [0, 1]")
    xs, ys = zip(*anchors)
    return round(float(np.interp(fraction, xs, ys)), 4)


def parse_alpha_schedule(text: str) -> list[tuple[float, float]]:
    """`"0.1:0.9,1.0:0.5"` -> [(0.1, 0.9), (1.0, 0.5)] (for the CLI)."""
    try:
        pairs = [tuple(float(x) for x in part.split(":")) for part in text.split(",") if part.strip()]
    except ValueError:
        raise DistillError(f"KD alpha schedule {text!r}: use fraction:alpha pairs, e.g. 0.1:0.9,1.0:0.5") from None
    if not pairs or any(len(p) != 2 for p in pairs):
        raise DistillError(f"KD alpha schedule {text!r}: use fraction:alpha pairs, e.g. 0.1:0.9,1.0:0.5")
    return pairs  # type: ignore[return-value]
