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

import hashlib
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch

from data.errors import DistillError
from data.example import DiffEntity, Entity, Example, ReviewDiff

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
    diff = example.review.diff or ReviewDiff()
    added = {_key(x) for x in diff.entities_added}
    removed = [Entity(start=x.start, end=x.end, label=x.label) for x in diff.entities_removed]
    return [e for e in example.entities if _key(e) not in added] + removed


def _key(e: Entity | DiffEntity) -> tuple[int, int, str]:
    return (e.start, e.end, e.label)


def disagreement_scores(examples: Sequence[Example], predicted: Sequence[Sequence[Entity]]) -> dict[str, float]:
    """`1 - entity F1` between each example's LLM entities and the teacher's predicted entities."""
    return {e.id: round(1.0 - entity_f1(llm_entities(e), p), 6) for e, p in zip(examples, predicted, strict=True)}


# --- scores from a teacher directory ------------------------------------------------------
def compute_scores(
    method: str,
    teacher_dir: str | Path,
    examples: Sequence[Example],
    dev: Sequence[Example] | None = None,
    early_dir: str | Path | None = None,
) -> dict[str, float]:
    """`{example id: hardness}` for `teacher_loss`, `el2n` or `disagreement`, from the teacher.

    EL2N uses an early teacher: `early_dir` if it holds a model, else one trained here for one
    epoch with the teacher's own settings on `examples` (needs `dev`), saved next to the
    teacher as `<teacher_dir>-early` and reused while the examples stay the same.
    """
    from trainers.evaluate import per_example_scores, predicted_entities

    if not examples:
        return {}
    if method == "teacher_loss":
        return per_example_scores(teacher_dir, examples, "teacher_loss")
    if method == "disagreement":
        return disagreement_scores(examples, predicted_entities(teacher_dir, examples))
    if method == "el2n":
        return per_example_scores(early_teacher(teacher_dir, examples, dev, early_dir), examples, "el2n")
    raise DistillError(f"no scores for pruning method {method!r} (use teacher_loss, el2n or disagreement)")


def early_teacher(teacher_dir: str | Path, examples: Sequence[Example], dev: Sequence[Example] | None, early_dir: str | Path | None = None, epochs: int = 1) -> Path:
    """A teacher trained for `epochs` epoch(s) only (for EL2N), reused if already trained on these examples."""
    from trainers.modeling import read_meta
    from trainers.trainer import train_teacher

    early = Path(early_dir) if early_dir else Path(f"{Path(teacher_dir).as_posix().rstrip('/')}-early")
    key = hashlib.sha1("\n".join(sorted(e.id for e in examples)).encode()).hexdigest()[:16]
    if (early / "model.json").exists() and (early_dir is not None or read_meta(early).get("data_key") == key):
        return early
    if not dev:
        raise DistillError(f"EL2N needs an early teacher: none at {early}, and no dev split to train one")
    meta = read_meta(teacher_dir)
    args = {**meta.get("args", {}), "encoder": meta.get("source_encoder"), "epochs": epochs, "progress": False}
    train_teacher(examples, dev, early, args)
    meta_path = early / "model.json"
    meta_path.write_text(json.dumps({**json.loads(meta_path.read_text()), "data_key": key}, indent=1) + "\n", encoding="utf-8")
    return early
