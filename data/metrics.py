"""Precision, recall and F1 from counts or sets: the one definition the project's scores share.

Corpus-level NER scores go through seqeval (`trainers.evaluate`); these serve the comparisons of
span sets (LLM against human, annotator against annotator, teacher against LLM).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable


def prf(tp: int, fp: int, fn: int) -> dict[str, float | int]:
    """Precision, recall and F1 (0 where undefined), with `support` (gold) and `predicted` counts."""
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return {"precision": round(p, 4), "recall": round(r, 4), "f1": round(f, 4), "support": tp + fn, "predicted": tp + fp}


def set_f1(gold: Iterable[Hashable], predicted: Iterable[Hashable]) -> float:
    """Exact-match F1 between two sets of items; two empty sets agree (1.0)."""
    g, p = set(gold), set(predicted)
    if not g and not p:
        return 1.0
    return 2 * len(g & p) / (len(g) + len(p))
