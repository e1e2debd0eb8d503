"""`distill convert` and `distill split`: data in and out (registered in flows/cli.py)."""

from pathlib import Path

import typer
from rich.console import Console

app = typer.Typer()
console = Console()


@app.command()
def convert(
    source: Path = typer.Argument(..., help="Input: .jsonl, .conll/.bio, .spacy or a DatasetDict folder."),
    target: Path = typer.Argument(..., help="Output, format by suffix (a folder: DatasetDict)."),
    drop_relations: bool = typer.Option(False, help="Allow writing to CoNLL, which cannot hold relations."),
) -> None:
    """Convert examples between formats (bring your own verified data this way)."""
    from data.formats import read_examples, write_examples

    examples = read_examples(source)
    write_examples(target, examples, drop_relations=drop_relations)
    console.print(f"{len(examples)} examples: {source} -> {target}")


@app.command()
def split(
    source: Path = typer.Argument(..., help="Examples in any readable format."),
    out: Path = typer.Option(..., help="Folder for the DatasetDict with train/dev/test."),
    dev: float = typer.Option(0.1, help="Fraction for dev."),
    test: float = typer.Option(0.1, help="Fraction for test."),
    seed: int = typer.Option(0),
) -> None:
    """Split examples into train/dev/test (same text, same split) and save a DatasetDict."""
    from data.formats import read_examples, save_splits, split_examples

    splits = split_examples(read_examples(source), dev=dev, test=test, seed=seed)
    save_splits(splits, out)
    console.print(", ".join(f"{name}: {len(items)}" for name, items in splits.items()) + f" -> {out}")
