"""One writer per run folder: a second writer is refused with the holder named; a lock left by a
killed process is taken over; the holder may nest."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from distill_ner.data.errors import DistillError
from distill_ner.data.run_lock import LOCK_FILE, run_lock

HOLD = """
import sys, time
from distill_ner.data.run_lock import run_lock
with run_lock(sys.argv[1], "distill generate --n 5"):
    print("locked", flush=True)
    time.sleep(60)
"""


def _holder(run_dir) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(run_dir)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_a_second_writer_is_refused_with_the_holder_named(tmp_path):
    proc = _holder(tmp_path / "run")
    try:
        with pytest.raises(DistillError, match=rf"in use by pid {proc.pid} .*distill generate --n 5, since 20"):
            with run_lock(tmp_path / "run", "distill run demo"):
                pass
    finally:
        proc.kill()
        proc.wait()


def test_a_lock_left_by_a_killed_process_is_taken_over(tmp_path):
    proc = _holder(tmp_path / "run")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert (tmp_path / "run" / LOCK_FILE).read_text()  # the dead holder's note is still there
    said = []
    with run_lock(tmp_path / "run", "distill generate", warn=said.append):
        assert f"pid {os.getpid()}" in _holder_note(tmp_path / "run")
    assert len(said) == 1 and f"left by pid {proc.pid}" in said[0] and "no longer running" in said[0]
    with run_lock(tmp_path / "run", "again", warn=said.append):  # a clean release leaves nothing to take over
        pass
    assert len(said) == 1


def _holder_note(run_dir) -> str:
    return f"pid {__import__('json').loads((run_dir / LOCK_FILE).read_text())['pid']}"


def test_the_holder_may_nest_and_others_wait_their_turn(tmp_path):
    with run_lock(tmp_path / "run", "distill run demo"):
        with run_lock(tmp_path / "run", "generate stage"):
            pass
        done = subprocess.run([sys.executable, "-c", HOLD.replace("time.sleep(60)", "pass"), str(tmp_path / "run")], capture_output=True, text=True, timeout=60)
        assert done.returncode == 1 and "in use by pid" in done.stderr
    started = time.monotonic()
    proc = _holder(tmp_path / "run")  # released: the next writer gets it at once
    proc.kill()
    proc.wait()
    assert time.monotonic() - started < 30


def test_an_output_that_is_a_file_is_one_line(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(DistillError, match="is a file"):
        with run_lock(tmp_path / "file", "distill generate"):
            pass
