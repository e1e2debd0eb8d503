"""The LLM as a soft teacher: its own annotation of a text, with k-sample agreement as confidence.

With `llm.k_samples` k > 1, every entity of a generated example carries the share of the k
samples that found it (`annotators.generate.score_agreement`): a span found by 2 of 3 samples
is 0.67 of its label on its words and 0.33 of O. `llm_log_probs` turns such an annotation into
per-piece log-probabilities over the BIO tags, the shape of a teacher's logits, so the LLM's
uncertainty is kept instead of thrown away. The trainer uses it as one more teacher on the
transfer-set texts, which no human reviewed (`TrainingArgs.llm_teacher`, on by default): their
soft target is the mean of the model teacher's and the LLM's log-probabilities (a geometric mean).
An entity without a confidence counts as certain. Only texts the LLM annotated count
(`llm_taught`): a transfer text from a user's file has no LLM annotation, and its empty
entity list would otherwise pull the student towards O.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from distill_ner.data.example import Entity, Example

FLOOR = 1e-3  # no tag gets less than this probability: the LLM is never certain


def llm_taught(transfer: Sequence[Example], enabled: bool) -> list[bool]:
    """Per transfer text, whether the LLM's annotation is one more teacher on it: `llm_teacher` is
    on and the text's entities are an LLM's annotation (its source names a model)."""
    return [enabled and e.source.model is not None for e in transfer]


def llm_log_probs(entities: Sequence[Entity], offsets: Sequence[tuple[int, int]], starts: Sequence[bool], tags: Sequence[str]) -> torch.Tensor:
    """Log-probabilities [n_pieces, n_tags] of the BIO tags from confidence-weighted entities.

    `offsets` are the pieces' char offsets and `starts` whether each starts a word; a piece
    inside an entity gets B- (its first word) or I- (later words) of the entity's label with the
    entity's confidence and O with the rest; every other piece is O.
    """
    index = {t: i for i, t in enumerate(tags)}
    probs = torch.zeros(len(offsets), len(tags))
    probs[:, index["O"]] = 1.0
    for e in entities:
        if f"B-{e.label}" not in index:
            continue  # a label the student does not have
        confidence = 1.0 if e.confidence is None else float(e.confidence)
        first = True
        for i, (s, t) in enumerate(offsets):
            if t <= s or s < e.start or s >= e.end or not starts[i]:
                continue  # outside the entity, or a continuation piece (no label of its own)
            probs[i] = 0.0
            probs[i, index[("B-" if first else "I-") + e.label]] = confidence
            probs[i, index["O"]] = 1.0 - confidence
            first = False
    probs = probs.clamp(min=FLOOR)
    return (probs / probs.sum(-1, keepdim=True)).log()
