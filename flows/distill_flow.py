"""The `distill` flow: generate (or annotate your texts, or both) -> review -> split -> prune -> teacher -> student -> evaluate ->
export -> (pruning sweep, when `sweep.enabled`) -> report. Orchestration only: every step calls a plain function of `annotators/`,
`data/` or `trainers/`, and records itself in `runs/<run>/stages/` so that a rerun skips it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_link_artifact, create_markdown_artifact
from prefect.futures import wait
from prefect.input import RunInput
from prefect.runtime import deployment as current_deployment
from prefect.runtime import flow_run as current_flow_run

from distill_ner.data.errors import DistillError
from distill_ner.data.spec import spec_path
from distill_ner.flows.config import RunConfig, load_run_config
from distill_ner.flows.stages import run_stage
from distill_ner.trainers.inference import model_files


def _worth_retrying(task: Any, task_run: Any, state: Any) -> bool:
    """Retry a server hiccup, never a `DistillError`: a refused key, a missing project or a pull
    that would lose verified examples stays wrong, and the clients have retried servers already."""
    try:
        state.result()
    except DistillError:
        return False
    except Exception:  # noqa: BLE001 - anything else may be transient
        return True
    return True


SERVER_RETRIES = {"retries": 3, "retry_delay_seconds": [2, 10, 30], "retry_condition_fn": _worth_retrying}


def _log(message: str) -> None:
    try:
        get_run_logger().info(message)
    except Exception:  # outside a run context
        print(message)


def _key(config: RunConfig, what: str) -> str:
    """A Prefect artifact key (lowercase letters, digits, dashes) for this run."""
    return re.sub(r"[^a-z0-9-]+", "-", f"{config.name}-{what}".lower())


def _dump(config: Any) -> dict[str, Any]:
    return config.model_dump(mode="json")


# --- generation -------------------------------------------------------------------------------
@contextlib.contextmanager
def llm_endpoint(config: RunConfig) -> Iterator[tuple[str | None, Path | None]]:
    """The configured LLM, or the mock LLM started in-process (its truth file in the run folder)."""
    if config.llm.base_url:
        yield config.llm.base_url, Path(config.llm.truth_file) if config.llm.truth_file else None
        return
    from distill_ner.annotators.mock_llm import MockConfig, MockLLMServer

    truth = config.layout.mock_truth
    replay = {"replay": Path(config.llm.replay)} if config.llm.replay else {}
    mock = MockConfig(seed=config.llm.seed, model=config.llm.model, error_rate=config.llm.error_rate, factual_error_rate=config.llm.factual_error_rate, truth_file=truth, **replay)
    with MockLLMServer(mock) as server:
        yield server.base_url, truth


@task(name="generate-batch", **SERVER_RETRIES)
def generate_batch(config_json: dict[str, Any], requests_json: list[dict[str, Any]], base_url: str) -> dict[str, Any]:
    """Run one batch of planned LLM requests (answers cached in the run folder)."""
    from distill_ner.annotators.generate import GenerationRequest, run_requests
    from distill_ner.annotators.llm import LLMConfig
    from distill_ner.data.spec import load_spec

    config = RunConfig.model_validate(config_json)
    llm = LLMConfig.from_env(base_url=base_url, **config.llm.client_settings())
    requests = [GenerationRequest.model_validate(r) for r in requests_json]
    batch = run_requests(requests, load_spec(config.spec), llm, config.layout.llm_cache, config.llm.k_samples, rules=config.llm.grounding)
    if batch.error:
        raise DistillError(batch.error)
    return batch.model_dump(mode="json")


def task_runner(config: RunConfig):
    """The thread pool by default; Dask (a local cluster, or `dask_address`) by configuration."""
    if config.task_runner == "dask":
        from prefect_dask import DaskTaskRunner

        if config.dask_address:
            return DaskTaskRunner(address=config.dask_address)
        return DaskTaskRunner(cluster_kwargs={"n_workers": 2, "threads_per_worker": 1, "processes": True, "dashboard_address": None})
    from prefect.task_runners import ThreadPoolTaskRunner

    return ThreadPoolTaskRunner(max_workers=config.generation_batches)


@flow(name="generate-examples")
def generate_examples(config_json: dict[str, Any], base_url: str) -> dict[str, Any]:
    """Plan the requests (texts to write, or windows of your texts to annotate with `source:
    annotate`), fan them out as mapped tasks, merge, dedup and write the run folder."""
    from distill_ner.annotators.generate import BatchResult, finish_run, plan_annotations, plan_requests
    from distill_ner.annotators.llm import LLMConfig
    from distill_ner.data.corpus import WindowStats, read_documents, windows
    from distill_ner.data.spec import load_spec

    config = RunConfig.model_validate(config_json)
    corpus, dedup_threshold = None, 0.9
    if config.source == "annotate":
        a, stats = config.annotate, WindowStats()
        docs = read_documents(a.input, field=a.field, column=a.column, paragraphs=a.paragraphs)
        requests = plan_annotations(windows(docs, a.window_chars, stats), config.llm.seed)
        corpus, dedup_threshold = {"origin": "corpus", "documents": stats.documents, "split_sentences": stats.split_sentences}, a.dedup_threshold
    else:
        requests = plan_requests(load_spec(config.spec), config.llm.n, config.llm.seed, config.llm.examples_per_call)
    size = -(-len(requests) // config.generation_batches)
    batches = [[r.model_dump(mode="json") for r in requests[i : i + size]] for i in range(0, len(requests), size)]
    started = time.perf_counter()
    futures = generate_batch.map([config_json] * len(batches), batches, [base_url] * len(batches))
    wait(futures)
    results = [BatchResult.model_validate(f.result()) for f in futures]
    merged = BatchResult.merge(results)
    llm = LLMConfig(base_url=base_url, **config.llm.client_settings())
    summary = finish_run(
        config.run_dir, requests, merged, llm, time.perf_counter() - started, config.llm.k_samples, dedup_threshold,
        max_failure_share=config.llm.max_failure_share, corpus=corpus,
    )
    return summary.model_dump(mode="json")


@task(name="combine-sources")
def combine_task(config_json: dict[str, Any], parts: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """`source: both`: the LLM's texts and yours in one generated.jsonl (a text in both kept once)."""
    from distill_ner.data.formats import read_jsonl, write_jsonl

    config = RunConfig.model_validate(config_json)
    examples = {}
    for source in ("generate", "annotate"):
        for example in read_jsonl(config.part(source).layout.generated):
            examples.setdefault(example.id, example)
    write_jsonl(config.layout.generated, examples.values())
    return {"parts": parts, "kept": len(examples)}


def generate_stage(config: RunConfig, base_url: str) -> dict[str, Any]:
    """Generation as a subflow on the configured task runner."""
    return generate_examples.with_options(task_runner=task_runner(config))(_dump(config), base_url)


# --- review -----------------------------------------------------------------------------------
class ReviewDone(RunInput):
    """What `distill resume` sends to a flow paused for human review."""

    note: str = ""


def label_studio(config: RunConfig):
    """A Label Studio SDK client for the configured (or local) server."""
    from distill_ner.annotators.label_studio import client
    from distill_ner.annotators.ls_server import connection

    return client(connection(url=config.review.label_studio_url))


def project_url(config: RunConfig, project_id: int) -> str:
    from distill_ner.annotators.ls_server import connection

    return f"{connection(url=config.review.label_studio_url).url}/projects/{project_id}"


@task(name="push-for-review", **SERVER_RETRIES)
def push_task(config_json: dict[str, Any], selected: list[str] | None = None) -> dict[str, Any]:
    """Push the run's examples into its own project (`distill <spec> <run>`), creating it if needed;
    with `split.blind_test`, the test texts without the LLM's answer; with `review.budget`, only
    the least confident of the others (`annotators.label_studio.triage`); in an active-learning
    round, the `selected` example ids."""
    from distill_ner.annotators.label_studio import ensure_project, project_title, push, read_run, triage
    from distill_ner.data.formats import blind_test_ids
    from distill_ner.data.spec import load_spec

    config = RunConfig.model_validate(config_json)
    spec = load_spec(config.spec)
    ls = label_studio(config)
    project = ensure_project(ls, spec, project_title(spec, config.name))
    examples = read_run(config.run_dir)
    blind: set[str] = set()
    if selected is not None:
        chosen = set(selected)
        sent, held_back = [e for e in examples if e.id in chosen], []
    else:
        if config.split.blind_test:
            s = config.split
            blind = blind_test_ids(examples, s.test, s.seed, gold_from=None if s.gold_from == "any" else s.gold_from)
        sent, held_back = triage(examples, config.review.budget, blind)
    if held_back and not config.uses_transfer:
        _log(f"review budget: {len(held_back)} examples are not sent to review and, with distill.transfer off (or kd none), not used")
    result = push(ls, project, sent, spec, run=config.name, blind=blind)
    return {"project_id": project, "created": result.created, "skipped": result.skipped, "held_back": len(held_back), "blind": len(blind)}


@task(name="simulated-review", **SERVER_RETRIES)
def simulate_task(config_json: dict[str, Any], project_id: int, truth_file: str | None) -> dict[str, Any]:
    """Review the run's project as simulated annotators; the project is found by the run's title
    (never created), `project_id` from the push stage is only what it was then."""
    from distill_ner.annotators.label_studio import find_project, project_title
    from distill_ner.annotators.simulate import load_truth, simulate_review
    from distill_ner.data.spec import load_spec

    config = RunConfig.model_validate(config_json)
    truth = load_truth(truth_file) if truth_file and Path(truth_file).exists() else {}
    names = [f"annotator-{i + 1}" for i in range(config.review.annotators)]
    ls, spec = label_studio(config), load_spec(config.spec)
    project_id = find_project(ls, spec, project_title(spec, config.name))
    result = simulate_review(
        ls, project_id, truth, accuracy=config.review.accuracy, annotators=names, per_task=len(names), seed=config.llm.seed,
        convention_drift=config.review.convention_drift,
    )
    return {"tasks": result.tasks}


@task(name="pull-verified", **SERVER_RETRIES)
def pull_task(config_json: dict[str, Any], project_id: int) -> dict[str, Any]:
    """Pull the run's verdicts into verified.jsonl; the project is found by the run's title (never
    created), `project_id` from the push stage is only what it was then."""
    from distill_ner.annotators.correctness import write_correctness
    from distill_ner.annotators.label_studio import find_project, project_title, pull, read_run, write_verified
    from distill_ner.data.spec import load_spec

    config = RunConfig.model_validate(config_json)
    generated = read_run(config.run_dir)
    ls, spec = label_studio(config), load_spec(config.spec)
    project_id = find_project(ls, spec, project_title(spec, config.name))
    result = pull(ls, project_id, spec, generated, run=config.name)
    for line in result.warnings + result.problems:
        _log(line)
    write_verified(config.run_dir, result)
    write_correctness(config.run_dir)
    return {**result.counts(), "verified_file": str(config.layout.verified)}


def wait_for_humans(config: RunConfig, project_id: int) -> None:
    """Suspend (deployment runs: the worker is freed) or pause until `distill resume RUN`."""
    from prefect.flow_runs import pause_flow_run, suspend_flow_run

    marker = config.layout.review_resumed
    if marker.exists():
        return
    config.layout.flow_run.write_text(json.dumps({"flow_run_id": str(current_flow_run.id), "project_id": project_id}))
    _log(f"waiting for review in Label Studio: {project_url(config, project_id)}; then run: distill resume {config.name} "
         f"(or now: distill resume {config.name} --when-reviewed all, to resume by webhook once every task is reviewed)")
    timeout = int(config.review.timeout_hours * 3600)
    key = f"human-review-{hashlib.sha1(str(config.run_dir).encode()).hexdigest()[:12]}"  # one pause per run folder (each active-learning round has its own)
    if current_deployment.id:
        suspend_flow_run(wait_for_input=ReviewDone, timeout=timeout, key=key)
    else:
        pause_flow_run(wait_for_input=ReviewDone, timeout=timeout, key=key)


def review_stage(config: RunConfig, truth_file: Path | None, selected: list[str] | None = None) -> dict[str, Any]:
    """Route every example (within `review.budget`, or the `selected` ids of an active-learning
    round) through Label Studio (or skip review with `review.mode: none`)."""
    if config.review.mode == "none":
        from distill_ner.annotators.label_studio import read_run
        from distill_ner.data.formats import write_jsonl

        examples = [e.model_copy(update={"review": e.review.model_copy(update={"status": "accepted", "annotator": "none"})}) for e in read_run(config.run_dir)]
        write_jsonl(config.layout.verified, examples)
        return {"accepted": len(examples), "mode": "none"}
    generated = [spec_path(config.spec), config.layout.generated]
    settings = [_dump(config.review), selected, *([blind_settings(config)] if config.split.blind_test else [])]
    pushed = run_stage(config.run_dir, "push", settings, lambda: push_task(_dump(config), selected), log=_log, reads=generated)
    project_id = pushed["project_id"]
    if config.review.mode == "simulated":
        run_stage(config.run_dir, "simulate", _dump(config.review), lambda: simulate_task(_dump(config), project_id, str(truth_file) if truth_file else None), log=_log, reads=generated)
    else:
        wait_for_humans(config, project_id)
    counts = pull_task(_dump(config), project_id)
    _log(f"review: {counts}")
    return {**counts, "project_id": project_id}


def blind_settings(config: RunConfig) -> dict[str, Any]:
    """The split settings that choose a blind test split (with `split.blind_test`, part of the review's stage key)."""
    s = config.split
    return {"blind_test": s.blind_test, "test": s.test, "seed": s.seed, "gold_from": s.gold_from}


# --- data and training ------------------------------------------------------------------------
@task(name="split")
def split_task(config_json: dict[str, Any], gold_splits: str | None = None) -> dict[str, Any]:
    """Seeded train/dev/test split of the verified examples (with `split.blind_test`, the test split
    is the texts people labelled blind); in an active-learning round, the dev and test splits of
    the first round (`gold_splits`) stay as they are and the rest is train."""
    from distill_ner.data.dedup import drop_texts_of
    from distill_ner.data.example import usable
    from distill_ner.data.formats import load_splits, read_jsonl, save_splits, split_examples

    config = RunConfig.model_validate(config_json)
    s = config.split
    verified = usable(read_jsonl(config.layout.verified))
    if gold_splits is not None:
        first = load_splits(gold_splits)
        splits = {"train": drop_texts_of(verified, [*first["dev"], *first["test"]])[0], "dev": first["dev"], "test": first["test"]}
    else:
        blind = {e.text for e in verified if e.review.blind} if s.blind_test and config.review.mode != "none" else None
        splits = split_examples(verified, dev=s.dev, test=s.test, seed=s.seed, gold_from=None if s.gold_from == "any" else s.gold_from, test_texts=blind)
    save_splits(splits, config.layout.verified_splits)
    counts: dict[str, Any] = {name: len(items) for name, items in splits.items()}
    if config.source != "generate":  # how many of each split are the LLM's texts and how many yours
        counts["by origin"] = "; ".join(
            f"{name}: " + ", ".join(f"{origin} {n}" for origin, n in sorted(Counter(e.source.origin or "unknown" for e in items).items()))
            for name, items in splits.items()
        )
    return counts


@task(name="prune")
def prune_task(config_json: dict[str, Any], teacher_dir: str | None) -> dict[str, Any]:
    """Clean and prune the train split; score-based pruning ranks by the teacher's hardness scores
    (computed here by trainers/, handed to data/ as `{example id: score}`)."""
    from distill_ner.data.formats import load_splits
    from distill_ner.data.prune import cleaned_train, prune_run

    config = RunConfig.model_validate(config_json)
    splits = load_splits(config.layout.verified_splits)
    scores = None
    if config.prune.needs_scores:
        from distill_ner.trainers.scores import compute_scores

        if teacher_dir is None:
            raise DistillError(f"pruning by {config.prune.method} needs a trained teacher (none given)")
        scores = compute_scores(config.prune.method, teacher_dir, cleaned_train(splits, config.prune), dev=splits.get("dev"))
    return prune_run(splits, config.layout.pruned, config.prune, scores=scores)


@task(name="train-teacher")
def teacher_task(config_json: dict[str, Any]) -> str:
    from distill_ner.data.formats import load_splits
    from distill_ner.data.spec import load_spec
    from distill_ner.trainers.pipeline import teachers

    config = RunConfig.model_validate(config_json)
    splits = load_splits(config.layout.verified_splits)
    train = [*splits["train"], *silver_examples(config, [*splits["dev"], *splits["test"]])]
    return str(teachers(train, splits["dev"], config.layout.teacher, config.teacher_args(), spec=load_spec(config.spec), log=_log)[0])  # teacher.teachers of them


def silver_examples(config: RunConfig, gold: list[Any]) -> list[Any]:
    """The texts the review budget left LLM-labelled (status silver), for the teacher when
    `teacher.silver_weight` > 0 (none of `gold`'s texts); else none."""
    from distill_ner.data.dedup import drop_texts_of
    from distill_ner.data.formats import read_jsonl

    where = config.layout.silver
    if not config.teacher.silver_weight or not where.exists():
        return []
    return drop_texts_of(read_jsonl(where), gold)[0]


@task(name="train-student")
def student_task(config_json: dict[str, Any], teacher_dir: str) -> str:
    from distill_ner.data.formats import load_splits
    from distill_ner.trainers.pipeline import student
    from distill_ner.trainers.teachers import teacher_dirs

    config = RunConfig.model_validate(config_json)
    splits = load_splits(config.layout.pruned)
    transfer = transfer_examples(config) if config.uses_transfer else []
    extra = teacher_dirs(teacher_dir, config.teacher.teachers)[1:]
    return str(student(splits["train"], splits["dev"], teacher_dir, config.layout.student, config.student_args(), fraction=config.prune.fraction, transfer=transfer,
                       extra_teachers=extra, log=_log))


def transfer_examples(config: RunConfig) -> list[Any]:
    """Texts no human labelled, for the student's transfer set: verified training examples that
    pruning left out, generated examples never reviewed, and the `llm.n_unlabeled` generation;
    never a dev or test text (`train_student` drops those of its own train split). Each keeps
    the LLM's own annotation, for `distill.llm_teacher`."""
    from distill_ner.data.dedup import drop_texts_of
    from distill_ner.data.formats import load_splits, read_jsonl
    from distill_ner.data.example import llm_entities

    layout = config.layout
    verified, pruned = load_splits(layout.verified_splits), load_splits(layout.pruned)
    kept = {e.id for e in pruned["train"]}
    reviewed = {e.text for e in read_jsonl(layout.verified)}
    pruned_away = [e.model_copy(update={"entities": llm_entities(e)}) for e in verified["train"] if e.id not in kept]  # as the LLM annotated them
    texts = pruned_away + [e for e in read_jsonl(layout.generated) if e.text not in reviewed]
    extra = config.unlabeled_config().layout.generated
    if config.llm.n_unlabeled and extra.exists():
        texts += read_jsonl(extra)
    return drop_texts_of(texts, [*verified["dev"], *verified["test"]])[0]


@task(name="evaluate")
def evaluate_task(config_json: dict[str, Any], model_dirs: dict[str, str]) -> list[dict[str, Any]]:
    from distill_ner.data.formats import load_splits
    from distill_ner.trainers.evaluate import evaluate

    config = RunConfig.model_validate(config_json)
    test = load_splits(config.layout.verified_splits)["test"]
    return [*(({**evaluate(path, test, against_llm=True), "model": name}) for name, path in model_dirs.items()), llm_row(test)]


def llm_row(test: list[Any]) -> dict[str, Any]:
    """The LLM's own pre-annotations as a row of the models' table (`trainers.evaluate.llm_scores`)."""
    from distill_ner.trainers.evaluate import llm_scores

    return {"model": "LLM pre-annotation", "kd": None, "layers": None, "parameters": None, **llm_scores(test)}


@task(name="export-spacy")
def export_task(config_json: dict[str, Any], student_dir: str) -> str:
    from distill_ner.data.spec import load_spec
    from distill_ner.trainers.export.to_spacy import export_spacy

    config = RunConfig.model_validate(config_json)
    return str(export_spacy(student_dir, config.layout.spacy_pipeline, load_spec(config.spec)))


@task(name="pruning-sweep")
def sweep_task(config_json: dict[str, Any], teacher_dir: str) -> list[dict[str, Any]]:
    from distill_ner.data.formats import load_splits
    from distill_ner.trainers.sweep import run_sweep

    config = RunConfig.model_validate(config_json)
    s = config.sweep
    rows = run_sweep(load_splits(config.layout.verified_splits), teacher_dir, s.fractions, s.methods, s.kd, config.student_args(), config.layout.sweep, seeds=s.seeds)
    return [r.model_dump(mode="json") for r in rows]


@task(name="report")
def report_task(config_json: dict[str, Any], results: dict[str, Any]) -> str:
    from distill_ner.data.report import write_report
    from distill_ner.data.spec import load_spec
    from distill_ner.data.tables import markdown_table
    from distill_ner.trainers.sweep import sweep_markdown

    config = RunConfig.model_validate(config_json)
    saved_sweep = config.layout.sweep / "sweep.json"  # from the flow's sweep stage or `distill sweep --out RUN/sweep`
    sweep = results.get("sweep") or (json.loads(saved_sweep.read_text()) if saved_sweep.exists() else None)
    sections = {
        "Data set": markdown_table(dataset_rows(results["data"]), ["stage", "numbers"]),
        "LLM against humans": _read(config.layout.correctness),
        "Teacher and students (gold test split)": markdown_table(
            results["models"], ["model", "layers", "kd", "f1", "f1_low", "f1_high", "overlap_f1", "precision", "recall", "token_macro_f1", "false_alarms", "relation_f1", "parameters", "train_seconds", "sentences_per_second"]
        ) + f"\n`f1` is strict span F1; `f1_low`-`f1_high` is its 95% bootstrap interval over the {results['models'][-1].get('n_test') or ''} test texts:"
        " two models whose intervals overlap are not told apart by this test split. `false_alarms` is the share of test texts"
        " with no entity in which the model finds one.\n" + versus_llm_lines(results["models"], results["reviewed_texts"] if config.review.mode != "none" else 0, results.get("blind_texts", 0)) +
        "\nStrict span F1 per label, the LLM's own pre-annotations in the last row:\n\n" + markdown_table(per_label_rows(results["models"])),
        **({"Active-learning rounds": markdown_table(results["rounds"]) + "\nEach round after the first sends `review.budget` more texts, those that most needed "
            "a human by the last student (its doubt, its disagreement with the LLM, the LLM's own doubt: `trainers.scores.review_priority`); teacher and student are scored on the first round's test split; the models above are the last round's "
            f"(`{config.layout.rounds}/`).\n"} if results.get("rounds") else {}),
        "How training went": training_markdown(config.layout.models),
        **({"Pruning sweep (students on the gold test split)": sweep_markdown(sweep, image_dir="sweep/")} if sweep else {}),
        "Try the student": f"```python\nimport spacy\nnlp = spacy.load({results['pipeline']!r})\ndoc = nlp({load_spec(config.spec).try_text!r})\nprint(doc.ents, doc._.relations)\n```",
    }
    models = [{"model": m["model"], "f1": m["f1"], "parameters": m["parameters"]} for m in results["models"] if m.get("parameters")]
    path = write_report(config.run_dir, f"distill run {config.name}", sections, models)
    for title, body in sections.items():
        create_markdown_artifact(body, key=_key(config, title.split()[0]), description=title)
    return str(path)


def versus_llm_lines(models: list[dict[str, Any]], reviewed_texts: int, blind_texts: int = 0) -> str:
    """Each model against the LLM's own annotations of the same test texts, with the paired
    interval of the difference, how many texts humans reviewed to get there, and whether the test
    gold was labelled blind (`split.blind_test`) or by correcting the LLM (which favours the LLM)."""
    lines = []
    for m in models:
        if "vs_llm" in m:
            d = m["vs_llm"]
            verdict = "above the LLM" if d["low"] > 0 else "below the LLM" if d["high"] < 0 else "not told apart from the LLM by this test split"
            lines.append(f"- {m['model']} minus LLM: {d['difference']:+.3f} strict span F1, 95% paired bootstrap interval "
                         f"{d['low']:+.3f} to {d['high']:+.3f}: {verdict}")
    if not lines:
        return ""
    gold = ("No human reviewed the test texts: their gold is the LLM's own labels." if not reviewed_texts else
            f"{blind_texts} of them were test texts labelled blind, without the LLM's answer (`split.blind_test`), so the test gold is not "
            "anchored to the LLM." if blind_texts else "The test gold was made by correcting the LLM's answers: an LLM error a reviewer missed "
            "counts as right, which favours the LLM (`split.blind_test` avoids it).")
    return "\n" + "\n".join(lines) + f"\n\nHumans reviewed {reviewed_texts} texts to get there. {gold}\n"


def training_markdown(models_dir: Path) -> str:
    """Each trained model's learning rate, epochs, best epoch and why it stopped; the teacher's
    `--search` grid (dev scores only) when it ran one."""
    from distill_ner.data.tables import markdown_table
    from distill_ner.trainers.inference import read_meta

    rows, search = [], ""
    for path in sorted(p.parent for p in models_dir.glob("*/model.json")):
        meta = read_meta(path)
        rows.append({"model": path.name, "learning rate": f"{meta.args.get('learning_rate', 0):g}", "batch": meta.args.get("batch_size"),
                     "epochs": meta.args.get("epochs"), "best epoch": meta.best_epoch, "transfer texts": meta.n_transfer, "with the LLM teacher": meta.n_transfer_llm,
                     "why it stopped": "; ".join(meta.stop_reasons)})
        if meta.search:
            grid = [{"learning rate": f"{t['learning_rate']:g}", "epochs": t["epochs"], "mean dev score": t["mean_dev_score"],
                     "dev scores": ", ".join(f"{v:.4f}" for v in t["dev_scores"])} for t in meta.search["grid"]]
            best = meta.search["best"]
            search = (f"\n\n`--search` for {path.name} (scored on the dev split only, {meta.search['seeds']} seeds each); chosen: learning rate "
                      f"{best['learning_rate']:g}, {best['epochs']} epochs.\n\n" + markdown_table(grid))
    return markdown_table(rows) + search if rows else "no trained model found"


def per_label_rows(models: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per model: its strict span F1 for each entity label, and overall."""
    labels = sorted({label for m in models for label in m.get("per_label", {})})
    return [{"model": m["model"], **{label: m.get("per_label", {}).get(label, {}).get("f1") for label in labels}, "all": m["f1"]} for m in models]


def dataset_rows(data: dict[str, Any]) -> list[dict[str, str]]:
    """One line per stage: what was generated, reviewed, split and pruned."""
    gen, review, split, prune = data["generated"], data["review"], data["split"], data["prune"]
    removed = ", ".join(f"{k} {v}" for k, v in prune["removed_by_reason"].items()) or "none"
    return [
        *(source_row(part) for part in (gen["parts"].values() if "parts" in gen else [gen])),
        {"stage": "reviewed", "numbers": ", ".join(f"{k} {v}" for k, v in review.items() if isinstance(v, int) and k != "project_id")},
        {"stage": "split", "numbers": ", ".join(f"{k} {v}" for k, v in split.items())},
        {"stage": "pruned", "numbers": f"train kept {prune['splits']['train']} ({prune['fraction_kept']:.0%}); removed: {removed}"},
    ]


def source_row(gen: dict[str, Any]) -> dict[str, str]:
    """What the LLM wrote (`generated`), or what it annotated of your texts (`annotated`)."""
    rejected = ", ".join(f"{k} {v}" for k, v in gen["rejected"].items()) or "none"
    calls = f"{gen['calls']} LLM calls, {gen['cache_hits']} from cache, {gen['prompt_tokens'] + gen['completion_tokens']} tokens, {gen['seconds']} s"
    if gen.get("origin") == "corpus":
        dropped = ", ".join(f"{k.removeprefix('dropped_')} {v}" for k, v in gen.get("repaired", {}).items() if k.startswith("dropped_")) or "none"
        return {"stage": "annotated (your texts)", "numbers": f"{gen['kept']} kept of {gen['requested']} windows of {gen['documents']} documents; rejected: {rejected}; "
                                                              f"mentions dropped: {dropped}; duplicates {gen['duplicates']}; {calls}"}
    return {"stage": "generated (LLM texts)", "numbers": f"{gen['kept']} kept of {gen['requested']} asked; rejected: {rejected}; duplicates {gen['duplicates']}; {calls}"}


def _read(path: Path) -> str:
    return path.read_text() if path.exists() else "_(no review in this run)_"


# --- the flow ---------------------------------------------------------------------------------
@flow(name="distill")
def distill(config: str = "demo", overrides: list[str] | None = None) -> str:
    """Run the whole loop for one run config (a name in flows/configs/ or a YAML path)."""
    from distill_ner.data.run_lock import run_lock

    cfg = load_run_config(config, overrides)
    with run_lock(cfg.run_dir, f"distill run {config}", warn=_log):
        return run_loop(cfg)


def sources_stage(cfg: RunConfig, base_url: str, stage: Any) -> dict[str, Any]:
    """RUN/generated.jsonl from the configured source: texts the LLM writes (`generate`), your texts
    it annotates (`annotate`), or both (each in its own folder, then combined). Each is a stage,
    skipped when done and rerun when its settings, the spec or the input file change."""
    spec = spec_path(cfg.spec)
    generation = {k: v for k, v in _dump(cfg.llm).items() if k not in ("n_unlabeled", "replay")}  # more transfer texts do not redo the reviewed ones
    annotation = [{k: v for k, v in _dump(cfg.llm).items() if k not in ("n", "n_unlabeled", "examples_per_call")}, _dump(cfg.annotate)]
    if cfg.source == "generate":
        return stage("generate", generation, lambda: generate_stage(cfg, base_url), [spec], [cfg.layout.generated])
    if cfg.source == "annotate":
        return stage("annotate", annotation, lambda: generate_stage(cfg, base_url), [spec, cfg.annotate.input], [cfg.layout.generated])
    llm, corpus = cfg.part("generate"), cfg.part("annotate")
    parts = {
        "generate": stage("generate", {**generation, "into": "llm"}, lambda: generate_stage(llm, base_url), [spec], [llm.layout.generated]),
        "annotate": stage("annotate", annotation, lambda: generate_stage(corpus, base_url), [spec, cfg.annotate.input], [corpus.layout.generated]),
    }
    reads = [llm.layout.generated, corpus.layout.generated]
    return stage("combine", None, lambda: combine_task(_dump(cfg), parts), reads, [cfg.layout.generated])


def stages_of(run_dir: Path) -> Any:
    """`stage(name, settings, body, reads, outputs)` for a run folder: a stage keyed by its settings
    and the content of the files it reads, skipped when done (`flows.stages.run_stage`)."""
    def stage(name: str, settings: Any, body: Any, reads: list[Path], outputs: list[Path] | None = None) -> Any:
        return run_stage(run_dir, name, settings, body, outputs=outputs, log=_log, reads=reads)

    return stage


def train_stages(cfg: RunConfig, stage: Any, gold_splits: Path | None = None) -> dict[str, Any]:
    """Split, teacher, prune, student, evaluate and export in the run folder of `cfg` (with
    `gold_splits`, an active-learning round: the first round's dev and test splits)."""
    from distill_ner.trainers.teachers import teacher_dirs

    layout, dumped = cfg.layout, _dump(cfg)
    spec, verified_dir, pruned_dir = spec_path(cfg.spec), layout.verified_splits, layout.pruned
    teacher_dir, student_dir = layout.teacher, layout.student
    gold = str(gold_splits) if gold_splits else None
    split = stage("split", [_dump(cfg.split), gold], lambda: split_task(dumped, gold), [layout.verified, *([gold_splits] if gold_splits else [])], [verified_dir])
    all_teachers = teacher_dirs(teacher_dir, cfg.teacher.teachers)
    silver_reads = [layout.silver] if cfg.teacher.silver_weight else []
    teacher = stage("teacher", _dump(cfg.teacher), lambda: teacher_task(dumped), [spec, verified_dir, *silver_reads], all_teachers)
    pruned = stage("prune", _dump(cfg.prune), lambda: prune_task(dumped, teacher), [verified_dir, *(model_files(teacher_dir) if cfg.prune.needs_scores else [])], [pruned_dir])
    unlabeled = cfg.unlabeled_config()
    transfer_reads = [layout.generated, *([unlabeled.layout.generated] if cfg.llm.n_unlabeled else [])] if cfg.uses_transfer else []
    student_settings = [_dump(cfg.teacher), _dump(cfg.student), _dump(cfg.distill)]
    student = stage("student", [*student_settings, cfg.prune.fraction], lambda: student_task(dumped, teacher), [pruned_dir, *transfer_reads, *(f for d in all_teachers for f in model_files(d))], [student_dir])
    models = stage("evaluate", None, lambda: evaluate_task(dumped, {"teacher": teacher, "student": student}), [verified_dir, *model_files(teacher_dir), *model_files(student_dir)])
    pipeline = stage("export", None, lambda: export_task(dumped, student), [spec, *model_files(student_dir)], [layout.spacy_pipeline])
    return {"split": split, "teacher": teacher, "prune": pruned, "student": student, "models": models, "pipeline": pipeline}


def round_config(cfg: RunConfig, number: int) -> RunConfig:
    """Active-learning round `number` (>= 2): a run folder of its own, RUN/rounds/<number>/NAME,
    under the same name (so the same Label Studio project)."""
    return cfg.model_copy(update={"runs_dir": str(cfg.layout.rounds / str(number))})


def active_learning_round(cfg: RunConfig, number: int, truth: Path | None, previous: dict[str, Any]) -> dict[str, Any]:
    """One more round: the previous student picks the `review.budget` unreviewed examples that most
    need a human (`trainers.scores.review_priority`), they are reviewed, and teacher and student
    train again on everything reviewed so far; dev and test stay the first round's. Each step is
    a stage of the round's folder, skipped when done."""
    from distill_ner.data.formats import atomic_write

    rc = round_config(cfg, number)
    rc.run_dir.mkdir(parents=True, exist_ok=True)
    for source, target in ((cfg.layout.generated, rc.layout.generated), (cfg.unlabeled_config().layout.generated, rc.unlabeled_config().layout.generated)):
        if source.exists() and (not target.exists() or target.read_bytes() != source.read_bytes()):
            target.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(target, source.read_text(encoding="utf-8"))
    stage = stages_of(rc.run_dir)
    previous_verified = (cfg if number == 2 else round_config(cfg, number - 1)).layout.verified
    selected = stage("select", [_dump(cfg.review), number], lambda: select_task(_dump(rc), str(previous_verified), previous["student"]),
                     [rc.layout.generated, previous_verified, *model_files(previous["student"])])
    stage("review", [_dump(cfg.review), selected], lambda: review_stage(rc, truth, selected), [spec_path(cfg.spec), rc.layout.generated], [rc.layout.verified])
    return train_stages(rc, stage, gold_splits=cfg.layout.verified_splits)


@task(name="select-for-review")
def select_task(config_json: dict[str, Any], verified_file: str, student_dir: str) -> list[str]:
    """Ids of the `review.budget` examples not reviewed yet that most need a human: the student is
    least sure of them, reads them otherwise than the LLM, or the LLM's samples disagree
    (`trainers.scores.review_priority`)."""
    from distill_ner.annotators.label_studio import budget_size
    from distill_ner.data.formats import read_jsonl
    from distill_ner.trainers.scores import review_priority

    config = RunConfig.model_validate(config_json)
    generated = read_jsonl(config.layout.generated)
    reviewed = {e.id for e in read_jsonl(verified_file)}
    candidates = [e for e in generated if e.id not in reviewed]
    need = review_priority(student_dir, candidates)
    ranked = sorted(candidates, key=lambda e: (-need[e.id], e.id))
    return [e.id for e in ranked[: budget_size(config.review.budget, len(generated))]]


def round_row(number: int, config: RunConfig, trained: dict[str, Any]) -> dict[str, Any]:
    """One line of the report's rounds table: texts reviewed so far and the models' strict F1."""
    from distill_ner.data.formats import read_jsonl

    scores = {m["model"]: m for m in trained["models"]}
    return {"round": number, "texts reviewed": len(read_jsonl(config.layout.verified)), "train": trained["split"]["train"],
            "teacher f1": scores["teacher"]["f1"], "student f1": scores["student"]["f1"], "LLM f1": scores["LLM pre-annotation"]["f1"]}


def run_loop(cfg: RunConfig) -> str:
    """The stages in order (the caller holds the run folder's lock)."""
    run_dir = cfg.run_dir
    layout = cfg.layout
    layout.config.write_text(json.dumps(_dump(cfg), indent=2))
    spec = spec_path(cfg.spec)
    stage = stages_of(run_dir)
    unlabeled = cfg.unlabeled_config()
    review_key = {k: v for k, v in _dump(cfg.review).items() if k != "rounds"}  # more rounds do not redo the first
    if cfg.split.blind_test:
        review_key["blind"] = blind_settings(cfg)
    with llm_endpoint(cfg) as (base_url, truth):
        generated = sources_stage(cfg, base_url, stage)
        reviewed = stage("review", review_key, lambda: review_stage(cfg, truth), [spec, layout.generated], [layout.verified])
        if cfg.llm.n_unlabeled:
            stage("generate-unlabeled", _dump(unlabeled.llm), lambda: generate_stage(unlabeled, base_url), [spec], [unlabeled.layout.generated])
    if reviewed.get("project_id") is not None:
        create_link_artifact(project_url(cfg, reviewed["project_id"]), link_text="Label Studio project", key=_key(cfg, "label-studio"))
    trained = train_stages(cfg, stage)
    rounds = [round_row(1, cfg, trained)]
    for number in range(2, cfg.review.rounds + 1):
        trained = active_learning_round(cfg, number, truth, trained)
        rounds.append(round_row(number, round_config(cfg, number), trained))
    teacher, student, pipeline = trained["teacher"], trained["student"], trained["pipeline"]
    sweep = None
    if cfg.sweep.enabled:
        student_settings = [_dump(cfg.teacher), _dump(cfg.student), _dump(cfg.distill)]
        sweep = stage("sweep", [_dump(cfg.sweep), *student_settings], lambda: sweep_task(_dump(cfg), teacher), [layout.verified_splits, *model_files(layout.teacher)], [layout.sweep])
    results = {"data": {"generated": generated, "review": reviewed, "split": trained["split"], "prune": trained["prune"]}, "models": trained["models"],
               "pipeline": pipeline, "sweep": sweep, "rounds": rounds if len(rounds) > 1 else None, "reviewed_texts": rounds[-1]["texts reviewed"],
               "blind_texts": reviewed.get("blind", 0)}
    report = report_task(_dump(cfg), results)
    _log(f"report: {report}; spaCy pipeline: {pipeline}")
    return report
