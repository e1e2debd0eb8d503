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
- `margin`: `1 -` the model's smallest margin over the words of a text (the probability of its
  best tag minus that of the second best, at its least sure word), which needs no label.
- `review_priority`: what the active-learning rounds send to people first, the mean of the
  model's `margin` doubt, its `disagreement` with the LLM and the LLM's own doubt (1 - the share
  of its samples that agree).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np
import torch

from distill_ner.data.errors import DistillError
from distill_ner.data.registry import Registry
from distill_ner.data.metrics import set_f1
from distill_ner.data.example import Entity, Example, example_confidence, llm_entities
from distill_ner.data.words import words_of
from distill_ner.trainers.inference import predict_entities, read_meta, tag_pass, write_meta
from distill_ner.trainers.modeling import load_model, ner_batch
from distill_ner.trainers.ner import IGNORE, ner_features, word_starts
from distill_ner.trainers.trainer import train_teacher



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
    return set_f1(((e.start, e.end, e.label) for e in gold), ((e.start, e.end, e.label) for e in predicted))


def disagreement_scores(examples: Sequence[Example], predicted: Sequence[Sequence[Entity]]) -> dict[str, float]:
    """`1 - entity F1` between each example's LLM entities and the teacher's predicted entities."""
    return {e.id: round(1.0 - entity_f1(llm_entities(e), p), 6) for e, p in zip(examples, predicted, strict=True)}


# --- scores from a teacher directory ------------------------------------------------------
@torch.inference_mode()
def per_example_scores(model_dir: str | Path, examples: Sequence[Example], kind: str = "teacher_loss", batch_size: int = 64) -> dict[str, float]:
    """`{example id: score}`: mean tag cross-entropy (`teacher_loss`) or mean EL2N (`el2n`) of a model.

    Higher is harder. Use the final teacher for `teacher_loss` and an early checkpoint (e.g.
    `train_teacher(..., args with epochs=1)`) for `el2n`.
    """
    if kind not in ("teacher_loss", "el2n"):
        raise DistillError(f"unknown score {kind!r} (use teacher_loss or el2n)")
    loaded = load_model(model_dir)
    feats, _ = ner_features(loaded.tokenizer, examples, loaded.tags, loaded.meta.max_length, loaded.meta.stride, loaded.meta.subword_labels)
    total = [0.0] * len(examples)
    count = [0] * len(examples)
    fn = token_losses if kind == "teacher_loss" else el2n
    for start in range(0, len(feats), batch_size):
        chunk = feats[start : start + batch_size]
        b = ner_batch(chunk, loaded.tokenizer.pad_token_id or 0, loaded.device)
        values = fn(loaded.model(b["ids"], b["mask"])[0], b["labels"]).cpu().tolist()
        for f, v in zip(chunk, values):
            total[f.example] += v
            count[f.example] += 1
    return {e.id: round(total[k] / max(1, count[k]), 6) for k, e in enumerate(examples)}


def predicted_entities(model_dir: str | Path, examples: Sequence[Example], batch_size: int = 64) -> list[list[Entity]]:
    """A model's entities for each example's text (for the `disagreement` pruning score)."""
    return predict_entities(load_model(model_dir), examples, batch_size)


@torch.inference_mode()
def margin_scores(model_dir: str | Path, examples: Sequence[Example], batch_size: int = 64) -> dict[str, float]:
    """`{example id: 1 - smallest word margin}` of a model on unlabelled texts (higher: less sure)."""
    loaded = load_model(model_dir)
    out: dict[str, float] = {}
    for start in range(0, len(examples), batch_size):
        chunk = list(examples[start : start + batch_size])
        tagged = tag_pass(loaded, chunk)
        if tagged is None:
            out.update({e.id: 0.0 for e in chunk})
            continue
        for example, enc, logits in zip(chunk, tagged.encoded, tagged.logits):
            rows = logits[np.array(word_starts(words_of(example), enc.offsets), dtype=bool)]
            if not len(rows):
                out[example.id] = 0.0
                continue
            probs = np.exp(rows - rows.max(-1, keepdims=True))
            top = np.sort(probs / probs.sum(-1, keepdims=True), axis=-1)[:, -2:]
            out[example.id] = round(1.0 - float((top[:, 1] - top[:, 0]).min()), 6)
    return out


def review_priority(model_dir: str | Path, examples: Sequence[Example]) -> dict[str, float]:
    """`{example id: need of a human}` from 0 to 1 for texts nobody reviewed yet (higher first): the
    mean of the model's doubt (`margin_scores`), its disagreement with the LLM's labels (a text the
    model reads otherwise is likely an LLM error) and the LLM's own doubt (1 - `example_confidence`;
    0 with one sample)."""
    doubt = margin_scores(model_dir, examples)
    disagree = disagreement_scores(examples, predicted_entities(model_dir, examples))
    llm_doubt = {e.id: 1.0 - c if (c := example_confidence(e)) is not None else 0.0 for e in examples}
    return {e.id: round((doubt[e.id] + disagree[e.id] + llm_doubt[e.id]) / 3, 6) for e in examples}


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
    if method not in SCORERS:
        raise DistillError(f"no scores for pruning method {method!r} (registered: {', '.join(SCORERS)})")
    return SCORERS[method](teacher_dir, examples, dev, early_dir) if examples else {}


Scorer = Callable[[str | Path, Sequence[Example], Sequence[Example] | None, str | Path | None], dict[str, float]]
SCORERS: Registry[Scorer] = Registry("pruning method", "distill_ner.hardness_scores", {  # -> hardness scores (teacher_dir, examples, dev, early_dir)
    "teacher_loss": lambda teacher, examples, dev, early: per_example_scores(teacher, examples, "teacher_loss"),
    "el2n": lambda teacher, examples, dev, early: per_example_scores(early_teacher(teacher, examples, dev, early), examples, "el2n"),
    "disagreement": lambda teacher, examples, dev, early: disagreement_scores(examples, predicted_entities(teacher, examples)),
    "margin": lambda teacher, examples, dev, early: margin_scores(teacher, examples),
})


def early_teacher(teacher_dir: str | Path, examples: Sequence[Example], dev: Sequence[Example] | None, early_dir: str | Path | None = None, epochs: int = 1) -> Path:
    """A teacher trained for `epochs` epoch(s) only (for EL2N), reused if already trained on these examples."""
    early = Path(early_dir) if early_dir else Path(f"{Path(teacher_dir).as_posix().rstrip('/')}-early")
    key = hashlib.sha1("\n".join(sorted(e.id for e in examples)).encode()).hexdigest()[:16]
    if (early / "model.json").exists() and (early_dir is not None or read_meta(early).data_key == key):
        return early
    if not dev:
        raise DistillError(f"EL2N needs an early teacher: none at {early}, and no dev split to train one")
    meta = read_meta(teacher_dir)
    args = {**meta.args, "encoder": meta.source_encoder, "epochs": epochs, "progress": False}
    train_teacher(examples, dev, early, args)
    write_meta(early, read_meta(early).model_copy(update={"data_key": key}))
    return early
