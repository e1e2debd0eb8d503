"""`distill run` (the whole loop as a Prefect flow run) and `distill resume` (after human review)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import typer
from rich.console import Console

from data.errors import DistillError

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
        from annotators.label_studio import client
        from annotators.ls_server import connection

        client(connection(url=cfg.review.label_studio_url), retry_seconds=2)  # says how to start it
    if cfg.llm.base_url:
        try:
            httpx.get(cfg.llm.base_url.rstrip("/") + "/models", timeout=10)
        except httpx.HTTPError as err:
            raise DistillError(f"the LLM server at {cfg.llm.base_url} is not reachable ({type(err).__name__}); start it or fix llm.base_url") from None


@app.command()
def run(
    config: str = typer.Option("demo", "--config", "-c", help="Run config: a name in flows/configs/ or a YAML path."),
    set_: list[str] = typer.Option([], "--set", "-s", help="Override a config value, e.g. -s train.kd=annealing (repeatable)."),
) -> None:
    """Run the whole loop as a Prefect flow: generate, review, split, prune, train, evaluate, export, report."""
    from flows.config import load_run_config

    cfg = load_run_config(config, set_)  # a broken config fails here, before anything starts
    check_servers(cfg)
    _quiet_prefect()
    from flows.distill_flow import distill

    report = distill(config, set_)
    console.print(Path(report).read_text(), markup=False, highlight=False)
    console.print(f"\nreport: {report}\nspaCy pipeline: {cfg.run_dir / 'student-spacy'}")
    console.print(f'try it: .venv/bin/python -c "import spacy; nlp = spacy.load(\'{cfg.run_dir / "student-spacy"}\'); '
                  "doc = nlp('The snow leopard lives in the mountains of Central Asia and hunts blue sheep.'); "
                  'print(doc.ents, doc._.relations)"', markup=False, highlight=False)


@app.command()
def resume(
    run_name: str = typer.Argument(..., help="The run (its folder name under runs/) waiting for human review."),
    runs_dir: Path = typer.Option(Path("runs"), help="Where the run folders are."),
    note: str = typer.Option("", help="A note for the flow run."),
) -> None:
    """Resume a flow run that waits for human review; it then pulls whatever has been verified."""
    from prefect.flow_runs import resume_flow_run

    run_dir = runs_dir / run_name
    record = run_dir / "flow_run.json"
    if not record.exists():
        raise DistillError(f"{record}: no flow run of {run_name} is waiting for review")
    flow_run_id = json.loads(record.read_text())["flow_run_id"]
    (run_dir / "review_resumed.json").write_text(json.dumps({"flow_run_id": flow_run_id, "note": note}))
    try:
        resume_flow_run(flow_run_id, run_input={"note": note})
    except Exception as err:  # noqa: BLE001 - Prefect raises several kinds; all mean the same to the user
        raise DistillError(f"could not resume flow run {flow_run_id}: {err}") from None
    console.print(f"resumed flow run {flow_run_id} of {run_name}")
