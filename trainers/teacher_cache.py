"""The teacher's logits, computed once per teacher and input set and kept on disk.

`cached_teacher_logits(teacher_dir, inputs, compute)` keys the cache by a hash of the teacher's
weight files and every input id, under `teacher_dir/logits_cache/`, so KD costs little more than
plain training.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path

import torch


def fingerprint(teacher_dir: str | Path, inputs: Sequence[Sequence[int]], extra: str = "") -> str:
    """Hash of the teacher's weight files (size and mtime) and every input sequence."""
    h = hashlib.sha1(extra.encode())
    for path in sorted(Path(teacher_dir).rglob("*")):
        if path.is_file() and "logits_cache" not in path.parts and path.suffix in (".safetensors", ".bin", ".pt"):
            stat = path.stat()
            h.update(f"{path.name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    for ids in inputs:
        h.update(len(ids).to_bytes(4, "little"))
        h.update(b"".join(int(i).to_bytes(4, "little", signed=True) for i in ids))
    return h.hexdigest()[:20]


def cached_teacher_logits(
    teacher_dir: str | Path,
    inputs: Sequence[Sequence[int]],
    compute: Callable[[], dict[str, list[torch.Tensor]]],
    name: str = "logits",
) -> dict[str, list[torch.Tensor]]:
    """Teacher logits for `inputs` (named lists of tensors), from `teacher_dir/logits_cache/` or
    computed once and saved (as float16)."""
    key = fingerprint(teacher_dir, inputs, name)
    path = Path(teacher_dir) / "logits_cache" / f"{name}-{key}.pt"
    if path.exists():
        return torch.load(path, weights_only=True)
    logits = {k: [t.detach().to("cpu", torch.float16) for t in v] for k, v in compute().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(logits, tmp)
    tmp.replace(path)
    return logits
