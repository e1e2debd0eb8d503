"""KD methods, one module each, registered here by name.

A method turns the training arguments into one or more `Phase`s (epochs, early stopping, and the
loss of one batch from the student's logits, the teacher's logits and the gold labels); the
trainer runs the phases in order with a fresh optimizer each. To add a method, write one module
with a `METHOD` (see `trainers/kd/hinton.py`) and add one line to `KD_METHODS`, call
`register_kd` from your own code, or declare it in your package's entry points (group
`distill_ner.kd_methods`, see `data/registry.py`). Importing this package does not import torch,
so configs and command lines can list and check the names cheaply.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from distill_ner.data.errors import DistillError
from distill_ner.data.registry import Registry

if TYPE_CHECKING:
    from distill_ner.trainers.kd.base import KDMethod

KD_METHODS: Registry[KDMethod] = Registry("KD method", "distill_ner.kd_methods", {  # name -> "module:METHOD"
    "none": "distill_ner.trainers.kd.plain:METHOD",
    "hinton": "distill_ner.trainers.kd.hinton:METHOD",
    "annealing": "distill_ner.trainers.kd.annealing:METHOD",
    "hinton_hidden": "distill_ner.trainers.kd.hidden:METHOD",
})


def kd_names() -> list[str]:
    """The registered KD method names."""
    return list(KD_METHODS)


def register_kd(name: str, target: str) -> None:
    """Register the KD method `target` ("package.module:METHOD", or a module path whose `METHOD` it is) under `name`."""
    KD_METHODS.register(name, target if ":" in target else f"{target}:METHOD")


def check_kd(name: str) -> str:
    """`name` when it is a registered KD method, else a one-line error listing the known ones."""
    return KD_METHODS.check(name)


def kd_method(name: str) -> KDMethod:
    """The registered KD method `name`."""
    return KD_METHODS[check_kd(name)]


TRANSFER = "+transfer"


def parse_kd_setting(setting: str) -> tuple[str, bool]:
    """A sweep's KD setting: `hinton` -> ("hinton", False); `hinton+transfer` -> ("hinton", True),
    where the examples pruning removed become the student's transfer set (soft targets only)."""
    kd, transfer = (setting[: -len(TRANSFER)], True) if setting.endswith(TRANSFER) else (setting, False)
    check_kd(kd)
    if transfer and kd == "none":
        raise DistillError(f"{setting}: a transfer set is learned from the teacher; use it with a KD method (e.g. hinton{TRANSFER})")
    return kd, transfer
