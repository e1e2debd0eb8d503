"""`distill review ...` (push, pull, status, simulate, report) and `distill label-studio ...`
(up, down, status). The API token is read from the environment or the owner-only credentials
file and never printed."""

from __future__ import annotations

import json
from contextlib import nullcontext
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from distill_ner.annotators.truth import CONVENTION_DRIFT
from distill_ner.data.errors import DistillError
from distill_ner.data.run_layout import RunLayout
from distill_ner.data.run_lock import run_lock

app = typer.Typer(no_args_is_help=True)
label_studio_app = typer.Typer(no_args_is_help=True)
console = Console()

RUN = typer.Option(..., "--run", help="Run folder (holds generated.jsonl).")
SPEC = typer.Option("species", help="Task spec name or YAML path.")
PROJECT = typer.Option(None, "--project", help="Label Studio project title (default: the run's own, 'distill <spec> <run>').")
URL = typer.Option(None, "--url", help="Label Studio URL (default: $LABEL_STUDIO_URL, else the server `distill label-studio up` started).")
DATA_DIR = typer.Option(None, "--data-dir", help="Label Studio data directory (default: $DISTILL_LS_DATA_DIR or ~/.local/share/distill/label-studio).")


def _connect(url: str | None, data_dir: Path | None):
    from distill_ner.annotators.label_studio import client
    from distill_ner.annotators.ls_server import connection

    return client(connection(url=url, data_dir=data_dir))


def _need_project(title: str | None, run: Path | None) -> None:
    if not title and run is None:
        raise DistillError("give --run RUN (its own project) or --project TITLE")


def _title(spec, title: str | None, run: Path | None) -> str:
    """--project, else the run's own project title; one of them is needed."""
    from distill_ner.annotators.label_studio import project_title

    _need_project(title, run)
    return title or project_title(spec, run.name)


def _project(ls, spec_name: str, title: str | None, run: Path | None, create: bool = False):
    """(spec, project id): found, or with `create` (push only) created."""
    from distill_ner.annotators.label_studio import ensure_project, find_project
    from distill_ner.data.spec import load_spec

    spec = load_spec(spec_name)
    title = _title(spec, title, run)
    return spec, (ensure_project if create else find_project)(ls, spec, title)


# --- distill label-studio -----------------------------------------------------------------
@label_studio_app.command("up")
def up(
    port: int = typer.Option(8080, help="Port on 127.0.0.1."),
    data_dir: Path = DATA_DIR,
    timeout: float = typer.Option(180.0, help="Seconds to wait for the API (the first start runs migrations, about a minute)."),
) -> None:
    """Start the local Label Studio server (admin user and API token made on first start)."""
    from distill_ner.annotators.ls_server import CREDENTIALS, start

    with console.status("starting Label Studio (the first start takes about a minute)"):
        server = start(data_dir, port=port, timeout=timeout)
    console.print(f"Label Studio is up at {server.url} (pid {server.pid})")
    console.print(f"admin login and API token: {server.data_dir / CREDENTIALS} (owner-only; not printed)")


@label_studio_app.command("down")
def down(data_dir: Path = DATA_DIR) -> None:
    """Stop the local Label Studio server."""
    from distill_ner.annotators.ls_server import stop

    console.print("Label Studio stopped" if stop(data_dir) else "Label Studio was not running")


@label_studio_app.command("status")
def ls_status(data_dir: Path = DATA_DIR) -> None:
    """Whether the local Label Studio server runs and answers."""
    from distill_ner.annotators.ls_server import server_status

    s = server_status(data_dir)
    state = "[green]up[/green]" if s["healthy"] else ("[yellow]running, not answering[/yellow]" if s["running"] else "[red]down[/red]")
    console.print(f"Label Studio: {state}{' at ' + s['url'] if s['running'] else ''} (data {s['data_dir']}; installed: {s['installed']})")
    if not s["healthy"]:
        raise typer.Exit(1)


# --- distill review ----------------------------------------------------------------------
@app.command("push")
def push_cmd(
    run: Path = RUN, spec: str = SPEC, project: str = PROJECT, url: str = URL, data_dir: Path = DATA_DIR,
    batch_size: int = typer.Option(500, min=1, help="Tasks per import request."),
    budget: float = typer.Option(None, help="Send only this share (<= 1) or count (> 1) of the examples, the least confident first; the rest stay LLM-labelled."),
    blind_test: float = typer.Option(
        None, min=0.0, max=0.99,
        help="Send this share of the texts (seeded) without the LLM's annotations, to be labelled from scratch, outside the budget; then: distill split --blind.",
    ),
    seed: int = typer.Option(0, help="Seed of the --blind-test choice."),
) -> None:
    """Import a run's examples as tasks, with the LLM's annotations as predictions (idempotent)."""
    from distill_ner.annotators.label_studio import push, read_run, triage
    from distill_ner.data.formats import blind_test_ids

    generated = read_run(run)
    blind = blind_test_ids(generated, blind_test, seed) if blind_test else set()
    examples, held_back = triage(generated, budget, blind)
    ls = _connect(url, data_dir)
    task_spec, project_id = _project(ls, spec, project, run, create=True)
    columns = (TextColumn("[bold]importing"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with run_lock(run, "distill review push"), Progress(*columns, console=console, transient=True) as progress:
        bar = progress.add_task("push", total=None)
        result = push(ls, project_id, examples, task_spec, run=run.name, batch_size=batch_size, blind=blind,
                      on_batch=lambda done, total: progress.update(bar, completed=done, total=total))
    console.print(f"project {project_id}: {result.created} tasks created, {result.skipped} already there (left untouched)"
                  + (f"; {len(blind)} of them blind, without the LLM's annotations" if blind else "")
                  + (f"; {len(held_back)} least-needed examples held back by the budget" if held_back else ""))


@app.command("pull")
def pull_cmd(
    run: Path = RUN, spec: str = SPEC, project: str = PROJECT, url: str = URL, data_dir: Path = DATA_DIR,
    allow_fewer: bool = typer.Option(False, "--allow-fewer", help="Replace RUN/verified.jsonl even if it holds more examples than this pull has."),
) -> None:
    """Export the annotations of a run's tasks into RUN/verified.jsonl (accepted, corrected, rejected)."""
    from distill_ner.annotators.label_studio import CONFLICT_RULE, pull, read_run, write_verified

    examples = read_run(run)
    ls = _connect(url, data_dir)
    task_spec, project_id = _project(ls, spec, project, run)
    with run_lock(run, "distill review pull"):
        result = pull(ls, project_id, task_spec, examples, run=run.name)
        path = write_verified(run, result, allow_fewer=allow_fewer)
    counts = result.counts()
    console.print(", ".join(f"{k.replace('_', ' ')} {v}" for k, v in counts.items()) + f" -> {path}")
    if counts["pending"]:
        console.print(f"[yellow]{counts['pending']} tasks are still waiting for review[/yellow]; pull again later")
    ag = result.agreement
    if ag["tasks_with_several_annotators"]:
        console.print(f"agreement on {ag['tasks_with_several_annotators']} tasks: span F1 {ag['span_f1']}, kappa (accept/reject) {ag['kappa_reject']}")
        console.print(f"conflicts: {CONFLICT_RULE}")
    for warning in result.warnings:
        console.print(f"[yellow]warning:[/yellow] {escape(warning)}", soft_wrap=True)
    for problem in result.problems:
        console.print(f"[red]problem:[/red] {escape(problem)}", soft_wrap=True)


@app.command("status")
def status_cmd(
    run: Path = typer.Option(None, "--run", help="Run folder (its own project)."), spec: str = SPEC, project: str = PROJECT,
    url: str = URL, data_dir: Path = DATA_DIR, as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Tasks done, pending and rejected, per annotator."""
    from distill_ner.annotators.label_studio import review_status

    _need_project(project, run)
    ls = _connect(url, data_dir)
    _, project_id = _project(ls, spec, project, run)
    s = review_status(ls, project_id)
    if as_json:
        console.print_json(json.dumps(s))
        return
    console.print(f"project {project_id}: {s['tasks']} tasks, {s['done']} done, {s['pending']} pending, {s['rejected']} rejected")
    table = Table("annotator", "done", "rejected", "skipped")
    for name, c in s["annotators"].items():
        table.add_row(name, str(c["done"]), str(c["rejected"]), str(c["skipped"]))
    console.print(table)


@app.command("simulate")
def simulate_cmd(
    truth: Path = typer.Option(None, help="Mock LLM truth JSONL (default: RUN/mock_truth.jsonl)."),
    run: Path = typer.Option(None, "--run", help="Run folder (its own project, and the default truth file)."),
    accuracy: float = typer.Option(0.95, min=0.0, max=1.0, help="Probability that an error is corrected (else the prediction is accepted as is)."),
    convention_drift: float = typer.Option(
        CONVENTION_DRIFT, min=0.0, max=1.0,
        help="Chance per entity that a reviewer leaves an LLM span convention or draws a boundary its own way (0: exactly the truth).",
    ),
    annotators: str = typer.Option("annotator-1", help="Comma-separated simulated annotator names (Label Studio users)."),
    per_task: int = typer.Option(1, min=1, help="Annotations per task (at most the number of annotators)."),
    seconds_per_task: float = typer.Option(0.0, min=0.0, help="Pace: seconds each annotation takes."),
    seed: int = typer.Option(0),
    limit: int = typer.Option(None, min=1, help="Review at most this many tasks."),
    spec: str = SPEC, project: str = PROJECT, url: str = URL, data_dir: Path = DATA_DIR,
) -> None:
    """Review the pending tasks as simulated annotators, through Label Studio's API."""
    from distill_ner.annotators.simulate import load_truth, simulate_review

    if truth is None:
        if run is None:
            raise DistillError("give --truth FILE or --run RUN (whose mock_truth.jsonl is used)")
        truth = RunLayout(run).mock_truth
    _need_project(project, run)
    records = load_truth(truth)
    ls = _connect(url, data_dir)
    _, project_id = _project(ls, spec, project, run)
    names = [n.strip() for n in annotators.split(",") if n.strip()]
    with run_lock(run, "distill review simulate") if run else nullcontext(), console.status("simulated annotators at work"):
        result = simulate_review(ls, project_id, records, accuracy=accuracy, convention_drift=convention_drift, annotators=names, per_task=per_task, seconds_per_task=seconds_per_task, seed=seed, limit=limit)
    decisions = ", ".join(f"{k} {v}" for k, v in sorted(result.decisions.items()))
    console.print(f"{result.annotations} annotations on {result.tasks} tasks ({decisions or 'nothing to do'})")


@app.command("report")
def report_cmd(run: Path = RUN) -> None:
    """How correct was the LLM: P/R/F1 against the humans, per label (RUN/correctness.{md,json})."""
    from distill_ner.annotators.correctness import write_correctness

    _, markdown = write_correctness(run)
    console.print(markdown)
    markdown_path = RunLayout(run).correctness
    console.print(f"-> {markdown_path}, {markdown_path.with_suffix('.json')}")
