"""The NER + RE model: one encoder, a token-tag head and a relation head; save and load (torch).

A model directory holds `encoder/` (transformers weights, config and tokenizer), `heads.pt`
and `model.json` (tags, entity and relation labels, allowed (head, tail) label pairs, window
settings, training arguments, history, provenance). `evaluate` adds `metrics.json`/`metrics.md`.

- `NerReModel(encoder, n_tags, n_relations, n_entity_labels)`: `model(ids, mask, pairs) -> (tag logits, relation logits)`
- `save_model(model, tokenizer, meta, out_dir)`, `load_model(model_dir) -> Loaded`
- `window_outputs(loaded, features, pairs)`: tag and relation logits of known windows and pairs (KD, scoring)

`model.json` (`ModelInfo`), `Loaded` and `predict` are in `trainers.inference`, which needs no torch.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import AutoModel, AutoTokenizer

from distill_ner.data.errors import DistillError
from distill_ner.trainers.encoders import count_parameters
from distill_ner.trainers.inference import Loaded, ModelInfo, attention_mask, by_length, pad_ids, read_meta, write_meta
from distill_ner.trainers.ner import IGNORE, NerFeature
from distill_ner.trainers.relations import Pair, Pairs


class NerReModel(torch.nn.Module):
    """Encoder + linear tag head (per word piece) + span-pair relation head, on one forward pass.

    The relation head reads, for each (head, tail) pair, the max-pooled hidden states of the head
    span, the tail span and the pieces between them, and an embedding of each entity label. With
    no relation type (`n_relations` 1: `no_relation` alone) there is no relation head at all: no
    parameters to train, store or count, and every pair is `no_relation`.
    """

    def __init__(self, encoder: torch.nn.Module, n_tags: int, n_relations: int, n_entity_labels: int, dropout: float = 0.1, label_dim: int = 32) -> None:
        super().__init__()
        hidden = encoder.config.hidden_size
        self.encoder = encoder
        self.dropout = torch.nn.Dropout(dropout)
        self.ner_head = torch.nn.Linear(hidden, n_tags)
        self.label_embedding: torch.nn.Embedding | None = None
        self.re_head: torch.nn.Sequential | None = None
        if n_relations > 1:
            self.label_embedding = torch.nn.Embedding(max(1, n_entity_labels), label_dim)
            self.re_head = torch.nn.Sequential(
                torch.nn.Linear(3 * hidden + 2 * label_dim, hidden), torch.nn.GELU(), torch.nn.Dropout(dropout), torch.nn.Linear(hidden, n_relations)
            )

    def forward(self, ids: torch.Tensor, mask: torch.Tensor, pairs: dict[str, torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Tag logits [B, T, n_tags] and, for `pairs` (see `pair_batch`), relation logits [P, n_relations]."""
        hidden = self.hidden_states(ids, mask)
        return self.ner_head(hidden), (self.re_logits(hidden, pairs) if pairs else None)

    def tag_outputs(self, ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Hidden states [B, T, H] and tag logits [B, T, n_tags] (the part the ONNX runtime replaces)."""
        hidden = self.hidden_states(ids, mask)
        return hidden, self.ner_head(hidden)

    @torch.inference_mode()
    def predict_tags(self, ids: np.ndarray, mask: np.ndarray) -> tuple[torch.Tensor, np.ndarray]:
        """The inference interface of `trainers.inference`: hidden states (left on the device for
        `predict_relations`) and tag logits [B, T, n_tags] as a float32 array."""
        device = next(self.parameters()).device
        hidden, tags = self.tag_outputs(torch.from_numpy(ids).to(device), torch.from_numpy(mask).to(device).bool())
        return hidden, tags.float().cpu().numpy()

    @torch.inference_mode()
    def predict_relations(self, hidden: torch.Tensor, pairs: dict[str, np.ndarray]) -> np.ndarray:
        """Relation logits [P, n_relations] as a float32 array (the inference interface)."""
        return self.re_logits(hidden, {k: torch.from_numpy(v).to(hidden.device) for k, v in pairs.items()}).float().cpu().numpy()

    def hidden_states(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The encoder's last hidden states [B, T, H] (dropout while training)."""
        return self.dropout(self.encoder(input_ids=ids, attention_mask=mask).last_hidden_state)

    def re_logits(self, hidden: torch.Tensor, pairs: dict[str, torch.Tensor]) -> torch.Tensor:
        """Relation logits [P, n_relations] from hidden states [B, T, H] and pair spans."""
        if self.re_head is None or self.label_embedding is None:  # no relation types: [P, 1], all no_relation
            return hidden.new_zeros(pairs["rows"].shape[0], 1)
        rows = hidden[pairs["rows"]]  # [P, T, H]
        head, tail = pairs["head"], pairs["tail"]  # [P, 2] each: [start, end)
        head_first = head[:, 0] <= tail[:, 0]
        between_start = torch.where(head_first, head[:, 1], tail[:, 1])
        between_end = torch.where(head_first, tail[:, 0], head[:, 0])
        features = [
            _span_max(rows, head[:, 0], head[:, 1]),
            _span_max(rows, tail[:, 0], tail[:, 1]),
            _span_max(rows, between_start, between_end),
            self.label_embedding(pairs["labels"]).flatten(1),
        ]
        return self.re_head(torch.cat(features, dim=-1))


def _span_max(rows: torch.Tensor, start: torch.Tensor, end: torch.Tensor) -> torch.Tensor:
    """Max over positions [start, end) of each row [P, T, H] -> [P, H]; zeros for an empty span."""
    positions = torch.arange(rows.shape[1], device=rows.device)
    inside = (positions >= start[:, None]) & (positions < end[:, None])
    pooled = rows.masked_fill(~inside[..., None], torch.finfo(rows.dtype).min).max(dim=1).values
    return torch.where(inside.any(dim=1, keepdim=True), pooled, torch.zeros_like(pooled))


def pick_device(name: str = "auto") -> torch.device:
    """`auto` -> cuda when available, else cpu."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def save_model(model: NerReModel, tokenizer: Any, meta: ModelInfo, out_dir: str | Path) -> Path:
    """Write `encoder/`, `heads.pt` and `model.json` (replacing a previous model there)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in ("encoder", "logits_cache"):  # a new model invalidates cached teacher logits
        if (out_dir / stale).exists():
            shutil.rmtree(out_dir / stale)
    model.encoder.save_pretrained(out_dir / "encoder")
    tokenizer.save_pretrained(out_dir / "encoder")
    heads = {k: v.detach().cpu() for k, v in model.state_dict().items() if not k.startswith("encoder.")}  # loadable with no GPU
    torch.save(heads, out_dir / "heads.pt")
    write_meta(out_dir, meta.model_copy(update={"parameters": count_parameters(model)}))
    return out_dir


def load_model(model_dir: str | Path, device: str = "cpu") -> Loaded:
    """Load a model directory written by `save_model`, in eval mode (the torch runtime; ONNX
    directories load with `trainers.onnx_runtime.load_runtime`)."""
    model_dir = Path(model_dir)
    meta = read_meta(model_dir)
    if not (model_dir / "heads.pt").exists() and (model_dir / "onnx").is_dir():
        raise DistillError(f"{model_dir}: an ONNX-only model (no torch weights); load it with trainers.onnx_runtime.load_runtime(..., runtime='onnx')")
    tokenizer = AutoTokenizer.from_pretrained(model_dir / "encoder")
    encoder = AutoModel.from_pretrained(model_dir / "encoder")
    model = NerReModel(encoder, len(meta.tags), len(meta.relation_labels), len(meta.entity_labels))
    model.load_state_dict(torch.load(model_dir / "heads.pt", map_location="cpu", weights_only=True), strict=False)
    model.to(pick_device(device)).eval()
    return Loaded(model, tokenizer, meta, model_dir)


# --- batching ---------------------------------------------------------------------------------
def pad(sequences: Sequence[Sequence[int]], value: int) -> torch.Tensor:
    """Right-pad int sequences into a [B, T] tensor."""
    return torch.from_numpy(pad_ids(sequences, value))


def ner_batch(features: Sequence[NerFeature], pad_id: int, device: torch.device) -> dict[str, torch.Tensor]:
    ids = pad([f.input_ids for f in features], pad_id)
    mask = torch.from_numpy(attention_mask(features)).to(device=device, dtype=torch.bool)
    return {"ids": ids.to(device), "mask": mask, "labels": pad([f.labels for f in features], IGNORE).to(device)}


def pair_batch(pairs: Sequence[Pair], rows: dict[int, int], device: torch.device) -> dict[str, torch.Tensor] | None:
    """Relation inputs of `pairs`; `rows` maps a pair's window index to its row in the NER batch."""
    if not pairs:
        return None
    return {
        "rows": torch.tensor([rows[p.feature] for p in pairs], device=device),
        "head": torch.tensor([p.head for p in pairs], device=device),
        "tail": torch.tensor([p.tail for p in pairs], device=device),
        "labels": torch.tensor([p.labels for p in pairs], device=device),
        "target": torch.tensor([p.label for p in pairs], device=device),
    }


# --- inference --------------------------------------------------------------------------------
@torch.inference_mode()
def window_outputs(loaded: Loaded, features: Sequence[NerFeature], pairs: Pairs | None = None, batch_size: int = 64) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Tag logits [len(input_ids), n_tags] per window and relation logits per pair (CPU), in input order."""
    ner_out: list[torch.Tensor | None] = [None] * len(features)
    pair_list = pairs.pairs if pairs else []
    re_out: list[torch.Tensor | None] = [None] * len(pair_list)
    of_window = pairs.by_feature() if pairs else {}
    pad_id = loaded.tokenizer.pad_token_id or 0
    for idx in by_length(features, batch_size):
        batch = ner_batch([features[i] for i in idx], pad_id, loaded.device)
        chosen = [k for i in idx for k in of_window.get(i, [])]
        pb = pair_batch([pair_list[k] for k in chosen], {i: row for row, i in enumerate(idx)}, loaded.device)
        tags, rels = loaded.model(batch["ids"], batch["mask"], pb)
        tags = tags.float().cpu()
        for row, i in enumerate(idx):
            ner_out[i] = tags[row, : len(features[i].input_ids)]
        if rels is not None:
            for k, logits in zip(chosen, rels.float().cpu()):
                re_out[k] = logits
    return ner_out, re_out  # type: ignore[return-value]
