"""`distill run` (the whole loop as a Prefect flow run) and `distill resume` (after human review)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import typer
from rich.console import Console

from distill_ner.data.errors import DistillError
from distill_ner.data.run_layout import RunLayout

app = typer.Typer()
console = Console()


def _quiet_prefect() -> None:
    for key, value in {
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_LOGGING_SERVER_LEVEL": "CRITICAL",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90",
    }.items():
        os.environ.setdefault(key, value)


def check_servers(cfg) -> None:
    """Fail in one line, before the flow starts, when a server the run needs is not up."""
    import httpx

    if cfg.review.mode != "none":
        from distill_ner.annotators.label_studio import client
        from distill_ner.annotators.ls_server import connection

        client(connection(url=cfg.review.label_studio_url), retry_seconds=2)  # says how to start it
    if cfg.llm.base_url:
        try:
            httpx.get(cfg.llm.base_url.rstrip("/") + "/models", timeout=10)
        except httpx.HTTPError as err:
            raise DistillError(f"the LLM server at {cfg.llm.base_url} is not reachable ({type(err).__name__}); start it or fix llm.base_url") from None


@app.command()
def run(
    config: str = typer.Option("demo", "--config", "-c", help="Run config: a name in flows/configs/ or a YAML path."),
    set_: list[str] = typer.Option([], "--set", "-s", help="Override a config value, e.g. -s distill.kd=annealing (repeatable)."),
) -> None:
    """Run the whole loop as a Prefect flow: generate, review, split, prune, train, evaluate, export, report."""
    from distill_ner.flows.config import load_run_config

    from distill_ner.data.spec import load_spec

    cfg = load_run_config(config, set_)  # a broken config or spec fails here, before anything starts
    load_spec(cfg.spec)
    check_servers(cfg)
    _quiet_prefect()
    from distill_ner.flows.distill_flow import distill

    report = distill(config, set_)
    console.print(Path(report).read_text(), markup=False, highlight=False)
    console.print(f"\nreport: {report}\nspaCy pipeline: {cfg.run_dir / 'student-spacy'}")
    console.print(f'try it: .venv/bin/python -c "import spacy; nlp = spacy.load(\'{cfg.layout.spacy_pipeline}\'); '
                  f"doc = nlp({load_spec(cfg.spec).try_text!r}); "
                  'print(doc.ents, doc._.relations)"', markup=False, highlight=False)


@app.command()
def resume(
    run_name: str = typer.Argument(..., help="The run (its folder name under runs/) waiting for human review."),
    runs_dir: Path = typer.Option(Path("runs"), help="Where the run folders are."),
    note: str = typer.Option("", help="A note for the flow run."),
    when_reviewed: str | None = typer.Option(None, help="Wait first: 'all' or N tasks reviewed, told by a Label Studio webhook."),
    listen: str = typer.Option("127.0.0.1:0", help="host:port of the webhook receiver (with --when-reviewed; port 0: a free one)."),
    public_url: str | None = typer.Option(None, help="The receiver's URL as Label Studio sees it, if not http://HOST:PORT."),
) -> None:
    """Resume a flow run that waits for human review; it then pulls whatever has been verified.

    With --when-reviewed, register a webhook on the run's Label Studio project and resume the
    run by itself once that many tasks are reviewed (the webhook is removed afterwards).
    """
    flow_run_id = resume_run(runs_dir / run_name, note, when_reviewed, listen, public_url)
    console.print(f"resumed flow run {flow_run_id} of {run_name}")


def resume_run(run_dir: Path, note: str = "", when_reviewed: str | None = None, listen: str = "127.0.0.1:0", public_url: str | None = None) -> str:
    """Resume the run's flow run paused for review (first waiting for `when_reviewed`, if given); returns its id."""
    from prefect.flow_runs import resume_flow_run

    waiting_dir = waiting_folder(run_dir)
    record = RunLayout(waiting_dir).flow_run
    if not record.exists():
        raise DistillError(f"{record}: no flow run of {run_dir.name} is waiting for review")
    waiting = json.loads(record.read_text())
    if when_reviewed is not None:
        progress = _wait_for_review(run_dir, waiting["project_id"], when_reviewed, listen, public_url)
        note = note or f"{progress.reviewed} of {progress.total} tasks reviewed"
    flow_run_id = waiting["flow_run_id"]
    RunLayout(waiting_dir).review_resumed.write_text(json.dumps({"flow_run_id": flow_run_id, "note": note}))
    try:
        resume_flow_run(flow_run_id, run_input={"note": note})
    except Exception as err:  # noqa: BLE001 - Prefect raises several kinds; all mean the same to the user
        raise DistillError(f"could not resume flow run {flow_run_id}: {err}") from None
    return flow_run_id


def waiting_folder(run_dir: Path) -> Path:
    """The folder whose review the run waits for: its last active-learning round
    (`RUN/rounds/<r>/NAME/`) that paused and was not resumed yet, else the run folder itself."""
    rounds = RunLayout(run_dir).rounds
    folders = sorted((p for p in rounds.glob(f"*/{run_dir.name}") if p.parent.name.isdigit()), key=lambda p: int(p.parent.name)) if rounds.is_dir() else []
    return next((f for f in reversed(folders) if RunLayout(f).flow_run.exists() and not RunLayout(f).review_resumed.exists()), run_dir)


def _wait_for_review(run_dir: Path, project_id: int, when_reviewed: str, listen: str, public_url: str | None):
    """Block until the run's Label Studio project has `when_reviewed` tasks reviewed (see `ReviewWatcher`)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from distill_ner.annotators.label_studio import client, find_project, project_title, read_run
    from distill_ner.annotators.ls_server import connection
    from distill_ner.annotators.review_webhook import ReviewWatcher, parse_when
    from distill_ner.data.spec import load_spec
    from distill_ner.flows.config import RunConfig

    when = parse_when(when_reviewed)
    host, _, port = listen.rpartition(":")
    if not host or not port.isdigit():
        raise DistillError(f"--listen {listen!r}: use host:port, e.g. 127.0.0.1:8765")
    config = RunConfig.model_validate_json(RunLayout(run_dir).config.read_text())
    ls = client(connection(url=config.review.label_studio_url))
    spec = load_spec(config.spec)
    project_id = find_project(ls, spec, project_title(spec, config.name))  # never creates; says which projects exist
    watcher = ReviewWatcher(ls, project_id, [e.id for e in read_run(run_dir)], host, int(port), public_url)
    target = "every task" if when is None else f"{when} tasks"
    console.print(f"waiting for review in Label Studio (project {project_id}); the run resumes at {target} reviewed")
    with Progress(TextColumn("reviewed"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console) as bar:
        task = bar.add_task("reviewed", total=None)
        return watcher.wait(when, on_progress=lambda p: bar.update(task, completed=p.reviewed, total=p.total))
