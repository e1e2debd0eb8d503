"""The NER + RE model: one encoder, a token-tag head and a relation head; save, load, predict.

A model directory holds `encoder/` (transformers weights, config and tokenizer), `heads.pt`
and `model.json` (tags, entity and relation labels, allowed (head, tail) label pairs, window
settings, training arguments, history, provenance). `evaluate` adds `metrics.json`/`metrics.md`.

- `NerReModel(encoder, n_tags, n_relations)`: `.ner_logits(ids, mask)`, `.re_logits(ids, mask, head, tail)`
- `save_model(model, tokenizer, meta, out_dir)`, `load_model(model_dir) -> Loaded`
- `predict(loaded, texts) -> list[Example]` (entities and relations), batched, windows for long texts
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModel, AutoTokenizer

from data.errors import DistillError
from data.example import Entity, Example, Relation
from trainers.encoders import count_parameters
from trainers.ner import NerFeature, decode_entities, merge_windows, ner_features
from trainers.relations import NO_RELATION, ReFeature, re_features


class NerReModel(torch.nn.Module):
    """Encoder + linear tag head (per word piece) + linear relation head (on the two marker pieces)."""

    def __init__(self, encoder: torch.nn.Module, n_tags: int, n_relations: int, dropout: float = 0.1) -> None:
        super().__init__()
        hidden = encoder.config.hidden_size
        self.encoder = encoder
        self.dropout = torch.nn.Dropout(dropout)
        self.ner_head = torch.nn.Linear(hidden, n_tags)
        self.re_head = torch.nn.Linear(2 * hidden, max(1, n_relations))

    def _hidden(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.encoder(input_ids=ids, attention_mask=mask).last_hidden_state)

    def ner_logits(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """[B, T, n_tags]."""
        return self.ner_head(self._hidden(ids, mask))

    def re_logits(self, ids: torch.Tensor, mask: torch.Tensor, head: torch.Tensor, tail: torch.Tensor) -> torch.Tensor:
        """[B, n_relations] from the hidden states of the opening head and tail markers."""
        hidden = self._hidden(ids, mask)
        rows = torch.arange(ids.shape[0], device=ids.device)
        return self.re_head(torch.cat([hidden[rows, head], hidden[rows, tail]], dim=-1))


@dataclass
class Loaded:
    """A model ready to predict: the module (eval mode), its tokenizer and `model.json`."""

    model: NerReModel
    tokenizer: Any
    meta: dict[str, Any]
    path: Path

    @property
    def tags(self) -> list[str]:
        return self.meta["tags"]

    @property
    def relation_labels(self) -> list[str]:
        return self.meta["relation_labels"]

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device


def pick_device(name: str = "auto") -> torch.device:
    """`auto` -> cuda when available, else cpu."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def save_model(model: NerReModel, tokenizer: Any, meta: dict[str, Any], out_dir: str | Path) -> Path:
    """Write `encoder/`, `heads.pt` and `model.json` (replacing a previous model there)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in ("encoder", "logits_cache"):  # a new model invalidates cached teacher logits
        if (out_dir / stale).exists():
            shutil.rmtree(out_dir / stale)
    model.encoder.save_pretrained(out_dir / "encoder")
    tokenizer.save_pretrained(out_dir / "encoder")
    heads = {k: v for k, v in model.state_dict().items() if not k.startswith("encoder.")}
    torch.save(heads, out_dir / "heads.pt")
    meta = {**meta, "parameters": count_parameters(model)}
    (out_dir / "model.json").write_text(json.dumps(meta, indent=1, default=str) + "\n", encoding="utf-8")
    return out_dir


def read_meta(model_dir: str | Path) -> dict[str, Any]:
    """`model.json` of a model directory (a one-line error when it is not one)."""
    path = Path(model_dir) / "model.json"
    if not path.exists():
        raise DistillError(f"{model_dir}: not a trained model directory (no model.json); train one with `distill train`")
    return json.loads(path.read_text(encoding="utf-8"))


def load_model(model_dir: str | Path, device: str = "cpu") -> Loaded:
    """Load a model directory written by `save_model`, in eval mode."""
    model_dir = Path(model_dir)
    meta = read_meta(model_dir)
    tokenizer = AutoTokenizer.from_pretrained(model_dir / "encoder")
    encoder = AutoModel.from_pretrained(model_dir / "encoder")
    model = NerReModel(encoder, len(meta["tags"]), len(meta["relation_labels"]))
    model.load_state_dict(torch.load(model_dir / "heads.pt", weights_only=True), strict=False)
    model.to(pick_device(device)).eval()
    return Loaded(model, tokenizer, meta, model_dir)


# --- batching ---------------------------------------------------------------------------------
def pad(sequences: Sequence[Sequence[int]], value: int) -> torch.Tensor:
    """Right-pad int sequences into a [B, T] tensor."""
    width = max(len(s) for s in sequences)
    return torch.tensor([list(s) + [value] * (width - len(s)) for s in sequences], dtype=torch.long)


def ner_batch(features: Sequence[NerFeature], pad_id: int, device: torch.device) -> dict[str, torch.Tensor]:
    ids = pad([f.input_ids for f in features], pad_id)
    return {"ids": ids.to(device), "mask": _mask_of(features, device), "labels": pad([f.labels for f in features], -100).to(device)}


def _mask_of(features: Sequence[Any], device: torch.device) -> torch.Tensor:
    width = max(len(f.input_ids) for f in features)
    return torch.tensor([[1] * len(f.input_ids) + [0] * (width - len(f.input_ids)) for f in features], dtype=torch.bool, device=device)


def re_batch(features: Sequence[ReFeature], pad_id: int, device: torch.device) -> dict[str, torch.Tensor]:
    return {
        "ids": pad([f.input_ids for f in features], pad_id).to(device),
        "mask": _mask_of(features, device),
        "head": torch.tensor([f.head_pos for f in features], device=device),
        "tail": torch.tensor([f.tail_pos for f in features], device=device),
        "labels": torch.tensor([f.label for f in features], device=device),
    }


def by_length(features: Sequence[Any], batch_size: int) -> list[list[int]]:
    """Index batches of similar length (less padding) in a fixed order, for inference."""
    order = sorted(range(len(features)), key=lambda i: len(features[i].input_ids))
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


# --- inference --------------------------------------------------------------------------------
@torch.inference_mode()
def ner_window_logits(loaded: Loaded, features: Sequence[NerFeature], batch_size: int = 64) -> list[torch.Tensor]:
    """Logits [len(input_ids), n_tags] per window (CPU tensors), in feature order."""
    out: list[torch.Tensor | None] = [None] * len(features)
    pad_id = loaded.tokenizer.pad_token_id or 0
    for idx in by_length(features, batch_size):
        batch = ner_batch([features[i] for i in idx], pad_id, loaded.device)
        logits = loaded.model.ner_logits(batch["ids"], batch["mask"]).float().cpu()
        for row, i in enumerate(idx):
            out[i] = logits[row, : len(features[i].input_ids)]
    return out  # type: ignore[return-value]


@torch.inference_mode()
def re_pair_logits(loaded: Loaded, features: Sequence[ReFeature], batch_size: int = 64) -> list[torch.Tensor]:
    """Logits [n_relations] per candidate pair (CPU tensors), in feature order."""
    out: list[torch.Tensor | None] = [None] * len(features)
    pad_id = loaded.tokenizer.pad_token_id or 0
    for idx in by_length(features, batch_size):
        b = re_batch([features[i] for i in idx], pad_id, loaded.device)
        logits = loaded.model.re_logits(b["ids"], b["mask"], b["head"], b["tail"]).float().cpu()
        for row, i in enumerate(idx):
            out[i] = logits[row]
    return out  # type: ignore[return-value]


def predict_entities(loaded: Loaded, texts: Sequence[str], batch_size: int = 64) -> list[list[Entity]]:
    """Entities per text (char offsets, confidence = mean tag probability)."""
    examples = [Example(id=str(i), text=t) for i, t in enumerate(texts)]
    features, encoded = ner_features(loaded.tokenizer, examples, loaded.tags, loaded.meta["max_length"], loaded.meta["stride"])
    if not features:
        return [[] for _ in texts]
    per_text = merge_windows(features, ner_window_logits(loaded, features, batch_size), encoded, loaded.tokenizer)
    out = []
    for text, enc, logits in zip(texts, encoded, per_text):
        probs = logits.softmax(-1)
        best = probs.max(-1)
        out.append(decode_entities(text, enc.offsets, best.indices.tolist(), loaded.tags, best.values.tolist()))
    return out


def predict_relations(
    loaded: Loaded, texts: Sequence[str], entities: Sequence[Sequence[Entity]], batch_size: int = 64, allowed: Sequence[Sequence[str]] | None = None
) -> list[list[Relation]]:
    """Relations among the given entities of each text (no_relation pairs left out).

    Candidate pairs: entity label pairs in `allowed` (default: the model's `allowed_pairs`).
    """
    labels = loaded.relation_labels
    out: list[list[Relation]] = [[] for _ in texts]
    allowed = [tuple(p) for p in (loaded.meta.get("allowed_pairs", []) if allowed is None else allowed)]
    if len(labels) < 2 or not allowed:
        return out
    examples = [Example(id=str(i), text=t) for i, t in enumerate(texts)]
    feats = re_features(loaded.tokenizer, examples, allowed, labels, loaded.meta["max_length"], entities=entities)
    if not feats.features:
        return out
    for f, logits in zip(feats.features, re_pair_logits(loaded, feats.features, batch_size)):
        probs = logits.softmax(-1)
        k = int(probs.argmax())
        if labels[k] != NO_RELATION:
            out[f.example].append(Relation(head=f.pair[0], tail=f.pair[1], label=labels[k], confidence=round(float(probs[k]), 4)))
    return out


def predict(loaded: Loaded, texts: Sequence[str], batch_size: int = 64) -> list[Example]:
    """Entities and relations for each text, as `Example`s."""
    entities = predict_entities(loaded, texts, batch_size)
    relations = predict_relations(loaded, texts, entities, batch_size)
    return [Example(text=t, entities=e, relations=r) for t, e, r in zip(texts, entities, relations)]
