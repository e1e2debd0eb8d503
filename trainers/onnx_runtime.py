"""ONNX Runtime for a trained model: the encoder + tag head and the relation head as ONNX graphs
(optionally int8-quantized), run in place of the torch forward, with no torch needed.

Only the forward pass changes: tokenization, windows, Viterbi decoding, relation candidates and
merging stay the shared code of `trainers.inference.predict` (`OnnxNerRe` has its inference
interface, and for `trainers.modeling.window_outputs`, where torch is installed, the torch
interface of `NerReModel`).

An ONNX model directory holds `model.json`, `encoder/` (tokenizer and config, no weights) and
`onnx/`: `tagger.onnx` (input_ids, attention_mask [B, T] -> hidden [B, T, H], tag logits [B, T, n_tags]),
`relations.onnx` (hidden, rows [P], head/tail [P, 2], labels [P, 2] -> relation logits [P, n_relations];
not there for a model with no relation types, which has no relation head) and `onnx.json`
(quantization, opset). Batch, sequence and pair axes are dynamic. `trainers.export.to_onnx` writes it.

- `load_onnx(model_dir, threads=None) -> Loaded`; `OnnxNerRe(onnx_dir, threads, relations=True)`
- `load_runtime(model_dir, device, runtime) -> Loaded`: torch, onnx or auto (torch imported only for torch)
- `onnx_available() -> bool`: onnxruntime importable (the torch runtime stays the default otherwise)

The sessions run on the CPU execution provider (a `device` setting is ignored), with torch's
thread count when torch is in use, else onnxruntime's default, unless told otherwise.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from distill_ner.data.errors import DistillError
from distill_ner.trainers.inference import ONNX_DIR, Loaded, read_meta

TAGGER, RELATIONS, INFO = "tagger.onnx", "relations.onnx", "onnx.json"
PAIR_INPUTS = ("rows", "head", "tail", "labels")
INSTALL_HINT = "pip install onnxruntime onnx (the `pipeline` extra has both)"


def onnx_available() -> bool:
    """True when onnxruntime can be imported (checked without importing it)."""
    return importlib.util.find_spec("onnxruntime") is not None


def require(*modules: str) -> None:
    """A one-line error naming the modules of the ONNX runtime that are not installed."""
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise DistillError(f"the ONNX runtime needs {', '.join(missing)}: {INSTALL_HINT}")


class OnnxNerRe:
    """ONNX Runtime sessions with the inference interface of `trainers.inference` (numpy arrays in
    and out, CPU), and the torch interface of `NerReModel` for `window_outputs` (needs torch).
    `relations=False`: a model with no relation types (no `relations.onnx`; every pair is no_relation)."""

    def __init__(self, onnx_dir: str | Path, threads: int | None = None, relations: bool = True) -> None:
        require("onnxruntime")
        self.onnx_dir = Path(onnx_dir)
        self.has_relations = relations
        for name in (TAGGER, RELATIONS) if relations else (TAGGER,):
            if not (self.onnx_dir / name).exists():
                raise DistillError(f"{self.onnx_dir}: no {name} (export the model with `distill export-spacy --runtime onnx`)")
        info = self.onnx_dir / INFO
        self.info = json.loads(info.read_text(encoding="utf-8")) if info.exists() else {}
        self.set_threads(threads)

    def set_threads(self, threads: int | None = None) -> None:
        """(Re)create the sessions with `threads` intra-op threads (default: torch's thread count
        when torch is in use, else onnxruntime's own); also what a forked worker calls, since a
        session's thread pool does not survive a fork."""
        import onnxruntime as ort

        options = ort.SessionOptions()
        torch = sys.modules.get("torch")
        options.intra_op_num_threads = threads or (torch.get_num_threads() if torch is not None else 0)
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # No busy-waiting of idle pool threads after a run: the decoding between runs (and other
        # processes on a small machine) get the cores instead.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.threads = options.intra_op_num_threads
        self.tagger = ort.InferenceSession(str(self.onnx_dir / TAGGER), options, providers=["CPUExecutionProvider"])
        self.relations = ort.InferenceSession(str(self.onnx_dir / RELATIONS), options, providers=["CPUExecutionProvider"]) if self.has_relations else None

    def eval(self) -> OnnxNerRe:
        return self

    # --- the inference interface (numpy) ---------------------------------------------------------
    def predict_tags(self, ids: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Hidden states [B, T, H] and tag logits [B, T, n_tags]."""
        hidden, tags = self.tagger.run(None, {"input_ids": ids.astype(np.int64), "attention_mask": mask.astype(np.int64)})
        return hidden, tags

    def predict_relations(self, hidden: np.ndarray, pairs: dict[str, np.ndarray]) -> np.ndarray:
        """Relation logits [P, n_relations] (see `NerReModel.re_logits`)."""
        if self.relations is None:
            return np.zeros((len(pairs["rows"]), 1), dtype=np.float32)
        feed = {"hidden": hidden.astype(np.float32), **{k: pairs[k].astype(np.int64) for k in PAIR_INPUTS}}
        return self.relations.run(None, feed)[0]

    # --- the torch interface of NerReModel -------------------------------------------------------
    @property
    def device(self) -> Any:
        import torch

        return torch.device("cpu")

    def tag_outputs(self, ids: Any, mask: Any) -> tuple[Any, Any]:
        import torch

        hidden, tags = self.predict_tags(ids.cpu().numpy(), mask.cpu().numpy())
        return torch.from_numpy(hidden), torch.from_numpy(tags)

    def re_logits(self, hidden: Any, pairs: dict[str, Any]) -> Any:
        import torch

        return torch.from_numpy(self.predict_relations(hidden.cpu().float().numpy(), {k: pairs[k].cpu().numpy() for k in PAIR_INPUTS}))

    def __call__(self, ids: Any, mask: Any, pairs: dict[str, Any] | None = None) -> tuple[Any, Any]:
        hidden, tags = self.tag_outputs(ids, mask)
        return tags, (self.re_logits(hidden, pairs) if pairs else None)


def load_onnx(model_dir: str | Path, threads: int | None = None) -> Loaded:
    """A `Loaded` whose model runs on ONNX Runtime (model directory written by `export_onnx`)."""
    from transformers import AutoTokenizer

    model_dir = Path(model_dir)
    meta = read_meta(model_dir)
    if not (model_dir / ONNX_DIR).is_dir():
        raise DistillError(f"{model_dir}: no ONNX model (no {ONNX_DIR}/); export one with `distill export-spacy --runtime onnx`")
    model = OnnxNerRe(model_dir / ONNX_DIR, threads, relations=len(meta.relation_labels) > 1)
    return Loaded(model, AutoTokenizer.from_pretrained(model_dir / "encoder"), meta, model_dir)


RUNTIMES = ("torch", "onnx", "auto")


def load_runtime(model_dir: str | Path, device: str = "cpu", runtime: str = "torch") -> Loaded:
    """A model directory loaded on a runtime: `torch` (`trainers.modeling.load_model`), `onnx` (the
    graphs of `onnx/` on ONNX Runtime), or `auto` (those when the directory has them and
    onnxruntime is installed, or when it has no torch weights; else torch)."""
    model_dir = Path(model_dir)
    if runtime not in RUNTIMES:
        raise DistillError(f"unknown runtime {runtime!r} (choose from: {', '.join(RUNTIMES)})")
    if runtime != "torch":
        has_weights = (model_dir / "heads.pt").exists()
        if runtime == "onnx" or ((model_dir / ONNX_DIR).is_dir() and (onnx_available() or not has_weights)):
            return load_onnx(model_dir)
    if importlib.util.find_spec("torch") is None:
        raise DistillError(f"{model_dir}: a torch model needs torch (pip install 'distill-ner[torch]'), or export it with `distill export-spacy --runtime onnx`")
    from distill_ner.trainers.modeling import load_model

    return load_model(model_dir, device=device)
