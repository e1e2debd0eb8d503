"""`distill convert` and `distill split`: data in and out (registered in flows/cli.py)."""

from pathlib import Path

import typer
from rich.console import Console

from distill_ner.data.errors import DistillError

app = typer.Typer()
console = Console()
err_console = Console(stderr=True)


def read_checked(source: Path) -> list:
    """The examples of `source`, with a warning line when entity offsets cut words in half."""
    from distill_ner.data.formats import read_examples, word_cut_warning

    examples = read_examples(source)
    warning = word_cut_warning(examples, source)
    if warning:
        err_console.print(warning, highlight=False, soft_wrap=True, markup=False)
    return examples


@app.command()
def convert(
    source: Path = typer.Argument(..., help="Input: .jsonl, .conll/.bio, .spacy or a DatasetDict folder."),
    target: Path = typer.Argument(..., help="Output, format by suffix (a folder: DatasetDict)."),
    drop_relations: bool = typer.Option(False, help="Allow writing to CoNLL, which cannot hold relations."),
) -> None:
    """Convert examples between formats (bring your own verified data this way)."""
    from distill_ner.data.formats import check_writable, write_examples

    check_writable(target, folder=not target.suffix)
    examples = read_checked(source)
    if not examples:
        raise DistillError(f"{source}: holds no examples; {target} left as it was")
    write_examples(target, examples, drop_relations=drop_relations)
    console.print(f"{len(examples)} examples: {source} -> {target}")


@app.command()
def split(
    source: Path = typer.Argument(..., help="Examples in any readable format."),
    out: Path = typer.Option(..., help="Folder for the DatasetDict with train/dev/test."),
    dev: float = typer.Option(0.1, min=0.0, max=0.99, help="Fraction for dev (0: no dev split; training then runs every epoch)."),
    test: float = typer.Option(0.1, min=0.0, max=0.99, help="Fraction for test (0: no test split)."),
    seed: int = typer.Option(0),
    blind: bool = typer.Option(False, "--blind", help="The test split is the examples people labelled blind (distill review push --blind-test); --test is not used."),
) -> None:
    """Split examples into train/dev/test (same text, same split) and save a DatasetDict."""
    from distill_ner.data.example import usable
    from distill_ner.data.formats import check_writable, save_splits, split_examples

    check_writable(out, folder=True)
    examples = read_checked(source)
    test_texts = {e.text for e in usable(examples) if e.review.blind} if blind else None
    splits = split_examples(examples, dev=dev, test=test, seed=seed, test_texts=test_texts)
    save_splits(splits, out)
    console.print(", ".join(f"{name}: {len(items)}" for name, items in splits.items()) + f" -> {out}")
