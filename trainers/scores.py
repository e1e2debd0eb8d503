"""Per-example scores for pruning, from a teacher: loss, EL2N, and LLM-vs-teacher disagreement.

All three are hardness scores (higher = harder or more doubtful), returned as `{example id: score}`
for `data.prune.ToFraction`:

- `teacher_loss`: mean token cross-entropy of the (fully trained) teacher against the gold tags.
- `el2n`: mean over tokens of the L2 norm of `softmax(logits) - onehot(gold)` (Paul et al., 2021),
  taken from an early teacher (a checkpoint after one epoch or so), when scores still separate
  easy from hard examples.
- `disagreement`: `1 - entity F1` between the LLM's own annotation (recovered from
  `review.diff` when a human corrected it, else the example's entities) and the teacher's
  prediction.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch

from data.example import Entity, Example

IGNORE = -100  # label id of word pieces that carry no tag (special tokens, continuation pieces)


def token_losses(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy per sequence over tagged tokens; `logits` [B, T, C], `labels` [B, T]."""
    per_token = torch.nn.functional.cross_entropy(logits.transpose(1, 2).float(), labels, ignore_index=IGNORE, reduction="none")
    return _mean_over_tagged(per_token, labels)


def el2n(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean EL2N per sequence over tagged tokens: `||softmax(logits) - onehot(label)||_2`."""
    probs = logits.float().softmax(-1)
    onehot = torch.nn.functional.one_hot(labels.clamp(min=0), probs.shape[-1]).float()
    return _mean_over_tagged((probs - onehot).norm(dim=-1), labels)


def _mean_over_tagged(values: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    mask = (labels != IGNORE).float()
    return (values * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)


def entity_f1(gold: Iterable[Entity], predicted: Iterable[Entity]) -> float:
    """Exact-match (start, end, label) F1 between two entity sets; two empty sets agree (1.0)."""
    g = {(e.start, e.end, e.label) for e in gold}
    p = {(e.start, e.end, e.label) for e in predicted}
    if not g and not p:
        return 1.0
    return 2 * len(g & p) / (len(g) + len(p))


def llm_entities(example: Example) -> list[Entity]:
    """The LLM's own entities for an example: the verified ones, with the human's changes undone.

    `review.diff` (written by `annotators.label_studio.review_diff` when a reviewer corrected
    the example) lists `entities_added` and `entities_removed`; without a diff the example's
    entities are the LLM's (accepted as they were, or data brought in from elsewhere).
    """
    diff: dict[str, Any] = example.review.diff or {}
    added = {_key(x) for x in diff.get("entities_added", []) if _is_entity(x)}
    removed = [Entity(start=x["start"], end=x["end"], label=x["label"]) for x in diff.get("entities_removed", []) if _is_entity(x)]
    return [e for e in example.entities if _key(e) not in added] + removed


def _is_entity(item: Any) -> bool:
    return isinstance(item, dict) and {"start", "end", "label"} <= item.keys()


def _key(e: Entity | dict) -> tuple[int, int, str]:
    return (e["start"], e["end"], e["label"]) if isinstance(e, dict) else (e.start, e.end, e.label)


def disagreement_scores(examples: Sequence[Example], predicted: Sequence[Sequence[Entity]]) -> dict[str, float]:
    """`1 - entity F1` between each example's LLM entities and the teacher's predicted entities."""
    return {e.id: round(1.0 - entity_f1(llm_entities(e), p), 6) for e, p in zip(examples, predicted, strict=True)}
