"""Several teachers, one soft target: per window, a weighted mean of the teachers' logits.

After Yuan et al., "Reinforced Multi-Teacher Selection for Knowledge Distillation" (AAAI 2021),
where a policy reads each teacher's probabilities and its loss on the gold labels of an example
and weights the teachers per example. Here the rule is fixed, and `equal` is the baseline:

- `equal`: every teacher weighs 1/N;
- `gold_loss`: softmax over teachers of minus each teacher's cross-entropy on the window's gold
  labels, so on each example the teachers that get it right count more (transfer-set windows,
  which have no gold, weigh the teachers equally).

Relation logits of a pair take the weights of the window the pair sits in.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

WEIGHTINGS = ("equal", "gold_loss")


def teacher_weights(window_logits: Sequence[torch.Tensor], labels: Sequence[int], weighting: str) -> torch.Tensor:
    """Weights [N] of N teachers on one window (tag logits [T, C] each, gold tag ids [T]; < 0: no gold)."""
    n = len(window_logits)
    target = torch.tensor(list(labels))
    gold = target >= 0
    if weighting == "equal" or n == 1 or not bool(gold.any()):
        return torch.full((n,), 1.0 / n)
    losses = torch.stack([F.cross_entropy(logits[: len(target)][gold].float(), target[gold]) for logits in window_logits])
    return torch.softmax(-losses, dim=0)


def combine_teachers(
    ner: Sequence[Sequence[torch.Tensor]], re: Sequence[Sequence[torch.Tensor]], labels: Sequence[Sequence[int]], pair_windows: Sequence[int], weighting: str,
) -> tuple[list[torch.Tensor], list[torch.Tensor], list[float]]:
    """Combined tag logits per window and relation logits per pair from N teachers' (`ner[i][w]`,
    `re[i][p]`), and each teacher's mean weight over the windows (for the record)."""
    if weighting not in WEIGHTINGS:
        raise ValueError(f"teacher weighting {weighting!r}: use {', '.join(WEIGHTINGS)}")
    weights = [teacher_weights([t[w] for t in ner], labels[w], weighting) for w in range(len(labels))]
    tags = [sum(weights[w][i] * ner[i][w].float() for i in range(len(ner))) for w in range(len(labels))]
    pairs = [sum(weights[w][i] * re[i][p].float() for i in range(len(re))) for p, w in enumerate(pair_windows)]
    mean = torch.stack(weights).mean(0).tolist() if weights else []
    return tags, pairs, [round(v, 4) for v in mean]
