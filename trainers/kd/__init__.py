"""KD methods, one module each, registered here by name.

A method turns the training arguments into one or more `Phase`s (epochs, early stopping, and the
loss of one batch from the student's logits, the teacher's logits and the gold labels); the
trainer runs the phases in order with a fresh optimizer each. To add a method, write one module
with a `METHOD` (see `trainers/kd/hinton.py`) and add one line to `KD_METHODS` (or call
`register_kd` from your own code). Importing this package does not import torch, so configs and
command lines can list and check the names cheaply.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from distill_ner.data.errors import DistillError

if TYPE_CHECKING:
    from distill_ner.trainers.kd.base import KDMethod

KD_METHODS: dict[str, str] = {  # name -> module with a METHOD
    "none": "distill_ner.trainers.kd.plain",
    "hinton": "distill_ner.trainers.kd.hinton",
    "annealing": "distill_ner.trainers.kd.annealing",
    "hinton_hidden": "distill_ner.trainers.kd.hidden",
}


def kd_names() -> list[str]:
    """The registered KD method names."""
    return list(KD_METHODS)


def register_kd(name: str, module: str) -> None:
    """Register the KD method `METHOD` of `module` (a dotted import path) under `name`."""
    KD_METHODS[name] = module


def check_kd(name: str) -> str:
    """`name` when it is a registered KD method, else a one-line error listing the known ones."""
    if name not in KD_METHODS:
        raise DistillError(f"unknown KD method {name!r} (registered: {', '.join(KD_METHODS)})")
    return name


def kd_method(name: str) -> KDMethod:
    """The registered KD method `name`."""
    return importlib.import_module(KD_METHODS[check_kd(name)]).METHOD


TRANSFER = "+transfer"


def parse_kd_setting(setting: str) -> tuple[str, bool]:
    """A sweep's KD setting: `hinton` -> ("hinton", False); `hinton+transfer` -> ("hinton", True),
    where the examples pruning removed become the student's transfer set (soft targets only)."""
    kd, transfer = (setting[: -len(TRANSFER)], True) if setting.endswith(TRANSFER) else (setting, False)
    check_kd(kd)
    if transfer and kd == "none":
        raise DistillError(f"{setting}: a transfer set is learned from the teacher; use it with a KD method (e.g. hinton{TRANSFER})")
    return kd, transfer
