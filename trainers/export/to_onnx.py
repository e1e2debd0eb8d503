"""Export a trained torch model as ONNX graphs (optionally int8-quantized), for `trainers.onnx_runtime`.

    export_onnx(model_dir, out_dir, spec=None, quantize=None) -> Path   (an exporter's signature;
    `distill export-spacy --runtime onnx` uses it)

The layout of the directory it writes is described in `trainers.onnx_runtime`. Exporting needs
torch, `onnx` and `onnxruntime` (for int8: `onnxruntime.quantization.quantize_dynamic`, see
`quantize_int8`).
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch

from distill_ner.data.errors import DistillError
from distill_ner.trainers.onnx_runtime import INFO, ONNX_DIR, RELATIONS, TAGGER, require

OPSET = 17
QUANTIZE = ("int8",)
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")  # left out of the ONNX model's encoder/


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
    require("onnx", "onnxruntime")
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
