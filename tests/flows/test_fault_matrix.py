"""The fault matrix: kill -9 of generate, push and the simulated review at seeded random points,
and of Label Studio itself during simulate and pull, each followed by a rerun. Afterwards every
requested example is kept or rejected with a reason, no finished LLM call was made twice, every
example is exactly one task with exactly one annotation per annotator, and `verified.jsonl`
equals the one of an uninterrupted run.

Every command runs as a real `distill` process against the mock LLM and a real Label Studio.
The figures are printed (`pytest -s`) for the closing note of a change.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from distill_ner.annotators import ls_server
from distill_ner.annotators.label_studio import client
from distill_ner.annotators.mock_llm import MockConfig, MockLLMServer
from distill_ner.data.formats import read_jsonl

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
N = 30
ANNOTATORS = "fm-a,fm-b"


@pytest.fixture(scope="module")
def world(label_studio, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("faults")
    config = MockConfig(seed=5, latency_s=0.25, truth_file=tmp / "truth.jsonl")
    with MockLLMServer(config) as mock:
        env = {**os.environ, "LABEL_STUDIO_URL": label_studio.url, "LABEL_STUDIO_API_KEY": label_studio.token, "OPENAI_API_KEY": "", "OPENAI_BASE_URL": ""}
        yield {"tmp": tmp, "mock": mock, "env": env, "ls": label_studio}


def distill(world, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "distill_ner.flows.cli", *args], cwd=REPO, env=world["env"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen, timeout: float = 300) -> tuple[int, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out + err


def ok(world, *args: str) -> str:
    code, output = finish(distill(world, *args))
    assert code == 0, output
    return output


def kill_when(proc: subprocess.Popen, ready: Callable[[], bool], timeout: float = 120) -> bool:
    """kill -9 `proc` as soon as `ready()`; False if it finished first."""
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        if ready():
            proc.send_signal(signal.SIGKILL)
            proc.communicate()
            return True
        time.sleep(0.05)
    proc.communicate()
    return False


def commands(world, run: str) -> dict[str, list[str]]:
    folder, project = str(world["tmp"] / run), f"fault matrix {run}"
    return {
        "generate": ["generate", "--n", str(N), "--out", folder, "--base-url", world["mock"].base_url, "--model", "mock-species", "--seed", "3", "--concurrency", "2"],
        "push": ["review", "push", "--run", folder, "--project", project, "--batch-size", "3"],
        "simulate": ["review", "simulate", "--run", folder, "--truth", str(world["tmp"] / "truth.jsonl"), "--project", project,
                     "--annotators", ANNOTATORS, "--per-task", "2", "--accuracy", "0.9", "--seed", "1"],
        "pull": ["review", "pull", "--run", folder, "--project", project],
    }


def project_id(world, run: str) -> int:
    ls = client(world["ls"].connection)
    return next(p.id for p in ls.projects.list() if p.title == f"fault matrix {run}")


def annotation_counts(world, run: str) -> tuple[Counter, Counter]:
    """(tasks per example id, annotations per (task, annotator)) of the run's project."""
    ls = client(world["ls"].connection)
    tasks = list(ls.tasks.list(project=project_id(world, run), fields="all", page_size=1000))
    per_example = Counter(t.data["example_id"] for t in tasks)
    per_annotator = Counter((t.id, a["completed_by"] if isinstance(a, dict) else a.completed_by) for t in tasks for a in t.annotations or []
                            if not (a.get("was_cancelled") if isinstance(a, dict) else a.was_cancelled))
    return per_example, per_annotator


def verdicts(path: Path) -> list[tuple]:
    """What a pull decided, without times and task ids (which differ between projects)."""
    return sorted((e.id, e.text, tuple((x.start, x.end, x.label) for x in e.entities), tuple((r.head, r.tail, r.label) for r in e.relations),
                   e.review.status, e.review.annotator) for e in read_jsonl(path))


def restart_label_studio(world) -> float:
    """kill -9 the Label Studio server and start it again on the same port; seconds it was away."""
    server = world["ls"]
    info = json.loads((server.data_dir / ls_server.SERVER_FILE).read_text())
    started = time.monotonic()
    os.killpg(info["pid"], signal.SIGKILL)
    time.sleep(1.0)
    ls_server.start(server.data_dir, port=server.port, timeout=240)
    return time.monotonic() - started


def test_kill_and_rerun_every_stage_gives_the_uninterrupted_result(world):
    rng = random.Random(2026)
    figures: dict[str, object] = {}
    reference = commands(world, "reference")
    for stage in ("generate", "push", "simulate", "pull"):
        ok(world, *reference[stage])
    mock = world["mock"]
    planned = json.loads((world["tmp"] / "reference" / "generate_summary.json").read_text())["requests"]

    run = commands(world, "faulted")
    folder = world["tmp"] / "faulted"
    cache = folder / "llm_cache"

    # generate: kill -9 after a random number of answers is cached, then rerun
    requests_before = mock.stats.requests
    target = rng.randint(1, planned - 1)
    killed = kill_when(distill(world, *run["generate"]), lambda: len(list(cache.glob("*/*.json"))) >= target)
    cached_at_kill = len(list(cache.glob("*/*.json")))
    ok(world, *run["generate"])
    summary = json.loads((folder / "generate_summary.json").read_text())
    assert killed and summary["cache_hits"] == cached_at_kill and summary["calls"] == planned - cached_at_kill  # no finished call made twice
    assert summary["kept"] + sum(summary["rejected"].values()) + summary["duplicates"] == summary["requested"] == N
    assert (folder / "generated.jsonl").read_bytes() == (world["tmp"] / "reference" / "generated.jsonl").read_bytes()
    figures["generate"] = {"killed after cached answers": cached_at_kill, "of requests": planned,
                           "LLM requests in both attempts": mock.stats.requests - requests_before, "finished calls repeated": summary["calls"] - (planned - cached_at_kill)}

    # push: kill -9 twice at random numbers of imported tasks, then rerun
    ls = client(world["ls"].connection)
    kills = []
    for _ in range(2):
        target = rng.randint(1, N - 1)

        def tasks_in() -> int:
            try:
                return ls.projects.get(id=project_id(world, "faulted")).task_number or 0
            except StopIteration:
                return 0

        kills.append((target, kill_when(distill(world, *run["push"]), lambda: tasks_in() >= target), tasks_in()))
    ok(world, *run["push"])
    figures["push"] = {"kills (target, killed, tasks then)": kills}

    # simulate: kill -9 at a random number of annotations, rerun; then kill Label Studio in the middle of another pass
    pid = project_id(world, "faulted")

    def annotations() -> int:
        return ls.projects.get(id=pid).total_annotations_number or 0

    target = rng.randint(1, 2 * N - 1)
    killed = kill_when(distill(world, *run["simulate"]), lambda: annotations() >= target)
    figures["simulate"] = {"killed at annotations": annotations() if killed else None}
    ls_proc = distill(world, *run["simulate"])
    target = annotations() + rng.randint(1, max(1, 2 * N - annotations() - 1))
    while ls_proc.poll() is None and annotations() < target:
        time.sleep(0.05)
    away = restart_label_studio(world) if ls_proc.poll() is None else None
    code, output = finish(ls_proc)
    if code != 0:  # it may give up while the server is away (one line); the rerun finishes the work
        assert "Traceback" not in output and "error:" in output, output
        ok(world, *run["simulate"])
    figures["simulate"] |= {"Label Studio killed at annotations": target, "seconds away": away and round(away, 1), "command rode it out": code == 0}

    # pull: kill Label Studio while it pulls, rerun if it gave up
    pull = distill(world, *run["pull"])
    time.sleep(rng.uniform(0.5, 3.0))
    away = restart_label_studio(world) if pull.poll() is None else None
    code, output = finish(pull)
    if code != 0:
        assert "Traceback" not in output and "error:" in output, output
        ok(world, *run["pull"])
    figures["pull"] = {"Label Studio killed": away is not None, "command rode it out": code == 0}

    per_example, per_annotator = annotation_counts(world, "faulted")
    generated = read_jsonl(folder / "generated.jsonl")
    assert sorted(per_example) == sorted(e.id for e in generated) and set(per_example.values()) == {1}  # every example exactly one task
    assert len(per_annotator) == 2 * len(generated) and set(per_annotator.values()) == {1}  # one annotation per annotator per task
    assert verdicts(folder / "verified.jsonl") == verdicts(world["tmp"] / "reference" / "verified.jsonl")
    figures["result"] = {"examples": len(generated), "tasks": sum(per_example.values()), "annotations": sum(per_annotator.values())}
    print("\nfault matrix:", json.dumps(figures, default=str))
