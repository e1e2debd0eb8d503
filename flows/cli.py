"""The `distill` command: every stage of the loop as a subcommand.

Each package keeps its own commands (`annotators/cli.py`, `annotators/review_cli.py`,
`trainers/cli.py`, `trainers/sweep_cli.py`, `flows/prune_cli.py`, `flows/run_cli.py`); this module only puts them together and turns a
`DistillError` into a one-line error with a non-zero exit.
"""

from __future__ import annotations

import sys

import typer
from rich.console import Console
from rich.markup import escape

from distill_ner.data.errors import DistillError

app = typer.Typer(
    name="distill",
    help="Distil an LLM into small NER/RE students: generate, review, prune, train, export.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
err_console = Console(stderr=True)


def _register() -> None:
    from distill_ner.annotators.cli import app as annotators_app
    from distill_ner.annotators.review_cli import app as review_app, label_studio_app
    from distill_ner.data.cli import app as data_app
    from distill_ner.flows.prune_cli import app as prune_app
    from distill_ner.flows.run_cli import app as run_app
    from distill_ner.trainers.cli import app as trainers_app
    from distill_ner.trainers.sweep_cli import app as sweep_app

    for sub in (annotators_app, data_app, prune_app, trainers_app, sweep_app, run_app):
        app.add_typer(sub)
    app.add_typer(review_app, name="review", help="Human verification in Label Studio: push, pull, status, simulate.")
    app.add_typer(label_studio_app, name="label-studio", help="Start, stop and check the local Label Studio server.")


_register()


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the app. A `DistillError` or a usage mistake (unknown option, a value out
    of range) becomes one line on stderr and exit status 1 (2 for usage); never a traceback."""
    try:
        code = app(args=argv, prog_name="distill", standalone_mode=False)
    except DistillError as err:
        _fail(str(err), 1)
    except typer.Abort:
        _fail("aborted", 130)
    except typer.TyperException as err:  # click's usage errors (typer vendors click)
        if not err.format_message():  # no arguments: the help was printed
            sys.exit(getattr(err, "exit_code", 2))
        ctx = getattr(err, "ctx", None)
        hint = f" (see {ctx.command_path} --help)" if ctx is not None else ""
        _fail(f"{err.format_message()}{hint}", getattr(err, "exit_code", 2))
    except PermissionError as err:  # an output nobody can write, reached before our own checks
        _fail(f"{err.filename}: permission denied", 1)
    sys.exit(code if isinstance(code, int) else 0)


def _fail(message: str, code: int) -> None:
    err_console.print(f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True)
    sys.exit(code)


if __name__ == "__main__":
    main()
