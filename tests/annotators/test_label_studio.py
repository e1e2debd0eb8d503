"""Against a real Label Studio server (session fixture `label_studio`): push, simulated review,
pull and the correctness report; idempotent pushes; a killed push and a server restart."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from typer.testing import CliRunner

from distill_ner.annotators import ls_server
from distill_ner.annotators.label_studio import client, ensure_project, pull, push, review_status
from distill_ner.annotators.ls_server import Connection
from distill_ner.data.errors import DistillError
from distill_ner.data.example import Entity, Example, Source
from distill_ner.data.formats import read_jsonl, write_jsonl
from tests.fixtures.examples import make_example

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def ls(label_studio):
    return client(label_studio.connection)


@pytest.fixture
def title(request) -> str:
    return f"test {request.node.name}"[:50]


def _with_source(e: Example, confidence: float) -> Example:
    return e.model_copy(update={"source": Source(model="mock-species", confidence=confidence)})


def _task_counts(ls, project_id: int) -> Counter:
    return Counter(t.data["example_id"] for t in ls.tasks.list(project=project_id, fields="task_only", include="id,data", page_size=5000))


def _many(n: int) -> list[Example]:
    return [make_example(f"Species number {i} lives in habitat {i}.", [(f"Species number {i}", "SPECIES"), (f"habitat {i}", "HABITAT")], [(0, 1, "live_in")], model="m", confidence=(i % 10) / 10) for i in range(n)]


def test_push_simulate_pull_report_through_the_cli(label_studio, species_examples, tmp_path, monkeypatch, title):
    truth = [_with_source(e, c) for e, c in zip(species_examples, (0.9, 0.5, 0.7, 0.2))]
    leopard, turtle, axolotl, empty = truth
    llm = [
        leopard,
        turtle.model_copy(update={"entities": turtle.entities[:3], "relations": turtle.relations[:1]}),  # missed the beach
        axolotl.model_copy(update={"entities": [*axolotl.entities[:4], Entity(start=52, end=67, label="FEEDING")]}),  # wrong label
        empty,
    ]
    run = tmp_path / "run1"
    write_jsonl(run / "generated.jsonl", llm)
    lines = [json.dumps({**json.loads(e.model_dump_json()), "errors": ["unusable"] if e is empty else []}) for e in truth]
    (run / "mock_truth.jsonl").write_text("\n".join(lines) + "\n")
    monkeypatch.setenv("LABEL_STUDIO_URL", label_studio.url)
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", label_studio.token)
    from distill_ner.flows.cli import app

    def distill(*args: str) -> str:
        result = CliRunner().invoke(app, list(args), catch_exceptions=False)
        assert result.exit_code == 0, result.output
        assert label_studio.token not in result.output
        return result.output

    out = distill("review", "push", "--run", str(run), "--project", title)
    assert "4 tasks created, 0 already there" in out
    out = distill("review", "simulate", "--run", str(run), "--project", title, "--annotators", "ann-a,ann-b", "--per-task", "2", "--accuracy", "1",
                  "--convention-drift", "0")
    assert "8 annotations on 4 tasks" in out
    distill("review", "pull", "--run", str(run), "--project", title)
    verified = {e.id: e for e in read_jsonl(run / "verified.jsonl")}
    assert {e.id: verified[e.id].review.status for e in llm} == {leopard.id: "accepted", llm[1].id: "corrected", axolotl.id: "corrected", empty.id: "rejected"}
    assert verified[turtle.id].entities == turtle.entities  # corrected to the truth
    assert verified[turtle.id].review.diff.entities_added[0].text == "tropical beaches"
    assert verified[leopard.id].review.annotator == "ann-a@distill.local, ann-b@distill.local"
    summary = json.loads((run / "review.json").read_text())
    assert summary["agreement"]["span_f1"] == 1.0 and summary["agreement"]["tasks_with_several_annotators"] == 4
    out = distill("review", "report", "--run", str(run))
    report = json.loads((run / "correctness.json").read_text())
    assert report["examples"]["rejected"] == 1 and report["examples"]["compared"] == 3
    habitat, feeding = report["entities"]["per_label"]["HABITAT"], report["entities"]["per_label"]["FEEDING"]
    assert (habitat["precision"], habitat["recall"]) == (1.0, pytest.approx(1 / 3, abs=1e-4))  # missed one, mislabelled one
    assert (feeding["precision"], feeding["recall"]) == (0.8, 1.0)  # 4 right, 1 wrong
    assert "| entities | HABITAT |" in out
    status = json.loads(distill("review", "status", "--project", title, "--json"))
    assert status["done"] == 4 and status["pending"] == 0 and status["rejected"] == 1
    assert status["annotators"]["ann-a@distill.local"] == {"done": 3, "rejected": 1, "skipped": 0}


def test_the_cli_pushes_a_blind_test_share_and_splits_on_it(label_studio, ls, tmp_path, monkeypatch, title):
    from distill_ner.data.formats import blind_test_ids, load_splits
    from distill_ner.flows.cli import app

    run = tmp_path / "blind"
    generated = _many(20)
    write_jsonl(run / "generated.jsonl", generated)
    monkeypatch.setenv("LABEL_STUDIO_URL", label_studio.url)
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", label_studio.token)

    def distill(*args: str) -> str:
        result = CliRunner().invoke(app, list(args), catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.output

    assert "5 of them blind" in distill("review", "push", "--run", str(run), "--project", title, "--blind-test", "0.25", "--seed", "3")
    blind = blind_test_ids(generated, 0.25, seed=3)
    project = next(p for p in ls.projects.list() if p.title == title)
    assert sorted(t.data["example_id"] for t in ls.tasks.list(project=project.id, fields="all") if not t.predictions) == sorted(blind)
    write_jsonl(run / "mock_truth.jsonl", generated)  # a reviewer who finds the LLM right
    distill("review", "simulate", "--run", str(run), "--project", title, "--accuracy", "1", "--convention-drift", "0")
    distill("review", "pull", "--run", str(run), "--project", title)
    distill("split", str(run / "verified.jsonl"), "--out", str(run / "verified"), "--blind", "--dev", "0.2")
    splits = load_splits(run / "verified")
    assert {e.id for e in splits["test"]} == blind and {e.review.blind for e in splits["test"]} == {True} and len(splits["dev"]) == 4


def test_push_twice_adds_nothing_and_never_touches_an_annotation(ls, species_spec, species_examples, title):
    pid = ensure_project(ls, species_spec, title)
    assert push(ls, pid, species_examples, species_spec).created == 4
    task_id = next(iter(ls.tasks.list(project=pid, fields="task_only", include="id,data"))).id
    ls.annotations.create(id=task_id, result=[])  # an annotator accepted "nothing" on this task
    ls.annotations.create(id=next(iter(_task_ids(ls, pid) - {task_id})), result=[], was_cancelled=True)  # and skipped another
    changed = [e.model_copy(update={"entities": [], "relations": []}) for e in species_examples]  # same ids, new predictions
    again = push(ls, pid, changed, species_spec)
    assert (again.created, again.skipped) == (0, 4)
    assert set(_task_counts(ls, pid).values()) == {1} and len(_task_counts(ls, pid)) == 4
    task = ls.tasks.get(id=task_id)
    assert len(task.annotations) == 1 and len(task.predictions) == 1 and task.predictions[0].result
    result = pull(ls, pid, species_spec, species_examples)
    assert result.counts()["pending"] == 3 and len(result.verified) == 1  # the skipped task stays pending
    status = review_status(ls, pid)
    assert (status["done"], status["pending"]) == (1, 3)
    assert status["annotators"]["admin@distill.local"] == {"done": 1, "rejected": 0, "skipped": 1}


def test_the_spec_guidelines_are_the_projects_instructions_and_an_edit_reaches_them(ls, species_spec, title):
    from html import unescape

    assert species_spec.guidelines  # the default spec carries its guidelines
    pid = ensure_project(ls, species_spec, title)
    shown = ls.projects.get(id=pid)
    assert shown.show_instruction and all(rule in unescape(shown.expert_instruction) for rule in species_spec.guidelines)
    edited = species_spec.model_copy(update={"guidelines": [*species_spec.guidelines, "Mark a subspecies as SPECIES, with its trinomial."]})
    assert ensure_project(ls, edited, title) == pid  # the same project, its instructions updated
    assert "Mark a subspecies as SPECIES, with its trinomial." in unescape(ls.projects.get(id=pid).expert_instruction)


def _task_ids(ls, pid: int) -> set[int]:
    return {t.id for t in ls.tasks.list(project=pid, fields="task_only", include="id,data", page_size=5000)}


def test_push_killed_half_way_then_rerun_gives_every_task_once(ls, label_studio, species_spec, tmp_path, title):
    examples = _many(400)
    pid = ensure_project(ls, species_spec, title)
    write_jsonl(tmp_path / "generated.jsonl", examples)
    script = (
        "import sys; from annotators.label_studio import client, push; from annotators.ls_server import Connection;"
        "from data.formats import read_jsonl; from data.spec import load_spec;"
        f"ls = client(Connection({label_studio.url!r}, sys.stdin.readline().strip()));"
        f"push(ls, {pid}, read_jsonl({str(tmp_path / 'generated.jsonl')!r}), load_spec('species'), batch_size=10)"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, stdin=subprocess.PIPE, text=True)
    proc.stdin.write(label_studio.token + "\n")
    proc.stdin.close()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and sum(_task_counts(ls, pid).values()) < 50 and proc.poll() is None:
        time.sleep(0.2)
    proc.kill()
    proc.wait()
    half = sum(_task_counts(ls, pid).values())
    assert 0 < half < len(examples), half
    result = push(ls, pid, examples, species_spec, batch_size=100)
    counts = _task_counts(ls, pid)
    assert set(counts) == {e.id for e in examples} and set(counts.values()) == {1}
    assert result.created + half == len(examples)


def test_server_restart_during_push_is_retried(ls, label_studio, species_spec, title):
    examples = _many(120)
    pid = ensure_project(ls, species_spec, title)
    restarts = []

    def restart_once(done: int, total: int) -> None:
        if restarts:
            return
        restarts.append(done)
        ls_server.stop(label_studio.data_dir)
        threading.Timer(1.0, lambda: ls_server.start(label_studio.data_dir, port=label_studio.port)).start()

    result = push(ls, pid, examples, species_spec, batch_size=40, on_batch=restart_once)
    assert restarts == [40] and result.created == 120
    counts = _task_counts(ls, pid)
    assert len(counts) == 120 and set(counts.values()) == {1}


def test_faults_give_one_line_errors(ls, label_studio, species_spec, species_examples, title):
    with pytest.raises(DistillError, match="refused the API token"):
        client(Connection(label_studio.url, "0" * 40))
    pid = ensure_project(ls, species_spec, title)
    assert ensure_project(ls, species_spec, title) == pid  # found again, config matches
    narrower = species_spec.model_copy(update={"entities": species_spec.entities[:3]})
    with pytest.raises(DistillError, match=f"project '{title}'.*no longer matches"):
        ensure_project(ls, narrower, title)
    push(ls, pid, species_examples[:1], species_spec)
    task_id = next(iter(_task_ids(ls, pid)))
    bad = [{"id": "x", "from_name": "label", "to_name": "text", "type": "labels", "value": {"start": 4, "end": 16, "text": "Amur leopard", "labels": ["PLANT"]}}]
    ls.annotations.create(id=task_id, result=bad)
    with pytest.raises(DistillError, match=f"task {task_id} .*'PLANT'"):
        pull(ls, pid, species_spec, species_examples[:1])
    with pytest.raises(DistillError, match="not answering"):
        client(Connection(f"http://127.0.0.1:{ls_server.free_port()}", label_studio.token), retry_seconds=2.0)


def test_label_studio_status_command(label_studio, monkeypatch):
    from distill_ner.flows.cli import app

    monkeypatch.setenv("DISTILL_LS_DATA_DIR", str(label_studio.data_dir))
    result = CliRunner().invoke(app, ["label-studio", "status"])
    assert result.exit_code == 0 and label_studio.url in result.output and label_studio.token not in result.output
    creds = label_studio.data_dir / ls_server.CREDENTIALS
    assert oct(creds.stat().st_mode & 0o777) == "0o600"
    assert ls_server.connection(data_dir=label_studio.data_dir).token == label_studio.token
    assert label_studio.token not in repr(ls_server.connection(data_dir=label_studio.data_dir))


def test_review_watcher_wakes_on_webhooks_and_waits_for_every_task(ls, species_spec, species_examples, title):
    from distill_ner.annotators.review_webhook import ReviewWatcher, parse_when
    from distill_ner.annotators.simulate import simulate_review

    project = ensure_project(ls, species_spec, title=title)
    other_run = _many(1)  # another run's task in the same project, never reviewed here: it must not count
    push(ls, project, other_run + species_examples, species_spec)
    watcher = ReviewWatcher(ls, project, example_ids=[e.id for e in species_examples])
    # a watcher killed earlier left its hook behind; a hook of somebody else's stays
    stale = ls.webhooks.create(url="http://127.0.0.1:9/label-studio-webhook", project=project, actions=["ANNOTATION_CREATED"], headers={"X-Distill-Secret": "old"})
    theirs = ls.webhooks.create(url="http://127.0.0.1:9/their-hook", project=project, actions=["ANNOTATION_CREATED"])
    seen: list = []
    done: dict = {}
    thread = threading.Thread(target=lambda: done.update(progress=watcher.wait(parse_when("all"), poll_seconds=600, on_progress=seen.append)), daemon=True)
    thread.start()
    hooks = lambda: {h.id: h.url.rsplit("/", 1)[-1] for h in ls.webhooks.list(project=str(project))}  # noqa: E731
    deadline = time.monotonic() + 30
    while (stale.id in hooks() or len(hooks()) != 2) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert stale.id not in hooks() and sorted(hooks().values()) == ["label-studio-webhook", "their-hook"]
    skipped = max(_task_ids(ls, project))  # the simulated reviewer goes last to this one
    ls.annotations.create(id=skipped, result=[], was_cancelled=True)  # a skip is not a review
    simulate_review(ls, project, {}, annotators=["reviewer"], limit=3)  # the other run's task and half of ours: keep waiting
    time.sleep(2)
    assert thread.is_alive() and watcher.events >= 3 and seen[-1].reviewed == 2
    simulate_review(ls, project, {}, annotators=["reviewer"], limit=2)
    thread.join(timeout=60)
    assert not thread.is_alive(), "the webhook should have ended the wait (the poll is 10 minutes)"
    assert (done["progress"].reviewed, done["progress"].total) == (4, 4)
    assert [p.reviewed for p in seen] == sorted({p.reviewed for p in seen}) and seen[0].reviewed == 0
    assert [h.id for h in ls.webhooks.list(project=str(project))] == [theirs.id]  # ours removed on the way out
    ls.webhooks.delete(id=theirs.id)
    for bad in ("0", "some"):
        with pytest.raises(DistillError, match="--when-reviewed"):
            parse_when(bad)
    with pytest.raises(DistillError, match="none of the 1 examples is a task"):  # a run that was never pushed
        ReviewWatcher(ls, project, example_ids=["not-pushed"]).wait()
    assert [h.id for h in ls.webhooks.list(project=str(project))] == []
