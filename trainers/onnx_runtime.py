"""ONNX Runtime for a trained model: the encoder + tag head and the relation head as ONNX graphs
(optionally int8-quantized), run in place of the torch forward.

Only the forward pass changes: tokenization, windows, Viterbi decoding, relation candidates and
merging stay the shared code of `trainers.modeling.predict` / `window_outputs` (the ONNX model has
the same `tag_outputs`, `re_logits` and call interface as `NerReModel`).

An ONNX model directory holds `model.json`, `encoder/` (tokenizer and config, no weights) and
`onnx/`: `tagger.onnx` (input_ids, attention_mask [B, T] -> hidden [B, T, H], tag logits [B, T, n_tags]),
`relations.onnx` (hidden, rows [P], head/tail [P, 2], labels [P, 2] -> relation logits [P, n_relations];
not there for a model with no relation types, which has no relation head) and `onnx.json`
(quantization, opset). Batch, sequence and pair axes are dynamic.

- `export_onnx(model_dir, out_dir, spec=None, quantize=None) -> Path` (an exporter's signature; `distill
  export-spacy --runtime onnx` uses it)
- `load_onnx(model_dir, threads=None) -> Loaded`; `OnnxNerRe(onnx_dir, threads, relations=True)`
- `onnx_available() -> bool`: onnxruntime importable (the torch runtime stays the default otherwise)

The sessions run on the CPU execution provider (a `device` setting is ignored), with torch's
thread count unless told otherwise. Exporting needs torch, `onnx` and `onnxruntime` (for int8: `onnxruntime.quantization.quantize_dynamic`,
see `quantize_int8`); running needs onnxruntime (and torch for the shared decoding code).
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch

from distill_ner.data.errors import DistillError

ONNX_DIR = "onnx"
TAGGER, RELATIONS, INFO = "tagger.onnx", "relations.onnx", "onnx.json"
OPSET = 17
QUANTIZE = ("int8",)
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")  # left out of the ONNX model's encoder/
INSTALL_HINT = "pip install onnxruntime onnx (or the project's `onnx` extra)"


def onnx_available() -> bool:
    """True when onnxruntime can be imported (checked without importing it)."""
    return importlib.util.find_spec("onnxruntime") is not None


def _require(*modules: str) -> None:
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise DistillError(f"the ONNX runtime needs {', '.join(missing)}: {INSTALL_HINT}")


class _Tagger(torch.nn.Module):
    """Encoder + tag head of a `NerReModel` with an int64 mask: (ids, mask) -> (hidden, tag logits)."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.model.tag_outputs(ids, mask)


class _Relations(torch.nn.Module):
    """Relation head of a `NerReModel` on plain tensor inputs."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, hidden: torch.Tensor, rows: torch.Tensor, head: torch.Tensor, tail: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.model.re_logits(hidden, {"rows": rows, "head": head, "tail": tail, "labels": labels})


def export_onnx(model_dir: str | Path, out_dir: str | Path, spec: Any = None, quantize: str | None = None) -> Path:
    """Write `out_dir` as an ONNX model directory of the torch model in `model_dir`; return `out_dir`.

    `quantize="int8"`: dynamic int8 quantization of both graphs (see `quantize_int8`).
    `spec`: when given, its entity labels must be the model's.
    """
    from distill_ner.trainers.modeling import load_model

    if quantize not in (None, *QUANTIZE):
        raise DistillError(f"unknown quantization {quantize!r} (choose from: {', '.join(QUANTIZE)})")
    _require("onnx", "onnxruntime")
    model_dir, out_dir = Path(model_dir), Path(out_dir)
    loaded = load_model(model_dir, device="cpu")
    if spec is not None and set(spec.entity_labels) != set(loaded.meta.entity_labels):
        raise DistillError(f"{model_dir}: the model's entity labels {loaded.meta.entity_labels} differ from the spec's {spec.entity_labels}")
    model = loaded.model.eval()
    hidden_size = model.ner_head.in_features
    if out_dir.exists():
        shutil.rmtree(out_dir)
    (out_dir / ONNX_DIR).mkdir(parents=True)
    shutil.copytree(model_dir / "encoder", out_dir / "encoder", ignore=shutil.ignore_patterns(*WEIGHT_FILES))
    shutil.copy2(model_dir / "model.json", out_dir / "model.json")
    # Example inputs: two rows, the second padded, so that the traced graph keeps the mask path.
    ids = torch.full((2, 16), 100, dtype=torch.long)
    mask = torch.ones(2, 16, dtype=torch.long)
    mask[1, 10:] = 0
    hidden = torch.randn(2, 16, hidden_size)
    pairs = (torch.tensor([0, 1, 1]), torch.tensor([[1, 3], [2, 4], [6, 8]]), torch.tensor([[5, 6], [0, 1], [9, 12]]), torch.tensor([[0, 0], [0, 0], [0, 0]]))
    with tempfile.TemporaryDirectory(prefix="distill-onnx-") as tmp, warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer warnings about Python values in transformers' mask code
        plain = {TAGGER: Path(tmp) / TAGGER, RELATIONS: Path(tmp) / RELATIONS}
        # The legacy (TorchScript) exporter: the dynamo one needs onnxscript. It puts modules back in
        # training mode after tracing, so eval() is set on fresh wrappers and the model afterwards.
        torch.onnx.export(
            _Tagger(model).eval(), (ids, mask), str(plain[TAGGER]), dynamo=False, opset_version=OPSET,
            input_names=["input_ids", "attention_mask"], output_names=["hidden", "tags"],
            dynamic_axes={name: {0: "batch", 1: "length"} for name in ("input_ids", "attention_mask", "hidden", "tags")},
        )
        if model.re_head is None:  # no relation types: no relation head, no graph
            del plain[RELATIONS]
        else:
            torch.onnx.export(
                _Relations(model).eval(), (hidden, *pairs), str(plain[RELATIONS]), dynamo=False, opset_version=OPSET,
                input_names=["hidden", "rows", "head", "tail", "labels"], output_names=["logits"],
                dynamic_axes={"hidden": {0: "batch", 1: "length"}, **{name: {0: "pairs"} for name in ("rows", "head", "tail", "labels", "logits")}},
            )
        model.eval()
        kept: list[str] = []
        for name, src in plain.items():
            target = out_dir / ONNX_DIR / name
            if quantize == "int8":
                kept += quantize_int8(src, target)
            else:
                shutil.copy2(src, target)
    info = {"quantize": quantize, "opset": OPSET, "float_matmuls": kept, "exported_from": str(model_dir), "torch": torch.__version__}
    (out_dir / ONNX_DIR / INFO).write_text(json.dumps(info, indent=1) + "\n", encoding="utf-8")
    return out_dir


def quantize_int8(src: Path, target: Path) -> list[str]:
    """Dynamic int8 quantization of `src` into `target`; returns the MatMuls left in float.

    Weights int8 per output channel, activations uint8 per tensor (computed per batch); only the
    MatMuls with a weight operand (not attention's activation x activation products), and not
    those of the first encoder layer, whose inputs (embeddings) have the widest range: on the demo
    student (3 layers) that kept strict span F1 within 0.1 points of torch, where quantizing every
    layer lost 1-2.5 points (see bench/serve.py).
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    first_layer = re.compile(r"/layers?\.0/")
    kept = [n.name for n in onnx.load(str(src), load_external_data=False).graph.node if n.op_type in ("MatMul", "Gemm") and first_layer.search(n.name)]
    quantize_dynamic(str(src), str(target), weight_type=QuantType.QInt8, per_channel=True, nodes_to_exclude=kept, extra_options={"MatMulConstBOnly": True})
    return kept


class OnnxNerRe:
    """ONNX Runtime sessions with the inference interface of `NerReModel` (torch tensors in and out, CPU).
    `relations=False`: a model with no relation types (no `relations.onnx`; every pair is no_relation)."""

    device = torch.device("cpu")

    def __init__(self, onnx_dir: str | Path, threads: int | None = None, relations: bool = True) -> None:
        _require("onnxruntime")
        self.onnx_dir = Path(onnx_dir)
        self.has_relations = relations
        for name in (TAGGER, RELATIONS) if relations else (TAGGER,):
            if not (self.onnx_dir / name).exists():
                raise DistillError(f"{self.onnx_dir}: no {name} (export the model with `distill export-spacy --runtime onnx`)")
        info = self.onnx_dir / INFO
        self.info = json.loads(info.read_text(encoding="utf-8")) if info.exists() else {}
        self.set_threads(threads)

    def set_threads(self, threads: int | None = None) -> None:
        """(Re)create the sessions with `threads` intra-op threads (default: torch's thread count);
        also what a forked worker calls, since a session's thread pool does not survive a fork."""
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
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

    def tag_outputs(self, ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Hidden states [B, T, H] and tag logits [B, T, n_tags]."""
        hidden, tags = self.tagger.run(None, {"input_ids": ids.cpu().long().numpy(), "attention_mask": mask.cpu().long().numpy()})
        return torch.from_numpy(hidden), torch.from_numpy(tags)

    def re_logits(self, hidden: torch.Tensor, pairs: dict[str, torch.Tensor]) -> torch.Tensor:
        """Relation logits [P, n_relations] (see `NerReModel.re_logits`)."""
        if self.relations is None:
            return torch.zeros(pairs["rows"].shape[0], 1)
        feed = {"hidden": hidden.cpu().float().numpy(), **{k: pairs[k].cpu().long().numpy() for k in ("rows", "head", "tail", "labels")}}
        return torch.from_numpy(self.relations.run(None, feed)[0])

    def __call__(self, ids: torch.Tensor, mask: torch.Tensor, pairs: dict[str, torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        hidden, tags = self.tag_outputs(ids, mask)
        return tags, (self.re_logits(hidden, pairs) if pairs else None)


def load_onnx(model_dir: str | Path, threads: int | None = None) -> Any:
    """A `Loaded` whose model runs on ONNX Runtime (model directory written by `export_onnx`)."""
    from transformers import AutoTokenizer

    from distill_ner.trainers.modeling import Loaded, read_meta

    model_dir = Path(model_dir)
    meta = read_meta(model_dir)
    if not (model_dir / ONNX_DIR).is_dir():
        raise DistillError(f"{model_dir}: no ONNX model (no {ONNX_DIR}/); export one with `distill export-spacy --runtime onnx`")
    model = OnnxNerRe(model_dir / ONNX_DIR, threads, relations=len(meta.relation_labels) > 1)
    return Loaded(model, AutoTokenizer.from_pretrained(model_dir / "encoder"), meta, model_dir)  # type: ignore[arg-type]


RUNTIMES = ("torch", "onnx", "auto")


def load_runtime(model_dir: str | Path, device: str = "cpu", runtime: str = "torch") -> Any:
    """A model directory loaded on a runtime: `torch` (`trainers.modeling.load_model`), `onnx` (the
    graphs of `onnx/` on ONNX Runtime), or `auto` (those when the directory has them and
    onnxruntime is installed, or when it has no torch weights; else torch)."""
    from distill_ner.trainers.modeling import load_model

    model_dir = Path(model_dir)
    if runtime not in RUNTIMES:
        raise DistillError(f"unknown runtime {runtime!r} (choose from: {', '.join(RUNTIMES)})")
    if runtime != "torch":
        has_weights = (model_dir / "heads.pt").exists()
        if runtime == "onnx" or ((model_dir / ONNX_DIR).is_dir() and (onnx_available() or not has_weights)):
            return load_onnx(model_dir)
    return load_model(model_dir, device=device)
