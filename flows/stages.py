"""Resume by stage: a finished stage leaves `runs/<run>/stages/<name>.json` with the key of what it
read and its result; a rerun whose key is the same skips it and says so.

The key covers the stage's settings and the content of every file it reads (the spec's text, the
examples, the split and model files), so editing the spec or an input reruns exactly the stages
downstream of the edit, and editing nothing skips them all. The record lives beside the artifacts
it describes: deleting a run folder (or one model folder) makes those stages run again.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

from distill_ner.data.run_layout import RunLayout

T = TypeVar("T")


def inputs_key(inputs: Any) -> str:
    """A stable hash of JSON-able stage inputs."""
    return hashlib.sha256(json.dumps(inputs, sort_keys=True, default=str).encode()).hexdigest()[:16]


def content_key(paths: Iterable[str | Path]) -> str:
    """A hash of the bytes of the files at `paths` (folders: every file in them, by relative path);
    a missing path counts as missing, not as an error."""
    h = hashlib.sha256()
    for path in map(Path, paths):
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        h.update(f"{path}\0".encode())
        for file in files:
            h.update(f"{file.relative_to(path) if path.is_dir() else file.name}\0".encode())
            if file.exists():
                with file.open("rb") as handle:
                    h.update(hashlib.file_digest(handle, "sha256").digest())
            else:
                h.update(b"<missing>")
    return h.hexdigest()[:16]


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
