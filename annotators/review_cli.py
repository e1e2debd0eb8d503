"""`distill review ...` and `distill label-studio ...` commands."""

import typer

app = typer.Typer(no_args_is_help=True)
label_studio_app = typer.Typer(no_args_is_help=True)
