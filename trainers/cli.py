"""`distill train`, `distill evaluate`, `distill export`, `distill export-spacy` (registered in flows/cli.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.table import Table

from distill_ner.data.errors import DistillError, validation_message
from distill_ner.data.run_layout import RunLayout
from distill_ner.trainers.args import default
from distill_ner.trainers.export import EXPORTERS
from distill_ner.trainers.kd import kd_names

app = typer.Typer()
console = Console()


def load_split(path: Path, name: str) -> list:
    """Examples of one split: a file (any format) or the `name` split of a DatasetDict folder."""
    from distill_ner.data.cli import read_checked
    from distill_ner.data.formats import load_splits

    if path.is_dir():
        splits = load_splits(path)
        if name not in splits:
            raise DistillError(f"{path}: has no {name!r} split (has {', '.join(splits)})")
        return splits[name]
    return read_checked(path)


def run_splits(run_dir: Path) -> dict[str, list]:
    """train/dev/test of a run folder's `verified/`, and the pruned train split when there is one."""
    from distill_ner.data.formats import load_splits

    layout = RunLayout(run_dir)
    if not layout.verified_splits.exists():
        raise DistillError(f"{run_dir}: no verified/ split in this run folder (run the review and split stages first)")
    splits = load_splits(layout.verified_splits)
    pruned = layout.pruned
    splits["student_train"] = load_splits(pruned)["train"] if (pruned / "dataset_dict.json").exists() else splits.get("train", [])
    return splits


def results_table(rows: list[dict]) -> Table:
    """A rich table of evaluation results, one row per model."""
    table = Table("model", "strict span F1", "overlap span F1", "token macro F1", "relation F1", "parameters", "train s", "sentences/s")
    for r in rows:
        rel = r.get("relation_f1")
        table.add_row(
            r["name"], f"{r['f1']:.3f}", f"{r.get('overlap_f1', 0.0):.3f}", f"{r['token_macro_f1']:.3f}", "n/a" if rel is None else f"{rel:.3f}",
            f"{r['parameters']:,}", str(r.get("train_seconds")), str(r.get("sentences_per_second")),
        )
    return table


@app.command()
def train(
    run: Optional[Path] = typer.Argument(None, help="Run folder (uses verified/ and, for the student, pruned/)."),
    train_path: Optional[Path] = typer.Option(None, "--train", help="Training examples: JSONL, CoNLL, DocBin or a DatasetDict folder."),
    dev_path: Optional[Path] = typer.Option(None, "--dev", help="Dev examples (early stopping); default: a seeded share of --train."),
    dev_fraction: float = typer.Option(0.1, help="Without --dev: the share of --train held out as the dev split."),
    test_path: Optional[Path] = typer.Option(None, "--test", help="Gold test examples (evaluated after training)."),
    transfer_path: Optional[Path] = typer.Option(None, "--transfer", help="Texts no human labelled (any format; labels ignored): the student also learns the teacher's soft targets on them."),
    out: Optional[Path] = typer.Option(None, help="Where models go (default: RUN/models, else ./models)."),
    spec: Optional[str] = typer.Option(None, help="Task spec name or YAML (labels and allowed relations); default: labels from the data."),
    encoder: Optional[str] = typer.Option(None, help="Teacher encoder: HF name or local path (default: offline MiniLM)."),
    teacher: Optional[Path] = typer.Option(None, help="Use this trained teacher instead of training one."),
    student: bool = typer.Option(True, help="Also train the student."),
    student_layers: int = typer.Option(default("student_layers"), help="Teacher layers kept for the student."),
    student_encoder: Optional[str] = typer.Option(None, help="A small encoder for the student instead of teacher layers."),
    kd: str = typer.Option(default("kd"), help=f"KD method: {' | '.join(kd_names())}."),
    alpha: Optional[float] = typer.Option(None, help="KD weight (default: from the pruning fraction, 0.5 on all data)."),
    temperature: float = typer.Option(default("temperature")),
    epochs: Optional[int] = typer.Option(default("epochs"), help="At most this many epochs (early stopping on dev); default: enough for -s step_budget steps (3-20)."),
    batch_size: int = typer.Option(default("batch_size")),
    learning_rate: float = typer.Option(default("learning_rate"), "--lr"),
    max_length: int = typer.Option(default("max_length"), help="Word pieces per window (longer texts are windowed)."),
    seed: int = typer.Option(default("seed")),
    device: str = typer.Option(default("device"), help="auto | cpu | cuda"),
    search: bool = typer.Option(default("search"), "--search", help="Try a learning rate x epochs grid (2 seeds, dev split only) and train with the best."),
    set_: list[str] = typer.Option([], "--set", "-s", help="Any other training argument as key=value, e.g. -s patience=5 -s subword_labels=all (see trainers/args.py)."),
) -> None:
    """Train the teacher and the KD student; evaluate both on the test split when there is one."""
    from pydantic import ValidationError

    from distill_ner.data.run_lock import run_lock
    from distill_ner.data.spec import load_spec
    from distill_ner.trainers.args import TrainingArgs, parse_settings

    if kd not in kd_names():  # cheap checks first: torch takes seconds to import
        raise DistillError(f"--kd {kd!r}: use {', '.join(kd_names())}")
    given = dict(
        encoder=encoder, student_layers=student_layers, student_encoder=student_encoder, kd=kd, alpha=alpha, temperature=temperature,
        epochs=epochs, batch_size=batch_size, learning_rate=learning_rate, max_length=max_length, seed=seed, device=device, search=search,
    )
    names = {"learning_rate": "--lr"} | {f: "--" + f.replace("_", "-") for f in given if f != "learning_rate"}
    for item in set_:
        ((key, value),) = parse_settings([item]).items()
        given[key], names[key] = value, f"-s {item}"
    try:
        args = TrainingArgs(**given)
    except ValidationError as err:
        raise DistillError(validation_message(err, names)) from None
    task = load_spec(spec) if spec else None
    transfer = load_split(transfer_path, "train") if transfer_path else []
    if run is not None:
        with run_lock(run, "distill train"):
            _train(run_splits(run), out or RunLayout(run).models, args, task, teacher, student, transfer)
    elif train_path is not None:
        splits = file_splits(train_path, dev_path, test_path, dev_fraction, args.seed)
        _train(splits, out or Path("models"), args, task, teacher, student, transfer)
    else:
        raise DistillError("give a run folder, or --train (and --dev, --test) files")


def file_splits(train_path: Path, dev_path: Path | None, test_path: Path | None, dev_fraction: float, seed: int) -> dict[str, list]:
    """train/dev/test from files. Without `dev_path`, a seeded `dev_fraction` of the training texts
    is the dev split. Texts that are also in the test split leave train and dev (test never changes)."""
    from distill_ner.data.dedup import drop_texts_of
    from distill_ner.data.formats import split_examples

    test = load_split(test_path, "test") if test_path else []
    train, in_test = drop_texts_of(load_split(train_path, "train"), test)
    if not train and in_test:
        raise DistillError(f"all {in_test} training examples also occur in the test split: nothing left to train on")
    dev, dev_in_test = drop_texts_of(load_split(dev_path, "dev"), test) if dev_path is not None else ([], 0)
    if in_test or dev_in_test:
        console.print(f"removed {in_test} training and {dev_in_test} dev example(s) whose text is also in the test split (the test split is unchanged)")
    if dev_path is None:
        if not 0 < dev_fraction < 1:
            raise DistillError(f"--dev-fraction {dev_fraction}: use a share between 0 and 1 (or give --dev)")
        carved = split_examples(train, dev=dev_fraction, test=0.0, seed=seed)
        train, dev = carved["train"], carved["dev"]
        console.print(f"no --dev given: {len(dev)} of {len(train) + len(dev)} training examples (seed {seed}) are the dev split")
    return {"train": train, "dev": dev, "test": test, "student_train": train}


def _say(message: str) -> None:
    console.print(message, soft_wrap=True, markup=False, highlight=False)


def _train(splits: dict[str, list], out: Path, args: Any, spec: Any, teacher: Path | None, student: bool, transfer: list) -> None:
    from distill_ner.trainers.evaluate import evaluate
    from distill_ner.trainers.pipeline import student as train_student, teachers as train_teachers
    from distill_ner.trainers.trainer import check_disjoint, transfer_texts

    if splits.get("test"):
        check_disjoint(splits["train"], splits["test"], "test")
    if transfer:
        kept = transfer_texts(transfer, splits.get("test", []))  # a test text is never trained on, labelled or not
        if len(kept) < len(transfer):
            console.print(f"transfer set: {len(transfer) - len(kept)} text(s) left out (in the test split, or repeated)")
        transfer = kept
    teachers = [teacher] if teacher else train_teachers(splits["train"], splits["dev"], out / "teacher", args, spec=spec, log=_say)
    models = {"teacher": teachers[0]}
    if student:
        models[f"student-{args.kd}"] = train_student(splits["student_train"], splits["dev"], teachers[0], out / f"student-{args.kd}", args, transfer=transfer,
                                                     extra_teachers=teachers[1:], log=_say)
    console.print(f"models in {out}: {', '.join(str(p) for p in models.values())}")
    if splits.get("test"):
        rows = [{"name": name, **evaluate(path, splits["test"])} for name, path in models.items()]
        console.print(results_table(rows))


@app.command("evaluate")
def evaluate_command(
    model_dir: Path = typer.Argument(..., help="A trained model directory."),
    test: Path = typer.Option(..., help="Gold examples: a file, or a DatasetDict folder (its test split)."),
    out: Optional[Path] = typer.Option(None, help="Where metrics.json/metrics.md go (default: the model directory)."),
) -> None:
    """Entity and relation scores, size and CPU speed of a model on gold data."""
    from distill_ner.trainers.evaluate import evaluate

    metrics = evaluate(model_dir, load_split(test, "test"), out_dir=out)
    console.print(results_table([{"name": str(model_dir), **metrics}]))
    console.print(json.dumps(metrics["per_label"]))


@app.command("export-spacy")
def export_spacy_command(
    model_dir: Path = typer.Argument(..., help="A trained model directory (usually the student)."),
    out: Path = typer.Argument(..., help="Output pipeline directory for spacy.load."),
    spec: Optional[str] = typer.Option(None, help="Task spec whose labels and relation types the pipeline uses."),
    lang: str = typer.Option("en", help="spaCy language of the tokenizer."),
    runtime: Optional[str] = typer.Option(None, help="torch (default) or onnx: the model as ONNX graphs run by ONNX Runtime (needs onnxruntime)."),
    quantize: Optional[str] = typer.Option(None, help="int8: dynamic int8 quantization of the ONNX graphs (implies --runtime onnx)."),
) -> None:
    """Export a model as a spaCy pipeline (doc.ents and doc._.relations)."""
    from distill_ner.data.spec import load_spec
    from distill_ner.trainers.export.to_spacy import export_spacy

    path = export_spacy(model_dir, out, load_spec(spec) if spec else None, lang=lang, runtime=runtime, quantize=quantize)
    console.print(f"spaCy pipeline: {path}  (spacy.load({str(path)!r}); package it with python -m spacy package {path} dist/)")


@app.command("export")
def export_command(
    model_dir: Path = typer.Argument(..., help="A trained model directory (usually the student)."),
    out: Path = typer.Argument(..., help="Output folder."),
    format: str = typer.Option("spacy", "--format", "-f", help=f"Export format: {', '.join(EXPORTERS)}."),
    spec: Optional[str] = typer.Option(None, help="Task spec whose labels the export must match."),
) -> None:
    """Export a model in any registered format (trainers/export/)."""
    from distill_ner.data.spec import load_spec
    from distill_ner.trainers.export import exporter

    write = exporter(format)  # an unknown format is one line naming the registered ones
    path = write(model_dir, out, load_spec(spec) if spec else None)
    console.print(f"{format} export: {path}")
