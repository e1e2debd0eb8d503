"""Running a trained model without torch: `model.json`, a loaded model, prediction.

This module and the ones it imports (`trainers.ner`, `trainers.relations`, `data.example`) need
numpy, pydantic and a tokenizer only, so an exported ONNX student runs where torch is not
installed (`pip install distill-ner`, no extras). Torch is imported only to load torch weights
(`trainers.onnx_runtime.load_runtime`).

A model here is anything with the inference interface, on numpy arrays:
`predict_tags(ids, mask) -> (hidden, tag logits [B, T, n_tags])` for int64 [B, T] inputs, `hidden`
being whatever its relation head reads, and `predict_relations(hidden, pairs) -> relation logits
[P, n_relations]` for the int64 arrays `rows` [P], `head`/`tail`/`labels` [P, 2]. `NerReModel`
(torch, `trainers.modeling`) and `OnnxNerRe` (ONNX Runtime, `trainers.onnx_runtime`) have it.

- `ModelInfo`, `read_meta(model_dir)`, `write_meta(model_dir, meta)`: `model.json`
- `predict(loaded, texts) -> list[Example]` (entities and relations), batched, windows for long texts;
  `texts` may be `Example`s, whose own words (a CoNLL file's tokens) the entities then keep to
- `predict_entities(loaded, texts) -> list[list[Entity]]`
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from distill_ner.data.errors import DistillError, validation_message
from distill_ner.data.example import Entity, Example, Relation
from distill_ner.data.formats import atomic_write
from distill_ner.data.words import words_of
from distill_ner.trainers.ner import decode_logits, merge_windows, ner_features
from distill_ner.trainers.relations import NO_RELATION, relation_pairs

ONNX_DIR = "onnx"  # the ONNX graphs inside a model directory
MODEL_FILES = ("model.json", "heads.pt", "encoder", ONNX_DIR)  # what a model directory is (those present); metrics and caches written later are not


class ModelInfo(BaseModel):
    """`model.json`: what a trained model predicts, how it was made and how its training went."""

    model_config = ConfigDict(extra="allow")  # fields a later version adds survive a round trip

    role: str = Field(description="teacher or student")
    entity_labels: list[str]
    tags: list[str] = Field(description="BIO tags, O first")
    relation_labels: list[str] = Field(description="no_relation first")
    allowed_pairs: list[tuple[str, str]] = Field(description="(head label, tail label) pairs the relation head scores")
    max_length: int = Field(description="word pieces per window")
    stride: int
    subword_labels: Literal["first", "all"] = "all"  # models saved before first-piece labels tagged every piece
    source_encoder: str | None = None
    args: dict[str, Any] = {}
    kd: str = "none"
    teacher: str | None = None
    alpha: float | None = None
    temperature: float | None = None
    fraction: float | None = None
    teacher_parameters: int | None = None
    parameters: int | None = None
    train_seconds: float | None = None
    n_train: int | None = None
    n_dev: int | None = None
    n_transfer: int | None = Field(None, description="student: transfer-set texts learned from the teacher's soft targets alone")
    n_transfer_llm: int | None = Field(None, description="student: of those, the texts whose LLM annotation was one more teacher (`llm_teacher`)")
    teachers: list[str] = Field([], description="student: the teachers whose combined logits it learned")
    teacher_weights: list[float] | None = Field(None, description="student with several teachers: each one's mean weight over the windows")
    texts_in_windows: int | None = None
    relation_pairs: int | None = None
    relation_pairs_skipped: int | None = None
    history: list[dict[str, Any]] = []
    best_epoch: int | None = None
    stop_reasons: list[str] = Field([], description="why each training phase stopped")
    search: dict[str, Any] | None = Field(None, description="`--search`: the grid, the dev score of each setting and the choice")
    dev: dict[str, Any] = {}
    data_key: str | None = Field(None, description="early teachers (EL2N): the examples they were trained on")
    cache_key: str | None = Field(None, description="what made this model (trainers/pipeline.py): asked for the same, it is reused")


def model_files(model_dir: str | Path) -> list[Path]:
    """The paths that make a trained model (some may be missing: an ONNX model has no heads.pt)."""
    return [Path(model_dir) / name for name in MODEL_FILES]


def write_meta(model_dir: str | Path, meta: ModelInfo) -> None:
    """Write `model.json` (atomically: a reader sees the old file or the new one)."""
    atomic_write(Path(model_dir) / "model.json", meta.model_dump_json(indent=1) + "\n")


def read_meta(model_dir: str | Path) -> ModelInfo:
    """`model.json` of a model directory (a one-line error when it is not one)."""
    path = Path(model_dir) / "model.json"
    if not path.exists():
        raise DistillError(f"{model_dir}: not a trained model directory (no model.json); train one with `distill train`")
    try:
        return ModelInfo.model_validate_json(path.read_text(encoding="utf-8"))
    except ValidationError as err:
        raise DistillError(f"{path}: {validation_message(err)}") from None


class InferenceModel(Protocol):
    """What `predict` needs of a model (see the module's docstring)."""

    def predict_tags(self, ids: np.ndarray, mask: np.ndarray) -> tuple[Any, np.ndarray]: ...

    def predict_relations(self, hidden: Any, pairs: dict[str, np.ndarray]) -> np.ndarray: ...


@dataclass
class Loaded:
    """A model ready to predict: the model (eval mode), its tokenizer and `model.json`."""

    model: Any  # `NerReModel` (torch) or `OnnxNerRe`: an `InferenceModel`
    tokenizer: Any
    meta: ModelInfo
    path: Path

    @property
    def tags(self) -> list[str]:
        return self.meta.tags

    @property
    def relation_labels(self) -> list[str]:
        return self.meta.relation_labels

    @property
    def device(self) -> Any:
        """The torch device the model's tensors are on (the CPU for ONNX Runtime)."""
        parameters = getattr(self.model, "parameters", None)
        return next(parameters()).device if parameters is not None else self.model.device


# --- prediction -------------------------------------------------------------------------------
def pad_ids(sequences: Sequence[Sequence[int]], value: int) -> np.ndarray:
    """Right-pad int sequences into an int64 [B, T] array."""
    width = max(len(s) for s in sequences)
    return np.array([list(s) + [value] * (width - len(s)) for s in sequences], dtype=np.int64)


def attention_mask(features: Sequence[Any]) -> np.ndarray:
    """1 on each window's pieces, 0 on the padding: an int64 [B, T] array."""
    return pad_ids([[1] * len(f.input_ids) for f in features], 0)


def by_length(features: Sequence[Any], batch_size: int) -> list[list[int]]:
    """Index batches of similar length (less padding) in a fixed order, for inference."""
    order = sorted(range(len(features)), key=lambda i: len(features[i].input_ids))
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def predict(loaded: Loaded, texts: Sequence[str] | Sequence[Example], batch_size: int = 64, allowed: Sequence[Sequence[str]] | None = None) -> list[Example]:
    """Entities and relations for each text, as `Example`s: one encoder pass per window for both.

    Given `Example`s, their text is read on their words (`Example.words`, e.g. a CoNLL file's
    tokens): every entity starts and ends on one of them. Their entities are not looked at.

    Texts are processed in chunks of `batch_size` of similar length. Relation candidates are the
    predicted entity pairs whose labels are in `allowed` (default: the model's `allowed_pairs`).
    """
    inputs = [Example(text=t) if isinstance(t, str) else Example(id=t.id, text=t.text, words=t.words) for t in texts]
    out: list[Example | None] = [None] * len(inputs)
    order = sorted(range(len(inputs)), key=lambda i: len(inputs[i].text))
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        for i, example in zip(chunk, _predict_chunk(loaded, [inputs[i] for i in chunk], allowed)):
            out[i] = example
    return out  # type: ignore[return-value]


@dataclass
class TagPass:
    """One encoder pass over some examples: their windows, pieces, the hidden states the relation
    head reads, and per example the tag logits [n_pieces, n_tags] with overlapping windows merged."""

    features: list[Any]
    encoded: list[Any]
    hidden: Any
    logits: list[np.ndarray]


def tag_pass(loaded: Loaded, examples: Sequence[Example]) -> TagPass | None:
    """The model's tag logits for `examples` (None when they have no word piece at all)."""
    features, encoded = ner_features(loaded.tokenizer, examples, loaded.tags, loaded.meta.max_length, loaded.meta.stride)
    if not features:
        return None
    ids = pad_ids([f.input_ids for f in features], loaded.tokenizer.pad_token_id or 0)
    hidden, tags = loaded.model.predict_tags(ids, attention_mask(features))
    windows = [tags[row, : len(f.input_ids)] for row, f in enumerate(features)]
    return TagPass(features, encoded, hidden, merge_windows(features, windows, encoded, loaded.tokenizer))


def _predict_chunk(loaded: Loaded, examples: list[Example], allowed: Sequence[Sequence[str]] | None) -> list[Example]:
    tagged = tag_pass(loaded, examples)
    if tagged is None:
        return examples
    features, encoded, hidden = tagged.features, tagged.encoded, tagged.hidden  # hidden kept: relations are read from it after decoding
    for example, enc, logits in zip(examples, encoded, tagged.logits):
        example.entities = decode_logits(words_of(example), enc.offsets, logits, loaded.tags)
    labels = loaded.relation_labels
    allowed = [tuple(p) for p in (loaded.meta.allowed_pairs if allowed is None else allowed)]
    if len(labels) < 2 or not allowed:
        return examples
    pairs = relation_pairs(features, encoded, examples, loaded.meta.entity_labels, allowed, labels, entities=[e.entities for e in examples])
    if not pairs.pairs:
        return examples
    inputs = {
        "rows": np.array([p.feature for p in pairs.pairs], dtype=np.int64),
        **{key: np.array([getattr(p, key) for p in pairs.pairs], dtype=np.int64) for key in ("head", "tail", "labels")},
    }
    logits = np.asarray(loaded.model.predict_relations(hidden, inputs), dtype=np.float32)
    exp = np.exp(logits - logits.max(-1, keepdims=True))
    probs = exp / exp.sum(-1, keepdims=True)
    for p, row in zip(pairs.pairs, probs):
        k = int(row.argmax())
        if labels[k] != NO_RELATION:
            examples[p.example].relations.append(Relation(head=p.pair[0], tail=p.pair[1], label=labels[k], confidence=round(float(row[k]), 4)))
    return examples


def predict_entities(loaded: Loaded, texts: Sequence[str] | Sequence[Example], batch_size: int = 64) -> list[list[Entity]]:
    """Entities per text or example (char offsets, confidence = mean tag probability)."""
    return [e.entities for e in predict(loaded, texts, batch_size, allowed=[])]
