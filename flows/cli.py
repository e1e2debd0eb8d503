"""The `distill` command: every stage of the loop as a subcommand.

Each package keeps its own commands (`annotators/cli.py`, `annotators/review_cli.py`,
`trainers/cli.py`, `flows/run_cli.py`); this module only puts them together and turns a
`DistillError` into a one-line error with a non-zero exit.
"""

from __future__ import annotations

import sys

import typer
from rich.console import Console
from rich.markup import escape

from data.errors import DistillError

app = typer.Typer(
    name="distill",
    help="Distil an LLM into small NER/RE students: generate, review, prune, train, export.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
err_console = Console(stderr=True)


def _register() -> None:
    from annotators.cli import app as annotators_app
    from annotators.review_cli import app as review_app, label_studio_app
    from data.cli import app as data_app
    from flows.run_cli import app as run_app
    from trainers.cli import app as trainers_app
    from trainers.sweep_cli import app as sweep_app

    for sub in (annotators_app, data_app, trainers_app, sweep_app, run_app):
        app.add_typer(sub)
    app.add_typer(review_app, name="review", help="Human verification in Label Studio: push, pull, status, simulate.")
    app.add_typer(label_studio_app, name="label-studio", help="Start, stop and check the local Label Studio server.")


_register()


def main() -> None:
    """Entry point: run the app; a `DistillError` becomes one line on stderr and exit status 1."""
    try:
        app()
    except DistillError as err:
        err_console.print(f"[red]error:[/red] {escape(str(err))}", highlight=False, soft_wrap=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
