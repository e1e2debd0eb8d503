"""Export a trained student as a spaCy pipeline directory.

    export_spacy(model_dir, out_dir, spec_or_labels=None, lang="en", name=None, runtime="torch", quantize=None) -> Path

The directory loads with `spacy.load(out_dir)` wherever distill-ner is installed (the component
is registered by entry point); `meta.json` holds the labels, the model's metrics (its
`metrics.json`, when `evaluate` wrote one) and where it came from (encoder, teacher, KD).
`python -m spacy package out_dir dist/` turns it into an installable package (it lists
distill-ner as a requirement).

`runtime="onnx"` puts the model in as ONNX graphs run by ONNX Runtime (`quantize="int8"`: dynamic
int8 quantization, which implies `onnx`): the pipeline holds `onnx/` and the tokenizer instead of
the torch weights and needs onnxruntime where it is loaded (see `trainers.onnx_runtime`).
"""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path
from typing import Any

import spacy

from distill_ner.data.errors import DistillError
from distill_ner.data.words import words_tokenizer
from distill_ner.trainers.inference import read_meta
from distill_ner.trainers.relations import allowed_pairs_from_spec
from distill_ner.trainers.spacy_pipeline import FACTORY


def export_spacy(
    model_dir: str | Path, out_dir: str | Path, spec_or_labels: Any = None, lang: str = "en", name: str | None = None, runtime: str | None = None, quantize: str | None = None,
) -> Path:
    """Write a spaCy pipeline for the model in `model_dir` to `out_dir`; return `out_dir`.

    `spec_or_labels`: a `TaskSpec` (its labels must match the model's; its relation types give
    the allowed pairs), a list of entity labels (checked too), or None (the model's own).
    `runtime`: `torch` (default) or `onnx`; `quantize`: None or `int8` (ONNX only; implies it).
    """
    runtime = runtime or ("onnx" if quantize else "torch")
    if runtime not in ("torch", "onnx"):
        raise DistillError(f"unknown runtime {runtime!r} (choose from: torch, onnx)")
    if quantize and runtime != "onnx":
        raise DistillError(f"--quantize {quantize} needs --runtime onnx")
    if runtime == "onnx":
        from distill_ner.trainers.export.to_onnx import export_onnx

        with tempfile.TemporaryDirectory(prefix="distill-onnx-model-") as tmp:
            onnx_dir = export_onnx(model_dir, Path(tmp) / "model", quantize=quantize)
            return _export(Path(model_dir), onnx_dir, Path(out_dir), spec_or_labels, lang, name, {"runtime": runtime, "quantize": quantize})
    return _export(Path(model_dir), Path(model_dir), Path(out_dir), spec_or_labels, lang, name, {"runtime": runtime, "quantize": None})


def _export(model_dir: Path, load_dir: Path, out_dir: Path, spec_or_labels: Any, lang: str, name: str | None, runtime: dict[str, Any]) -> Path:
    """The pipeline of the model in `model_dir` whose runtime files are in `load_dir`."""
    meta = read_meta(model_dir)
    allowed = [list(p) for p in meta.allowed_pairs]
    labels = list(meta.entity_labels)
    if spec_or_labels is not None:
        wanted = list(getattr(spec_or_labels, "entity_labels", spec_or_labels))
        if set(wanted) != set(labels):
            raise DistillError(f"{model_dir}: the model's entity labels {labels} differ from the spec's {wanted}")
        if hasattr(spec_or_labels, "relations") and spec_or_labels.relations:
            allowed = [list(p) for p in allowed_pairs_from_spec(spec_or_labels)]
    nlp = spacy.blank(lang)
    nlp.tokenizer = words_tokenizer(nlp.vocab)  # its rules are saved with the pipeline
    component = nlp.add_pipe(FACTORY, config={"labels": labels, "relation_labels": meta.relation_labels, "allowed_pairs": allowed, "runtime": runtime["runtime"]})
    component.load(load_dir)
    metrics = _read_json(model_dir / "metrics.json")
    spec_name = getattr(spec_or_labels, "name", None) or "custom"
    nlp.meta.update(
        {
            "name": name or re.sub(r"[^a-z0-9_]", "_", f"distill_{spec_name}_{meta.role}".lower()),
            "version": "0.1.0",
            "description": f"distill-ner {meta.role}: entities {', '.join(labels)}; relations {', '.join(meta.relation_labels[1:]) or 'none'}",
            "requirements": ["distill-ner>=0.1"],
            "distill": {
                "entity_labels": labels,
                "relation_labels": meta.relation_labels,
                "allowed_pairs": allowed,
                "source": meta.model_dump(mode="json", include={"role", "source_encoder", "teacher", "kd", "alpha", "temperature", "fraction", "n_train", "train_seconds", "parameters", "best_epoch", "dev"}),
                "metrics": metrics,
                **runtime,
            },
        }
    )
    if metrics:
        nlp.meta["performance"] = {"ents_p": metrics.get("precision"), "ents_r": metrics.get("recall"), "ents_f": metrics.get("f1"), "rel_f": metrics.get("relation_f1")}
    out_dir.mkdir(parents=True, exist_ok=True)
    nlp.to_disk(out_dir)
    return out_dir


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
