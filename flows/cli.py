"""The `distill` command: every stage of the loop as a subcommand.

Each package keeps its own commands (`annotators/cli.py`, `annotators/review_cli.py`,
`trainers/cli.py`, `flows/run_cli.py`); this module only puts them together and turns a
`DistillError` into a one-line error with a non-zero exit.
"""

from __future__ import annotations

import sys

import typer
from rich.console import Console

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
    from trainers.cli import app as trainers_app

    for sub in (annotators_app, data_app, trainers_app):
        app.add_typer(sub)
    app.add_typer(review_app, name="review", help="Human verification in Label Studio: push, pull, status, simulate.")
    app.add_typer(label_studio_app, name="label-studio", help="Start, stop and check the local Label Studio server.")
    try:
        from flows.run_cli import app as flows_app
    except ImportError:
        return
    app.add_typer(flows_app)


_register()


def main() -> None:
    """Entry point: run the app, printing user errors as one line."""
    try:
        app(standalone_mode=False)
    except DistillError as err:
        err_console.print(f"[red]error:[/red] {err}", highlight=False, soft_wrap=True)
        sys.exit(1)
    except (typer.Abort, KeyboardInterrupt):
        err_console.print("aborted")
        sys.exit(130)
    except typer.Exit as exit_:
        sys.exit(exit_.exit_code)
    except Exception as err:  # click usage errors and the like
        import click

        if isinstance(err, click.ClickException):
            err.show()
            sys.exit(err.exit_code)
        raise


if __name__ == "__main__":
    main()
