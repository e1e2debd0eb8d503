"""Benchmark: teacher and half-depth students (KD none / hinton / annealing) on a verified data set.

    .venv/bin/python bench/train.py runs/NAME                  # a run folder (verified/, pruned/)
    .venv/bin/python bench/train.py data.jsonl                 # one file: split 80/10/10 (seeded)
    .venv/bin/python bench/train.py --train a.conll --dev b.conll --test c.conll

    .venv/bin/python bench/train.py data.jsonl --seeds 0,1,2 --kds hinton   # mean ± std over 3 seeds

Prints one Markdown table per seed: F1 per label, entity micro F1 (seqeval, strict spans), overlap
span F1, token-level macro F1 over the entity types, relation weighted F1, parameters, training
seconds, CPU sentences per second, and the LLM's own pre-annotation scored the same way when
the data records the review; the checks (the KD student keeps >= 97% of the teacher's strict
F1 at >= 1.8x its speed; >= 200 sentences/s in spaCy on CPU); then mean ± std over the seeds. The
plain fine-tune of bench/plain_finetune.py is the reference the teacher must match. Training uses
the trainer's defaults unless given. Results also go to OUT/bench.json and OUT/bench.md.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Optional

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import typer  # noqa: E402

from distill_ner.data.tables import markdown_table  # noqa: E402

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


def load_data(data: Optional[Path], train: Optional[Path], dev: Optional[Path], test: Optional[Path], seed: int) -> dict[str, list]:
    from distill_ner.data.example import usable
    from distill_ner.data.formats import read_examples, split_examples
    from distill_ner.trainers.cli import load_split, run_splits

    if train and dev and test:
        return {"train": load_split(train, "train"), "dev": load_split(dev, "dev"), "test": load_split(test, "test")}
    if data is None:
        raise SystemExit("give a run folder or data file, or --train/--dev/--test")
    if (data / "verified").exists():
        splits = run_splits(data)
        return {"train": splits["train"], "dev": splits["dev"], "test": splits["test"]}
    if (data / "dataset_dict.json").exists():
        return {k: load_split(data, k) for k in ("train", "dev", "test")}
    return split_examples(usable(read_examples(data)), dev=0.1, test=0.1, seed=seed)


def spacy_speed(model_dir: Path, out: Path, texts: list[str], n: int = 1024, repeats: int = 3) -> float:
    """Sentences per second of `nlp.pipe` on CPU for the exported pipeline (best of `repeats`)."""
    import spacy

    from distill_ner.trainers.export.to_spacy import export_spacy

    nlp = spacy.load(export_spacy(model_dir, out))
    sample = (texts * (n // max(1, len(texts)) + 1))[:n]
    list(nlp.pipe(sample[:64]))
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        list(nlp.pipe(sample, batch_size=64))
        best = min(best, time.perf_counter() - start)
    return round(n / best, 1)


def table(rows: list[dict], labels: list[str]) -> str:
    """Scores in percent, one row per model."""
    def pct(value: float | None) -> float | None:
        return None if value is None else value * 100

    out = [
        {"model": r["name"], **{l: pct(r["per_label"].get(l, {}).get("f1", 0.0)) for l in labels}, "strict span F1": pct(r["f1"]),
         "overlap span F1": pct(r.get("overlap_f1", 0.0)), "token macro F1": pct(r["token_macro_f1"]), "relation F1": pct(r.get("relation_f1")),
         "parameters": f"{r['parameters'] / 1e6:.1f}M" if r["parameters"] else "-", "train s": round(r["train_seconds"]), "sent/s (CPU)": round(r["sentences_per_second"])}
        for r in rows
    ]
    return markdown_table(out, digits=1)


def plain_row(splits: dict[str, list], encoder: Optional[str], epochs: int, seed: int) -> dict:
    """The plain fine-tune's scores on the test split, in the table's shape (it predicts on our words)."""
    from distill_ner.data.example import usable
    from plain_finetune import plain_finetune  # bench/ is on sys.path when this script runs
    from distill_ner.trainers.encoders import load_encoder
    from distill_ner.trainers.evaluate import ner_scores

    started = time.perf_counter()
    predicted = plain_finetune(usable(splits["train"]), splits["test"], encoder=encoder, epochs=epochs, seed=seed)
    seconds = time.perf_counter() - started
    parameters = sum(p.numel() for p in load_encoder(encoder)[0].parameters())
    return {"name": f"plain fine-tune ({epochs} epochs)", **ner_scores(splits["test"], predicted), "relation_f1": None,
            "parameters": parameters, "train_seconds": seconds, "sentences_per_second": 0.0}


def llm_row(splits: dict[str, list]) -> dict | None:
    """The LLM's own pre-annotations scored like a model on the test split (None unless the test
    examples were reviewed, so that `review.diff` says what the LLM annotated)."""
    from distill_ner.trainers.evaluate import llm_scores

    test = splits["test"]
    if not any(e.review.status in ("accepted", "corrected") for e in test):
        return None
    return {"name": "LLM pre-annotation", **llm_scores(test), "relation_f1": None,
            "parameters": 0, "train_seconds": 0.0, "sentences_per_second": 0.0}


def versus_llm(rows: list[dict], splits: dict[str, list]) -> list[str]:
    """Each trained model's strict span F1 minus the LLM's on the same test texts, with the paired
    95% bootstrap interval (`trainers.evaluate.f1_difference`): is the lead more than the test
    split's sampling?"""
    from distill_ner.trainers.evaluate import f1_difference
    from distill_ner.trainers.inference import predict_entities
    from distill_ner.trainers.modeling import load_model
    from distill_ner.data.example import llm_entities

    if not any(r["name"] == "LLM pre-annotation" for r in rows):  # the data does not say what the LLM annotated
        return []
    test = splits["test"]
    llm = [llm_entities(e) for e in test]
    lines = []
    for r in rows:
        if r.get("path"):
            diff, low, high = f1_difference(test, predict_entities(load_model(r["path"]), test), llm)
            lines.append(f"{r['name']} minus the LLM: {diff * 100:+.1f} strict span F1 (paired 95% interval {low * 100:+.1f} to {high * 100:+.1f})")
    return lines


def seed_summary(per_seed: list[list[dict]]) -> str:
    """Mean and standard deviation over seeds of each model's strict span, overlap and token F1 (percent)."""
    import statistics

    def cell(values: list[float]) -> str:
        values = [v * 100 for v in values]
        return f"{statistics.mean(values):.1f} ± {statistics.stdev(values):.1f}" if len(values) > 1 else f"{values[0]:.1f}"

    names = [r["name"] for r in per_seed[0]]
    out = []
    for name in names:
        rows = [r for seed_rows in per_seed for r in seed_rows if r["name"] == name]
        out.append({"model": name, "strict span F1": cell([r["f1"] for r in rows]), "overlap span F1": cell([r["overlap_f1"] for r in rows]),
                    "token macro F1": cell([r["token_macro_f1"] for r in rows]), "seeds": len(rows)})
    return markdown_table(out)


def train_and_score(splits: dict[str, list], out: Path, args, kds: list[str], plain: bool, plain_epochs: int, with_teacher: bool = True) -> list[dict]:
    """Teacher, plain fine-tune and students of one seed, each scored on the test split (without
    the teacher: the plain fine-tune alone, e.g. run beside a teacher-and-students process)."""
    from distill_ner.trainers.evaluate import evaluate
    from distill_ner.trainers.pipeline import student, teachers

    rows = []
    if with_teacher:
        teacher = teachers(splits["train"], splits["dev"], out / "teacher", args)[0]
        rows.append({"name": "teacher", "path": str(teacher), **evaluate(teacher, splits["test"])})
    if plain:
        rows.append(plain_row(splits, args.encoder, plain_epochs, args.seed))
    for kd in kds if with_teacher else []:
        path = student(splits["train"], splits["dev"], teacher, out / f"student-{kd}", args.model_copy(update={"kd": kd}))
        rows.append({"name": f"student {args.student_layers}L KD {kd}", "path": str(path), **evaluate(path, splits["test"])})
    llm = llm_row(splits)
    return rows + ([llm] if llm else [])


@app.command()
def main(
    data: Optional[Path] = typer.Argument(None, help="Run folder, DatasetDict folder, or one JSONL/CoNLL file."),
    train: Optional[Path] = typer.Option(None),
    dev: Optional[Path] = typer.Option(None),
    test: Optional[Path] = typer.Option(None),
    out: Path = typer.Option(Path("bench_out"), help="Models and results."),
    encoder: Optional[str] = typer.Option(None, help="Teacher encoder (default: offline MiniLM)."),
    student_layers: int = typer.Option(3),
    kds: str = typer.Option("none,hinton,annealing", help="Comma-separated KD settings for the student (empty: teacher and plain only)."),
    epochs: Optional[int] = typer.Option(None, help="At most this many epochs (default: the trainer's step budget)."),
    batch_size: Optional[int] = typer.Option(None, help="Default: the trainer's."),
    learning_rate: Optional[float] = typer.Option(None, "--lr", help="Default: the trainer's."),
    max_train: Optional[int] = typer.Option(None, help="Use at most this many training examples."),
    seeds: str = typer.Option("0", help="Comma-separated training seeds: 0,1,2 gives mean ± std."),
    split_seed: Optional[int] = typer.Option(None, help="Seed of the 80/10/10 split of one data file (default: the first training seed)."),
    threads: Optional[int] = typer.Option(None, help="torch CPU threads (default: all cores)."),
    plain: bool = typer.Option(True, help="Also train the plain fine-tune of bench/plain_finetune.py: the reference to beat."),
    teacher: bool = typer.Option(True, help="Train the teacher and students (--no-teacher: the plain fine-tune alone)."),
    plain_epochs: int = typer.Option(15, help="Epochs of the plain fine-tune."),
    spacy_check: bool = typer.Option(True, help="Time the best KD student in spaCy (--no-spacy-check: skip it, e.g. on a CPU shared with other runs)."),
    set_: list[str] = typer.Option([], "--set", "-s", help="Any training argument as key=value (trainers/args.py), e.g. -s head_learning_rate=1e-4."),
) -> None:
    """Train the teacher and students, evaluate on the gold test split, print one table per seed and the mean over seeds."""
    from distill_ner.trainers.args import TrainingArgs, parse_settings

    seed_list = [int(s) for s in seeds.split(",") if s.strip()]
    splits = load_data(data, train, dev, test, seed_list[0] if split_seed is None else split_seed)
    if max_train:
        splits["train"] = splits["train"][:max_train]
    print(f"data: train {len(splits['train'])}, dev {len(splits['dev'])}, test {len(splits['test'])}")

    given = {"epochs": epochs, "batch_size": batch_size, "learning_rate": learning_rate}
    given.update(parse_settings(set_))
    kd_list = [k.strip() for k in kds.split(",") if k.strip()]
    per_seed, reports = [], []
    for seed in seed_list:
        args = TrainingArgs(encoder=encoder, student_layers=student_layers, seed=seed, threads=threads, **{k: v for k, v in given.items() if v is not None})
        rows = train_and_score(splits, out / f"seed{seed}", args, kd_list, plain, plain_epochs, with_teacher=teacher)
        per_seed.append(rows)
        labels = sorted({l for r in rows for l in r["per_label"]})
        reports.append(f"### seed {seed}\n\n" + table(rows, labels) + "\n\n" + "\n".join(f"- {c}" for c in checks(rows, out / f"seed{seed}", splits, spacy_check) + versus_llm(rows, splits)))
        print(reports[-1], flush=True)
    summary = f"### mean ± std over seeds {seeds}\n\n" + seed_summary(per_seed)
    report = "\n\n".join([*reports, summary]) + "\n"
    print(summary)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench.md").write_text(report, encoding="utf-8")
    (out / "bench.json").write_text(json.dumps(per_seed, indent=1) + "\n", encoding="utf-8")


def checks(rows: list[dict], out: Path, splits: dict[str, list], spacy_check: bool = True) -> list[str]:
    """The student-versus-teacher checks of issues 4 and 15 for one seed's rows."""
    students = [r for r in rows if r["name"].startswith("student")]
    if not students:
        return []
    teacher = rows[0]
    with_kd = [r for r in students if not r["name"].endswith("KD none")]  # the check is on a KD student
    best = max(with_kd or students, key=lambda r: r["f1"])
    keep = best["f1"] / max(teacher["f1"], 1e-9)
    faster = best["sentences_per_second"] / max(teacher["sentences_per_second"], 1e-9)
    lines = [
        f"best KD student ({best['name']}) keeps {keep * 100:.1f}% of the teacher's strict span F1 (target >= 97%): {'PASS' if keep >= 0.97 else 'FAIL'}",
        f"student speed / teacher speed = {faster:.2f}x (target >= 1.8x): {'PASS' if faster >= 1.8 else 'FAIL'}",
        f"teacher parameters {teacher['parameters'] / 1e6:.1f}M (target <= 25M); training seconds, all models: {sum(r['train_seconds'] for r in rows):.0f}",
    ]
    if spacy_check:
        spacy_sps = spacy_speed(Path(best["path"]), out / "student-spacy", [e.text for e in splits["test"]])
        lines.append(f"student in spaCy: {spacy_sps:.0f} sentences/s on CPU (target >= 200): {'PASS' if spacy_sps >= 200 else 'FAIL'}")
    return lines


if __name__ == "__main__":
    app()
