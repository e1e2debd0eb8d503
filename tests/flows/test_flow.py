"""The whole loop as Prefect flow runs: mock LLM, a real Label Studio, a tiny random encoder.

One module-scoped run serves the artifact checks; the kill-and-rerun test and the human-review
test make runs of their own. Each run uses its own spec name, so its own Label Studio project.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from distill_ner.annotators.label_studio import client, existing_example_ids, project_title
from distill_ner.data.formats import read_jsonl
from distill_ner.data.spec import SPECS_DIR, load_spec

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]


def tiny_spec(directory: Path, name: str) -> Path:
    """The species spec under another name (so another Label Studio project), with 12 topics."""
    raw = yaml.safe_load((SPECS_DIR / "species.yaml").read_text())
    raw["name"] = name
    raw["topics"] = {group: topics[:2] for group, topics in list(raw["topics"].items())[:6]}
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def overrides(runs: Path, spec: Path, tiny_bert: Path, name: str, *extra: str) -> list[str]:
    return [
        f"name={name}", f"runs_dir={runs}", f"spec={spec}", "llm.n=30", "llm.concurrency=4", "generation_batches=3",
        "review.accuracy=1.0", "review.convention_drift=0.0", "split.dev=0.2", "split.test=0.2",  # a reviewer who submits exactly the truth
        f"teacher.encoder={tiny_bert}", "teacher.epochs=2", "student.student_layers=1", "teacher.batch_size=8",
        "review.budget=null", *extra,  # every text reviewed unless a test sets a budget (the main job's config has one)
    ]


SWEEP = ("sweep.enabled=true", "sweep.fractions=[1.0, 0.5]", "sweep.methods=[random]", "sweep.kd=[none, hinton]")
TRANSFER = ("llm.n_unlabeled=8",)  # the student also learns the teacher on 8 texts nobody reviews (distill.transfer is on by default)


def project_tasks(label_studio, spec_path: Path, run: str) -> dict[str, int]:
    ls = client(label_studio.connection)
    title = project_title(load_spec(spec_path), run)  # each run has its own project
    project = next(p for p in ls.projects.list() if p.title == title)
    return existing_example_ids(ls, project.id)


@pytest.fixture(scope="module")
def finished_run(prefect, ls_env, tiny_bert, tmp_path_factory):
    from distill_ner.flows.distill_flow import distill

    tmp = tmp_path_factory.mktemp("flow")
    spec = tiny_spec(tmp, "flow-e2e")
    report = distill(str(REPO / "flows/configs/demo.yaml"), overrides(tmp, spec, tiny_bert, "e2e", *SWEEP, *TRANSFER))
    return tmp / "e2e", spec, Path(report)


def test_flow_writes_every_artifact(finished_run, ls_env):
    run_dir, spec, report = finished_run
    generated = read_jsonl(run_dir / "generated.jsonl")
    verified = read_jsonl(run_dir / "verified.jsonl")
    assert 20 <= len(generated) <= 30
    assert sorted(project_tasks(ls_env, spec, "e2e")) == sorted(e.id for e in generated)  # every example, once
    unlabeled = read_jsonl(run_dir / "unlabeled" / "generated.jsonl")  # ... and none of the transfer texts
    assert 6 <= len(unlabeled) and not {e.text for e in unlabeled} & {e.text for e in generated}
    student = json.loads((run_dir / "models" / "student" / "model.json").read_text())
    assert student["n_transfer"] == len(unlabeled)  # all reviewed, nothing pruned: the transfer set is the unlabeled generation
    statuses = {e.review.status for e in verified}
    assert "corrected" in statuses and "accepted" in statuses  # the mock's errors were fixed
    truth = {json.loads(line)["text"]: json.loads(line) for line in (run_dir / "mock_truth.jsonl").read_text().splitlines()}
    for e in verified:  # accuracy 1.0: what the annotator kept is the mock's truth
        if e.review.status != "rejected":
            assert [(x.start, x.end, x.label) for x in e.entities] == [(x["start"], x["end"], x["label"]) for x in truth[e.text]["entities"]]
    for folder in ("verified", "pruned", "models/teacher", "models/student", "student-spacy"):
        assert (run_dir / folder).is_dir(), folder
    text = report.read_text()
    for heading in ("## Data set", "## LLM against humans", "## Teacher and students", "## How training went", "f1_vs_params.png", "## Pruning sweep", "sweep/sweep_pareto.png"):
        assert heading in text
    assert text.count("| train: all 2 epochs (") == 2  # teacher and student: why each stopped
    assert "texts on which the LLM's samples disagreed" in text  # the main job's 3 samples per text: what they buy
    assert (run_dir / "f1_vs_params.png").stat().st_size > 1000 and (run_dir / "report.html").exists()
    per_label = next(line for line in text.splitlines() if line.startswith("| model |") and line.endswith("| all |"))
    assert "SPECIES" in per_label and text.count("| LLM pre-annotation |") == 2  # the students against the LLM, overall and per label
    models = next(line for line in text.splitlines() if line.startswith("| model | layers |"))
    assert "| f1 | f1_low | f1_high |" in models and "95% bootstrap interval over the" in text  # how much the test split alone moves F1
    from distill_ner.data.example import llm_entities, usable
    from distill_ner.data.formats import load_splits
    from distill_ner.trainers.evaluate import f1_difference
    from distill_ner.trainers.inference import predict_entities
    from distill_ner.trainers.modeling import load_model

    test = usable(load_splits(run_dir / "verified")["test"])
    diff, low, high = f1_difference(test, predict_entities(load_model(run_dir / "models" / "student"), test), [llm_entities(e) for e in test])
    assert f"- student minus LLM: {diff:+.3f} strict span F1, 95% paired bootstrap interval {low:+.3f} to {high:+.3f}" in text  # the point of the pipeline, tested
    blind = [e for e in verified if e.review.blind]  # the main job labels its test texts blind: the gold is not anchored to the LLM
    assert blind and {e.id for e in test} == {e.id for e in usable(blind)}
    assert f"Humans reviewed {len(verified)} texts to get there. {len(blind)} of them were test texts labelled blind" in text
    sweep = json.loads((run_dir / "sweep" / "sweep.json").read_text())
    assert sorted((r["fraction"], r["method"], r["kd"]) for r in sweep) == [(0.5, "random", "hinton"), (0.5, "random", "none"), (1.0, "all", "hinton"), (1.0, "all", "none"), (1.0, "teacher", "teacher")]
    assert (run_dir / "sweep" / "sweep_f1_vs_fraction.png").stat().st_size > 1000


def test_exported_student_loads_in_spacy(finished_run):
    run_dir, _, _ = finished_run
    code = (
        "import spacy, sys; nlp = spacy.load(sys.argv[1]); "
        "doc = nlp('The snow leopard lives in the mountains of Central Asia and hunts blue sheep.'); "
        "print(sorted(nlp.get_pipe(nlp.pipe_names[-1]).labels) if hasattr(nlp.get_pipe(nlp.pipe_names[-1]), 'labels') else '', "
        "[e.label_ for e in doc.ents], type(doc._.relations).__name__)"
    )
    out = subprocess.run([sys.executable, "-c", code, str(run_dir / "student-spacy")], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "list" in out.stdout


def test_rerun_skips_every_finished_stage(finished_run, prefect, ls_env, tiny_bert):
    from distill_ner.flows.distill_flow import distill

    run_dir, spec, _ = finished_run
    before = {p.name: p.read_text() for p in (run_dir / "stages").iterdir()}
    messages: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: messages.append(record.getMessage())
    logging.getLogger("prefect.flow_runs").addHandler(handler)
    try:
        distill(str(REPO / "flows/configs/demo.yaml"), overrides(run_dir.parent, spec, tiny_bert, "e2e", *SWEEP, *TRANSFER))
    finally:
        logging.getLogger("prefect.flow_runs").removeHandler(handler)
    after = {p.name: p.read_text() for p in (run_dir / "stages").iterdir()}
    assert before == after
    skipped = {m.split(":")[0].removeprefix("skipping ") for m in messages if m.startswith("skipping ")}
    assert {"generate", "review", "generate-unlabeled", "split", "teacher", "prune", "student", "evaluate", "export", "sweep"} <= skipped


def test_a_student_setting_reruns_the_student_and_not_the_teacher(finished_run, prefect, ls_env, tiny_bert):
    """The teacher stage is keyed on the `teacher` section: a KD setting and the student's own
    learning rate retrain the student alone."""
    from distill_ner.flows.distill_flow import distill

    run_dir, spec, _ = finished_run
    teacher_before = (run_dir / "models" / "teacher" / "model.json").read_text()
    messages: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: messages.append(record.getMessage())
    logging.getLogger("prefect.flow_runs").addHandler(handler)
    try:
        distill(str(REPO / "flows/configs/demo.yaml"), overrides(run_dir.parent, spec, tiny_bert, "e2e", *TRANSFER, "distill.temperature=3.0", "student.learning_rate=0.002"))
    finally:
        logging.getLogger("prefect.flow_runs").removeHandler(handler)
    skipped = {m.split(":")[0].removeprefix("skipping ") for m in messages if m.startswith("skipping ")}
    assert {"generate", "review", "split", "teacher", "prune"} <= skipped and "student" not in skipped
    assert (run_dir / "models" / "teacher" / "model.json").read_text() == teacher_before
    student = json.loads((run_dir / "models" / "student" / "model.json").read_text())
    teacher = json.loads(teacher_before)
    assert student["temperature"] == 3.0 and student["args"]["learning_rate"] == 0.002 != teacher["args"]["learning_rate"]
    assert student["args"]["batch_size"] == teacher["args"]["batch_size"] == 8  # what the student does not set is the teacher's


def test_distill_train_on_the_run_reuses_the_flows_teacher(finished_run, tiny_bert):
    """The flow and `distill train` train through one pipeline with one cache of finished models:
    the command asked for the teacher the flow made (same settings, data and labels) reuses it."""
    run_dir, spec, _ = finished_run
    teacher = run_dir / "models" / "teacher" / "model.json"
    before = teacher.read_text()
    command = [sys.executable, "-m", "distill_ner.flows.cli", "train", str(run_dir), "--spec", str(spec), "--encoder", str(tiny_bert),
               "--epochs", "2", "--batch-size", "8", "--no-student"]
    out = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert f"reusing {run_dir / 'models' / 'teacher'}" in out.stdout and teacher.read_text() == before


def test_a_review_budget_sends_the_least_confident_and_keeps_the_rest_out_of_dev_and_test(prefect, ls_env, tiny_bert, tmp_path):
    from distill_ner.annotators.label_studio import example_confidence, triage
    from distill_ner.data.formats import blind_test_ids, load_splits
    from distill_ner.flows.distill_flow import distill

    spec = tiny_spec(tmp_path, "flow-budget")
    distill(str(REPO / "flows/configs/demo.yaml"), overrides(tmp_path, spec, tiny_bert, "budget", "llm.k_samples=3", "review.budget=0.5"))  # distill.transfer, teacher.silver_weight: the defaults
    run_dir = tmp_path / "budget"
    generated = read_jsonl(run_dir / "generated.jsonl")
    blind = blind_test_ids(generated, 0.2)  # the blind test texts go to people outside the budget
    sent, held_back = triage([e for e in generated if e.id not in blind], 0.5)
    assert len(sent) == round((len(generated) - len(blind)) / 2) and held_back and blind
    assert sorted(project_tasks(ls_env, spec, "budget")) == sorted(blind | {e.id for e in sent})  # only the budget's examples became tasks
    sent_confidence, held_confidence = [example_confidence(e) for e in sent], [example_confidence(e) for e in held_back]
    assert None not in sent_confidence + held_confidence and min(sent_confidence) < 1.0  # k = 3 samples: every example has a confidence
    assert max(sent_confidence) <= min(held_confidence)  # the least confident were sent
    splits = load_splits(run_dir / "verified")
    reviewed = blind | {e.id for e in sent}
    assert {e.id for e in splits["dev"] + splits["test"] + splits["train"]} <= reviewed  # silver examples never reach a split
    assert {e.id for e in splits["test"]} <= blind and {e.id for e in splits["dev"]} <= {e.id for e in sent}
    silver = read_jsonl(run_dir / "silver.jsonl")
    assert sorted(e.id for e in silver) == sorted(e.id for e in held_back) and {e.review.status for e in silver} == {"silver"}
    student = json.loads((run_dir / "models" / "student" / "model.json").read_text())
    assert student["n_transfer"] == len(held_back) and student["n_train"] <= len(splits["train"])  # the student sees them only as transfer texts
    assert student["n_transfer_llm"] == len(held_back)  # with the LLM's own annotation as one more teacher (distill.llm_teacher, the default)
    teacher = json.loads((run_dir / "models" / "teacher" / "model.json").read_text())
    assert teacher["n_train"] == len(splits["train"]) + len(held_back) and teacher["args"]["silver_weight"] == 0.5  # the teacher learns their labels, weighted


def test_active_learning_rounds_ask_about_what_the_student_doubts_and_resume_without_repeating(prefect, ls_env, tiny_bert, tmp_path):
    from distill_ner.annotators.label_studio import triage
    from distill_ner.data.formats import blind_test_ids, load_splits
    from distill_ner.flows.distill_flow import distill
    from distill_ner.trainers.scores import review_priority

    spec = tiny_spec(tmp_path, "flow-rounds")
    args = overrides(tmp_path, spec, tiny_bert, "rounds", "llm.k_samples=3", "review.budget=0.3", "review.rounds=2")
    report = Path(distill(str(REPO / "flows/configs/demo.yaml"), args))
    run_dir, second = tmp_path / "rounds", tmp_path / "rounds" / "rounds" / "2" / "rounds"
    generated = read_jsonl(run_dir / "generated.jsonl")
    blind = blind_test_ids(generated, 0.2)
    first, _ = triage([e for e in generated if e.id not in blind], 0.3)
    candidates = [e for e in generated if e.id not in {x.id for x in read_jsonl(run_dir / "verified.jsonl")}]
    need = review_priority(run_dir / "models" / "student", candidates)
    picked = [e.id for e in sorted(candidates, key=lambda e: (-need[e.id], e.id))[: round(0.3 * len(generated))]]
    tasks = project_tasks(ls_env, spec, "rounds")
    assert sorted(tasks) == sorted([*blind, *(e.id for e in first), *picked])  # round 2 asked about what most needed a human
    assert len(read_jsonl(second / "verified.jsonl")) == len(tasks)
    one, two = load_splits(run_dir / "verified"), load_splits(second / "verified")
    assert [e.id for e in two["test"]] == [e.id for e in one["test"]] and [e.id for e in two["dev"]] == [e.id for e in one["dev"]]
    assert len(two["train"]) > len(one["train"])
    text = report.read_text()
    assert "## Active-learning rounds" in text and str(second / "student-spacy") in text  # the last round's student is the run's
    models = [run_dir / "models" / "student" / "model.json", second / "models" / "student" / "model.json", second / "models" / "teacher" / "model.json"]
    before = [p.stat().st_mtime_ns for p in models]
    distill(str(REPO / "flows/configs/demo.yaml"), args)  # resumed: no push, no training
    assert [p.stat().st_mtime_ns for p in models] == before and project_tasks(ls_env, spec, "rounds") == tasks


def test_an_edited_spec_regenerates(finished_run, prefect, ls_env, tiny_bert):
    """The generate stage is keyed by the spec's text, not its name: a changed prompt asks the LLM again."""
    from distill_ner.flows.distill_flow import distill

    run_dir, spec, _ = finished_run
    raw = yaml.safe_load(spec.read_text())
    raw["prompts"]["generate"] = raw["prompts"]["generate"] + "\nWrite in plain words."
    spec.write_text(yaml.safe_dump(raw, sort_keys=False))
    cached = len(list((run_dir / "llm_cache").rglob("*")))
    messages: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: messages.append(record.getMessage())
    logging.getLogger("prefect.flow_runs").addHandler(handler)
    try:
        distill(str(REPO / "flows/configs/demo.yaml"), overrides(run_dir.parent, spec, tiny_bert, "e2e"))
    finally:
        logging.getLogger("prefect.flow_runs").removeHandler(handler)
    skipped = {m.split(":")[0].removeprefix("skipping ") for m in messages if m.startswith("skipping ")}
    assert "generate" not in skipped
    assert len(list((run_dir / "llm_cache").rglob("*"))) > cached  # new prompts: new LLM calls


def _distill_cli(args: list[str], env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "distill_ner.flows.cli", "run", "-c", str(REPO / "flows/configs/demo.yaml"), *[a for o in args for a in ("-s", o)]],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)


def test_killed_run_repeats_no_llm_call_and_no_task(ls_env, tiny_bert, mock_llm_factory, tmp_path):
    mock = mock_llm_factory(latency_s=0.4, seed=7)
    spec = tiny_spec(tmp_path, "flow-kill")
    args = overrides(tmp_path, spec, tiny_bert, "killed", f"llm.base_url={mock.base_url}",
                     f"llm.truth_file={mock.mock.config.truth_file}", "llm.concurrency=1", "generation_batches=1", "llm.n=40",
                     "llm.k_samples=1")  # one call per 5 texts, so the calls below can be counted
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect"), "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120"}
    first = _distill_cli(args, env)
    deadline = time.monotonic() + 180
    while mock.stats.requests < 3 and time.monotonic() < deadline and first.poll() is None:
        time.sleep(0.1)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    calls_before = mock.stats.requests
    cached = len(list((tmp_path / "killed" / "llm_cache").glob("*/*.json")))
    assert 2 <= cached < 8, "the kill should land during generation"
    second = _distill_cli(args, env)
    output, _ = second.communicate(timeout=600)
    assert second.returncode == 0, output[-3000:]
    # 40 examples at 5 a call = 8 calls: the rerun makes exactly the ones not finished before
    assert mock.stats.requests - calls_before == 8 - cached
    generated = read_jsonl(tmp_path / "killed" / "generated.jsonl")
    assert sorted(project_tasks(ls_env, spec, "killed")) == sorted(e.id for e in generated)


def test_human_review_pauses_and_resumes(prefect, ls_env, tiny_bert, tmp_path):
    from distill_ner.annotators.simulate import simulate_review
    from distill_ner.flows.distill_flow import distill
    from distill_ner.flows.run_cli import resume_run

    spec = tiny_spec(tmp_path, "flow-human")
    args = overrides(tmp_path, spec, tiny_bert, "human", "review.mode=human", "llm.n=15")
    outcome: dict = {}
    thread = threading.Thread(target=lambda: outcome.update(report=distill(str(REPO / "flows/configs/demo.yaml"), args)), daemon=True)
    thread.start()
    record = tmp_path / "human" / "flow_run.json"
    deadline = time.monotonic() + 300
    while not record.exists() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert record.exists(), "the flow should wait for review"
    time.sleep(2)
    assert thread.is_alive() and not (tmp_path / "human" / "verified.jsonl").exists()
    # `distill resume human --when-reviewed all` listens for Label Studio's webhooks and resumes
    # the run once a person has reviewed every task (here: through the same API as a browser)
    resumer = threading.Thread(target=lambda: outcome.update(resumed=resume_run(tmp_path / "human", when_reviewed="all")), daemon=True)
    resumer.start()
    time.sleep(3)
    assert resumer.is_alive() and "resumed" not in outcome
    simulate_review(client(ls_env.connection), json.loads(record.read_text())["project_id"], {}, annotators=["reviewer@example.org"])
    resumer.join(timeout=120)
    assert outcome["resumed"] == json.loads(record.read_text())["flow_run_id"]
    assert json.loads((tmp_path / "human" / "review_resumed.json").read_text())["note"].endswith("tasks reviewed")
    thread.join(timeout=600)
    assert not thread.is_alive() and Path(outcome["report"]).exists()
    verified = read_jsonl(tmp_path / "human" / "verified.jsonl")
    assert verified and {e.review.annotator for e in verified} == {"reviewer@example.org"}


def test_human_review_rounds_pause_for_people_each_round(prefect, ls_env, tiny_bert, tmp_path):
    """review.rounds with people: each round's push waits; `distill resume NAME` resumes the round
    that waits (RUN/rounds/2/NAME/), and round 2 trains on what the people reviewed in it."""
    from distill_ner.annotators.simulate import simulate_review
    from distill_ner.flows.distill_flow import distill
    from distill_ner.flows.run_cli import resume_run

    spec = tiny_spec(tmp_path, "flow-human-rounds")
    args = overrides(tmp_path, spec, tiny_bert, "hrounds", "review.mode=human", "llm.n=16", "llm.k_samples=3", "review.budget=0.5", "review.rounds=2")
    run_dir, round_dir = tmp_path / "hrounds", tmp_path / "hrounds" / "rounds" / "2" / "hrounds"
    outcome: dict = {}
    thread = threading.Thread(target=lambda: outcome.update(report=distill(str(REPO / "flows/configs/demo.yaml"), args)), daemon=True)
    thread.start()
    ls = client(ls_env.connection)
    for folder in (run_dir, round_dir):  # round 1, then round 2
        record = folder / "flow_run.json"
        deadline = time.monotonic() + 400
        while not record.exists() and time.monotonic() < deadline:
            time.sleep(0.5)
        assert record.exists(), f"the flow should wait for review in {folder}"
        time.sleep(2)  # the record is written just before the pause
        assert thread.is_alive() and not (folder / "verified.jsonl").exists()
        simulate_review(ls, json.loads(record.read_text())["project_id"], {}, annotators=["reviewer@example.org"])
        assert resume_run(run_dir) == json.loads(record.read_text())["flow_run_id"]  # the run's name finds the round that waits
        assert (folder / "review_resumed.json").exists()
    thread.join(timeout=600)
    assert not thread.is_alive() and Path(outcome["report"]).exists()
    first, both = read_jsonl(run_dir / "verified.jsonl"), read_jsonl(round_dir / "verified.jsonl")
    assert len(both) > len(first) and {e.review.annotator for e in both} == {"reviewer@example.org"}
    assert "## Active-learning rounds" in Path(outcome["report"]).read_text()


def test_generation_fans_out_the_same_on_dask(prefect, mock_llm_server, tmp_path):
    from distill_ner.flows.config import load_run_config
    from distill_ner.flows.distill_flow import generate_stage

    spec = tiny_spec(tmp_path, "flow-dask")
    outputs = {}
    for runner in ("thread", "dask"):
        config = load_run_config(None, [f"name={runner}", f"runs_dir={tmp_path}", f"spec={spec}", "llm.n=20", f"task_runner={runner}", "generation_batches=2"])
        summary = generate_stage(config, mock_llm_server.base_url)
        assert summary["requests"] == 4 and summary["complete"]
        outputs[runner] = [(e.id, e.text) for e in read_jsonl(tmp_path / runner / "generated.jsonl")]
    assert outputs["dask"] == outputs["thread"] and len(outputs["dask"]) >= 15


def corpus_and_gold(directory: Path) -> tuple[Path, Path, dict[str, list[tuple[str, str]]]]:
    """A user's corpus (one text a line: species facts, an emoji before an entity, off-topic lines)
    and its gold annotation for the mock's replay mode."""
    from distill_ner.data.formats import write_jsonl
    from tests.fixtures.examples import make_example

    animals = ["snow leopard", "Amur leopard", "red panda", "giant panda", "hawksbill turtle", "Bengal tiger", "kakapo", "axolotl"]
    places = ["high mountains", "temperate forests", "bamboo forests", "coral reefs", "mangrove swamps", "mossy valleys"]
    gold: dict[str, list[tuple[str, str]]] = {}
    for i, animal in enumerate(animals * 2):
        place = places[i % len(places)]
        text = f"Field note {i}: the {animal} was seen in {place} again." if i % 2 else f"In survey {i} the {animal} lived in {place}."
        gold[text] = [(animal, "SPECIES"), (place, "HABITAT")]
    gold["🐆🐆 Camera trap: a snow leopard crossed rocky slopes at dawn."] = [("snow leopard", "SPECIES"), ("rocky slopes", "HABITAT")]
    for text in ("The committee meets on Tuesday to discuss the budget.", "Prices rose by four percent in March."):
        gold[text] = []
    corpus = directory / "corpus.txt"
    corpus.write_text("\n".join(gold) + "\n", encoding="utf-8")
    gold_file = write_jsonl(directory / "gold.jsonl", [make_example(t, m) for t, m in gold.items()])
    return corpus, gold_file, gold


def test_a_flow_on_both_sources_keeps_them_apart_and_reruns_only_what_an_edited_input_changes(prefect, ls_env, tiny_bert, tmp_path):
    """`source: both`: the LLM's texts and the user's (replayed by the mock from their gold), one
    Label Studio project, gold test texts from the user's texts only; editing the input file
    reruns the annotation, never the generation."""
    from distill_ner.data.formats import load_splits
    from distill_ner.flows.distill_flow import distill

    spec = tiny_spec(tmp_path, "flow-both")
    corpus, gold_file, gold = corpus_and_gold(tmp_path)
    args = overrides(tmp_path, spec, tiny_bert, "both", "source=both", f"annotate.input={corpus}", f"llm.replay={gold_file}", "split.gold_from=corpus", "llm.n=20")
    report = Path(distill(str(REPO / "flows/configs/demo.yaml"), args))
    run_dir = tmp_path / "both"
    generated = read_jsonl(run_dir / "generated.jsonl")
    origins = {e.source.origin for e in generated}
    assert origins == {"llm", "corpus"}
    mine = [e for e in generated if e.source.origin == "corpus"]
    lines = corpus.read_text(encoding="utf-8").split("\n")
    assert len(mine) == len(gold) and all(lines[int(e.source.document.split()[1]) - 1] == e.text and e.source.offset == 0 for e in mine)
    assert sorted(project_tasks(ls_env, spec, "both")) == sorted(e.id for e in generated)  # every text of both sources, once
    splits = load_splits(run_dir / "verified")
    assert splits["test"] and splits["dev"] and all(e.source.origin == "corpus" for e in splits["test"] + splits["dev"])
    verified = {e.text: e for e in read_jsonl(run_dir / "verified.jsonl")}
    for text, mentions in gold.items():  # the reviewer takes the same gold as its truth (accuracy 1, no drift)
        assert [(verified[text].span(x), x.label) for x in verified[text].entities] == mentions, text
    emoji = verified[next(t for t in gold if t.startswith("🐆"))]
    assert emoji.text[emoji.entities[0].start : emoji.entities[0].end] == "snow leopard"  # code points, after two astral characters
    text = report.read_text()
    assert "| annotated (your texts) |" in text and "| generated (LLM texts) |" in text and "corpus" in text
    # one more line in the input: the annotation and what follows rerun, the generation does not
    corpus.write_text(corpus.read_text(encoding="utf-8") + "Near the lake the axolotl lived in cold canals.\n", encoding="utf-8")
    messages: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: messages.append(record.getMessage())
    logging.getLogger("prefect.flow_runs").addHandler(handler)
    try:
        distill(str(REPO / "flows/configs/demo.yaml"), args)
    finally:
        logging.getLogger("prefect.flow_runs").removeHandler(handler)
    skipped = {m.split(":")[0].removeprefix("skipping ") for m in messages if m.startswith("skipping ")}
    assert "generate" in skipped and not {"annotate", "combine", "review"} & skipped
    assert "Near the lake the axolotl lived in cold canals." in {e.text for e in read_jsonl(run_dir / "generated.jsonl")}
