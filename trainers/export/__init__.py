"""Exporters: a trained model directory -> something users run elsewhere, one module each.

An exporter is a function `(model_dir, out_dir, spec=None) -> Path`. To add one, write a module
with that function (see `trainers/export/to_transformers.py`) and add one `"format":
"module:function"` line to `EXPORTERS`, call `register_exporter`, or declare it in your package's
entry points (group `distill_ner.exporters`, see `data/registry.py`). `distill export MODEL OUT
--format NAME` runs any of them. Importing this package imports neither spaCy nor torch.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from distill_ner.data.registry import Registry

Exporter = Callable[..., Path]
EXPORTERS: Registry[Exporter] = Registry("export format", "distill_ner.exporters", {  # format -> "module:function"
    "spacy": "distill_ner.trainers.export.to_spacy:export_spacy",
    "transformers": "distill_ner.trainers.export.to_transformers:export_transformers",
})


def register_exporter(name: str, target: str) -> None:
    """Register the exporter `target` ("package.module:function") as format `name`."""
    EXPORTERS.register(name, target)


def exporter(name: str) -> Exporter:
    """The registered exporter for format `name` (one-line error listing the formats otherwise)."""
    return EXPORTERS[EXPORTERS.check(name)]


def export(name: str, model_dir: str | Path, out_dir: str | Path, spec: Any = None, **options: Any) -> Path:
    """Export the model in `model_dir` to `out_dir` in format `name`."""
    return exporter(name)(model_dir, out_dir, spec, **options)
