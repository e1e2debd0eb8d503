"""Stable digests of settings and of file contents: what a finished stage or a cached model was made from."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any


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
