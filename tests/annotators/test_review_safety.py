"""Data safety around Label Studio (real server, session fixture `label_studio`): pull never
creates a project or loses verified examples, relations are checked against the spec, each run
has its own project, creates are not repeated after a dropped connection, simulated decisions do
not depend on task ids, and the server reports nothing to third parties."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from distill_ner.annotators import ls_server
from distill_ner.annotators.label_studio import client, ensure_project, project_title, pull, push, to_result
from distill_ner.annotators.truth import TruthRecord
from distill_ner.annotators.review_webhook import ReviewWatcher
from distill_ner.annotators.simulate import annotator_ids, simulate_review
from distill_ner.data.errors import DistillError
from distill_ner.data.formats import read_jsonl, write_jsonl
from tests.fixtures.examples import make_example

pytestmark = pytest.mark.slow


@pytest.fixture
def ls(label_studio):
    return client(label_studio.connection)


@pytest.fixture
def distill(label_studio, monkeypatch):
    """Run `distill ...` in-process; returns (exit code, output, the DistillError or None)."""
    monkeypatch.setenv("LABEL_STUDIO_URL", label_studio.url)
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", label_studio.token)
    from distill_ner.flows.cli import app

    def run(*args: str) -> tuple[int, str, BaseException | None]:
        result = CliRunner().invoke(app, list(args))
        if result.exception is not None and not isinstance(result.exception, (DistillError, SystemExit)):
            raise result.exception
        error = result.exception if isinstance(result.exception, DistillError) else None
        return result.exit_code, result.output, error

    return run


def _ok(outcome: tuple[int, str, BaseException | None]) -> str:
    """The output of a command that succeeded, with runs of white space made one space (no wrapping)."""
    code, output, error = outcome
    assert code == 0 and error is None, (output, error)
    return " ".join(output.split())


def _run(tmp_path: Path, name: str, examples) -> Path:
    """A run folder: the LLM's examples, and the same as the mock's truth (for the simulated annotator)."""
    run = tmp_path / name
    write_jsonl(run / "generated.jsonl", examples)
    (run / "mock_truth.jsonl").write_text("".join(json.dumps({**json.loads(e.model_dump_json()), "errors": []}) + "\n" for e in examples))
    return run


def _titles(ls) -> list[str]:
    return [p.title for p in ls.projects.list()]


def _one_line_error(outcome, match: str) -> str:
    code, output, error = outcome
    assert code == 1 and error is not None, output
    message = str(error)
    assert "\n" not in message
    assert match in message, message
    return message


# --- item 1: pull never creates a project, never loses verified examples ------------------
def test_pull_with_a_mistyped_project_creates_nothing_and_keeps_verified(ls, distill, species_spec, species_examples, tmp_path):
    run = _run(tmp_path, "safety-pull", species_examples)
    _ok(distill("review", "push", "--run", str(run)))
    _ok(distill("review", "simulate", "--run", str(run), "--accuracy", "1", "--annotators", "safety-a"))
    _ok(distill("review", "pull", "--run", str(run)))
    before = (run / "verified.jsonl").read_bytes()
    assert len(read_jsonl(run / "verified.jsonl")) == 4
    typo = "distill speces safety-pull"
    for command in (("pull", "--run", str(run)), ("status",), ("simulate", "--run", str(run))):
        message = _one_line_error(distill("review", *command, "--project", typo), f"no Label Studio project {typo!r}")
        assert repr(project_title(species_spec, "safety-pull")) in message  # names the projects that exist
    assert typo not in _titles(ls) and (run / "verified.jsonl").read_bytes() == before
    _one_line_error(distill("review", "status"), "give --run RUN")

    # fewer verified examples than verified.jsonl holds: refused unless --allow-fewer
    pid = ensure_project(ls, species_spec, project_title(species_spec, "safety-pull"))
    task = next(t for t in ls.tasks.list(project=pid, fields="all") if t.annotations)
    ls.annotations.delete(id=task.annotations[0]["id"] if isinstance(task.annotations[0], dict) else task.annotations[0].id)
    _one_line_error(distill("review", "pull", "--run", str(run)), "holds 4 verified examples and this pull has 3")
    assert (run / "verified.jsonl").read_bytes() == before
    _ok(distill("review", "pull", "--run", str(run), "--allow-fewer"))
    assert len(read_jsonl(run / "verified.jsonl")) == 3

    # a run folder that cannot be written: one line, not a traceback
    (run / "review.json").unlink()
    (run / "review.json").mkdir()
    _one_line_error(distill("review", "pull", "--run", str(run)), "review.json: cannot write it")


# --- item 5: relations are checked against the spec on pull --------------------------------
def _with_relation(example, label: str | None, head: str, tail: str) -> list[dict]:
    items = [i for i in to_result(example) if i.get("type") != "relation"]
    return items + [{"type": "relation", "from_id": head, "to_id": tail, "direction": "right", "labels": [label] if label else []}]


def test_pull_turns_backwards_relations_round_and_holds_back_the_ones_the_spec_forbids(ls, distill, species_spec, species_examples, tmp_path):
    leopard, turtle, axolotl = species_examples[:3]
    run = _run(tmp_path, "safety-relations", [leopard, turtle, axolotl])
    _ok(distill("review", "push", "--run", str(run)))
    pid = ensure_project(ls, species_spec, project_title(species_spec, "safety-relations"))
    tasks = {t.data["example_id"]: t.id for t in ls.tasks.list(project=pid, fields="task_only", include="id,data")}
    ls.annotations.create(id=tasks[leopard.id], result=_with_relation(leopard, "live_in", "e1", "e0"))  # HABITAT -> SPECIES
    ls.annotations.create(id=tasks[turtle.id], result=_with_relation(turtle, None, "e0", "e3"))  # no type
    ls.annotations.create(id=tasks[axolotl.id], result=_with_relation(axolotl, "live_in", "e1", "e4"))  # FEEDING -> HABITAT
    out = _ok(distill("review", "pull", "--run", str(run)))
    assert "relations flipped 1" in out and "pending 2" in out
    assert f"problem: task {tasks[turtle.id]} 'Hawksbill turtles (Eretmochelys imbri...': relation 'Hawksbill turtles' (SPECIES) -> 'tropical beaches' (HABITAT) has no type" in out
    assert f"problem: task {tasks[axolotl.id]} 'Axolotls eat worms" in out and "live_in 'worms' (FEEDING) -> 'Lake Xochimilco' (HABITAT) is not allowed" in out
    verified = read_jsonl(run / "verified.jsonl")
    assert [e.id for e in verified] == [leopard.id]  # the other two stay pending, out of the training data
    assert [(r.head, r.tail, r.label) for r in verified[0].relations] == [(0, 1, "live_in")]
    review = json.loads((run / "review.json").read_text())
    assert review["relations_flipped"] == 1 and len(review["problems"]) == 2
    assert review["problems"][0].startswith(f"task {tasks[turtle.id]} ") or review["problems"][1].startswith(f"task {tasks[turtle.id]} ")


# --- item 6: one project per run ------------------------------------------------------------
def test_each_run_has_its_own_project(ls, distill, species_spec, species_examples, tmp_path):
    simulated = _run(tmp_path, "safety-simulated", species_examples)
    human = _run(tmp_path, "safety-human", species_examples)  # the same texts, so the same example ids
    _ok(distill("review", "push", "--run", str(simulated)))
    _ok(distill("review", "simulate", "--run", str(simulated), "--accuracy", "1"))
    _ok(distill("review", "pull", "--run", str(simulated)))
    assert "4 tasks created, 0 already there" in _ok(distill("review", "push", "--run", str(human)))
    out = _ok(distill("review", "pull", "--run", str(human)))
    assert "pending 4" in out and read_jsonl(human / "verified.jsonl") == []  # no simulated verdict passes for a human one
    status = json.loads(_ok(distill("review", "status", "--run", str(human), "--json")))
    assert (status["tasks"], status["done"]) == (4, 0)
    assert {project_title(species_spec, "safety-simulated"), project_title(species_spec, "safety-human")} <= set(_titles(ls))


def test_a_project_shared_by_runs_warns_about_the_other_runs_verdicts(distill, species_examples, tmp_path):
    first, second = _run(tmp_path, "safety-first", species_examples), _run(tmp_path, "safety-second", species_examples)
    shared = ("--project", "safety shared project")
    _ok(distill("review", "push", "--run", str(first), *shared))
    assert "0 tasks created, 4 already there" in _ok(distill("review", "push", "--run", str(second), *shared))
    _ok(distill("review", "simulate", "--run", str(first), *shared, "--accuracy", "1"))
    assert "warning" not in _ok(distill("review", "pull", "--run", str(first), *shared))
    out = _ok(distill("review", "pull", "--run", str(second), *shared))
    assert "warning: 4 of 4 verdicts come from tasks pushed by another run ('safety-first' (4))" in out


# --- item 7: a create is retried only after checking it did not happen -----------------------
def _dropped_once(monkeypatch, sdk_part, name: str) -> list[int]:
    """The first call really creates, then the connection dies before the answer arrives."""
    real, calls = getattr(sdk_part, name), []

    def wrapper(*args, **kwargs):
        calls.append(1)
        result = real(*args, **kwargs)
        if len(calls) == 1:
            raise httpx.ReadError("connection closed after the server saved it")
        return result

    monkeypatch.setattr(sdk_part, name, wrapper)
    return calls


def test_creates_after_a_dropped_connection_happen_once(ls, species_spec, species_examples, monkeypatch):
    title = "safety dropped connection"
    calls = _dropped_once(monkeypatch, ls.projects, "create")
    pid = ensure_project(ls, species_spec, title)
    assert len(calls) == 1 and _titles(ls).count(title) == 1

    calls = _dropped_once(monkeypatch, ls.users, "create")
    user = annotator_ids(ls, ["safety-dropped"])["safety-dropped"]
    assert len(calls) == 1 and [u.id for u in ls.users.list() if u.email == "safety-dropped@distill.local"] == [user]

    push(ls, pid, species_examples[:1], species_spec)
    calls = _dropped_once(monkeypatch, ls.annotations, "create")
    assert simulate_review(ls, pid, {}, annotators=["safety-dropped"]).annotations == 1
    task = next(iter(ls.tasks.list(project=pid, fields="task_only", include="id")))
    assert len(calls) == 1 and len(ls.annotations.list(id=task.id)) == 1

    calls = _dropped_once(monkeypatch, ls.webhooks, "create")
    ReviewWatcher(ls, pid, example_ids=[species_examples[0].id]).wait(None)  # reviewed already: returns at once
    assert len(calls) == 1 and list(ls.webhooks.list(project=str(pid))) == []  # the one hook, removed on the way out


# --- item 7: simulated decisions do not depend on task ids -----------------------------------
def test_simulated_decisions_are_the_same_in_any_project(ls, species_spec):
    truth = [make_example(f"Toad {i} lives in marsh {i}.", [(f"Toad {i}", "SPECIES"), (f"marsh {i}", "HABITAT")], [(0, 1, "live_in")]) for i in range(24)]
    llm = [t.model_copy(update={"entities": t.entities[:1], "relations": []}) for t in truth]  # every one misses its marsh
    records = {t.text: TruthRecord(example=t) for t in truth}
    decided = []
    for title in ("safety same decisions a", "safety same decisions b"):
        pid = ensure_project(ls, species_spec, title)
        push(ls, pid, llm, species_spec)
        simulate_review(ls, pid, records, accuracy=0.5, seed=5)
        decided.append({e.text: e.review.status for e in pull(ls, pid, species_spec, llm).verified})
    assert len(decided[0]) == 24 and decided[0] == decided[1]
    assert set(decided[0].values()) == {"accepted", "corrected"}


# --- item 10: no error reports or telemetry off the machine ----------------------------------
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/<pid>/environ")
def test_the_running_server_has_error_reporting_and_telemetry_off(label_studio):
    pid = ls_server.server_status(label_studio.data_dir)["pid"]  # the current one (another test restarts it)
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    env = dict(item.decode().split("=", 1) for item in raw if b"=" in item)
    assert env["SENTRY_DSN"] == "" and env["FRONTEND_SENTRY_DSN"] == ""
    for name, value in ls_server.TELEMETRY_OFF.items():
        assert env[name] == value, name
