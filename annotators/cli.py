"""CLI commands of this package (registered in flows/cli.py)."""

import typer

app = typer.Typer()
