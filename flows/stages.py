"""Resume by stage: a finished stage leaves `runs/<run>/stages/<name>.json` with the hash of its
inputs and its result; a rerun with the same inputs skips it and says so.

The record lives beside the artifacts it describes, so deleting a run folder (or one model
folder) makes those stages run again instead of returning a stale cached result.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


def inputs_key(inputs: Any) -> str:
    """A stable hash of JSON-able stage inputs."""
    return hashlib.sha256(json.dumps(inputs, sort_keys=True, default=str).encode()).hexdigest()[:16]


def run_stage(
    run_dir: Path,
    name: str,
    inputs: Any,
    body: Callable[[], T],
    outputs: list[Path] | None = None,
    log: Callable[[str], None] = print,
) -> T:
    """Run `body()` unless this stage already finished with the same inputs (and its outputs exist)."""
    record = Path(run_dir) / "stages" / f"{name}.json"
    key = inputs_key(inputs)
    if record.exists():
        saved = json.loads(record.read_text())
        if saved["key"] == key and all(Path(p).exists() for p in saved.get("outputs", [])):
            log(f"skipping {name}: finished in an earlier run with the same inputs")
            return saved["result"]
    result = body()
    record.parent.mkdir(parents=True, exist_ok=True)
    tmp = record.with_suffix(".tmp")
    tmp.write_text(json.dumps({"key": key, "result": result, "outputs": [str(p) for p in outputs or []]}, default=str, indent=1))
    tmp.replace(record)
    return result
