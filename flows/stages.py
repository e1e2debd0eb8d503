"""Resume by stage: a finished stage leaves `runs/<run>/stages/<name>.json` with the key of what it
read and its result; a rerun whose key is the same skips it and says so.

The key covers the stage's settings and the content of every file it reads (the spec's text, the
examples, the split and model files), so editing the spec or an input reruns exactly the stages
downstream of the edit, and editing nothing skips them all. The record lives beside the artifacts
it describes: deleting a run folder (or one model folder) makes those stages run again.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

from distill_ner.data.digest import content_key, inputs_key
from distill_ner.data.run_layout import RunLayout

T = TypeVar("T")


def run_stage(
    run_dir: Path,
    name: str,
    inputs: Any,
    body: Callable[[], T],
    outputs: list[Path] | None = None,
    log: Callable[[str], None] = print,
    reads: Iterable[str | Path] = (),
) -> T:
    """Run `body()` unless this stage already finished with the same `inputs` and the same content
    of the files it `reads` (and its `outputs` still exist)."""
    record = RunLayout(run_dir).stages / f"{name}.json"
    key = inputs_key([inputs, content_key(reads)])
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
