"""One writer per run folder: an advisory lock on `RUN/.lock` that names its holder.

The lock is `fcntl.flock` on the file, so the kernel releases it when its holder dies, even by
`kill -9`: a lock left by a killed process is simply taken over (and said so). While held, the
file says who holds it (pid, host, command, since when), which is what a second writer is told.
Nested use in the process that holds the lock is allowed (a flow calling a locked stage).
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from distill_ner.data.errors import DistillError

LOCK_FILE = ".lock"
_held: dict[Path, int] = {}  # lock paths this process holds -> nesting depth
_guard = threading.Lock()


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def _describe(holder: dict) -> str:
    return f"pid {holder.get('pid', '?')} on {holder.get('host', '?')} ({holder.get('command', '?')}, since {holder.get('since', '?')})"


def _read(fd: int) -> dict:
    os.lseek(fd, 0, os.SEEK_SET)
    raw = os.read(fd, 65536)
    try:
        return json.loads(raw) if raw.strip() else {}
    except ValueError:
        return {"command": "unreadable lock file"}


@contextmanager
def run_lock(run_dir: str | Path, command: str, warn: Callable[[str], None] = _warn) -> Iterator[Path]:
    """Hold the lock of `run_dir` (created if needed) while the block runs.

    Raises `DistillError` naming the holder when another live process has it.
    """
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise DistillError(f"{run_dir}: is a file; a run folder is a folder (choose another --out)")
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        path = (run_dir / LOCK_FILE).resolve()
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as err:
        raise DistillError(f"{run_dir}: cannot write to this run folder ({err.strerror}); choose another --out or fix its permissions") from None
    with _guard:
        nested = path in _held
        if nested:
            _held[path] += 1
    if nested:
        os.close(fd)
        try:
            yield run_dir
        finally:
            with _guard:
                _held[path] -= 1
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _read(fd)
        os.close(fd)
        raise DistillError(f"{run_dir} is in use by {_describe(holder)}: wait for it to finish, or stop it and rerun") from None
    try:
        left = _read(fd)
        if left:
            warn(f"{run_dir}: taking over the lock left by {_describe(left)}, which is no longer running")
        me = {"pid": os.getpid(), "host": socket.gethostname(), "command": command, "since": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(me).encode(), 0)
        with _guard:
            _held[path] = 1
        yield run_dir
    finally:
        with _guard:
            _held.pop(path, None)
        os.ftruncate(fd, 0)  # a clean release leaves an empty file: nothing to take over
        os.close(fd)  # releases the flock
