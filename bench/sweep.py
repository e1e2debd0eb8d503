"""Benchmark: the pruning sweep on a verified set, and the 50%-with-KD check of issue 7.

    .venv/bin/python bench/sweep.py runs/NAME                 # a run folder (verified/)
    .venv/bin/python bench/sweep.py verified/                 # a DatasetDict folder
    .venv/bin/python bench/sweep.py data.jsonl                # one file: split 70/15/15 (seeded)
    .venv/bin/python bench/sweep.py --demo 400                # mock LLM data, reviewed offline from its truth
    .venv/bin/python bench/sweep.py --demo 1000 --seeds 0,1,2 # each cell: mean and std of F1 over 3 seeds

The KD comparison of issue 16, one run per seed s (same split and teacher; pooled afterwards by
bench/sweep_merge.py), with the teachers of bench/train.py --split-seed 0 --seeds 0,1,2:

    sweep.py data.jsonl --holdout 0.1 --teacher T0 --seeds s --fractions 1.0 --kds none --out f1/seed-s
    sweep.py data.jsonl --holdout 0.1 --teacher T0 --seeds s --fractions 0.5 --kds none,hinton,hinton+transfer,hinton_hidden --out f05/seed-s
    sweep.py data.jsonl --holdout 0.1 --teacher T0 --seeds s --fractions 0.5 --kds hinton+transfer --extra-teachers T1,T2 --out teachers/seed-s
    sweep.py data.jsonl --holdout 0.1 --teacher T0 --seeds s --fractions 0.5 --kds hinton+transfer -s llm_teacher=true --out llm/seed-s
    sweep_merge.py merged f1 f05 teachers llm

Trains a teacher on all the training data (or takes --teacher), then students over the given
fractions x methods x KD settings, prints the sweep table and checks the target: the student on
50% of the data with KD reaches at least the F1 of the student on 100% without KD. Everything
(models, sweep.json, sweep.md, plots) goes to OUT.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import typer  # noqa: E402

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


def demo_splits(n: int, out: Path, seed: int) -> dict[str, list]:
    """Mock LLM examples (with injected errors), reviewed offline against the mock's truth.

    Like a careful reviewer: texts the truth marks unusable or factually wrong are rejected, the
    rest get the true entities and relations, with `review.diff` recording what changed.
    """
    from distill_ner.annotators.label_studio import review_diff
    from distill_ner.annotators.truth import load_truth_records
    from distill_ner.data.example import Example, Review
    from distill_ner.data.formats import read_jsonl, split_examples

    gen = out / "generated"
    if not (gen / "generated.jsonl").exists():
        subprocess.run([str(Path(sys.executable).parent / "distill"), "generate", "--mock", "--n", str(n), "--out", str(gen), "--seed", str(seed)],
                       check=True, stdout=subprocess.DEVNULL)
    truth = load_truth_records(gen / "mock_truth.jsonl")
    verified = []
    for llm in read_jsonl(gen / "generated.jsonl"):
        record = truth.get(llm.text)
        if record is None or {"unusable", "factually_wrong"} & set(record.errors):
            continue
        diff = review_diff(llm, record.example.entities, record.example.relations)
        status = "corrected" if diff.changed else "accepted"
        verified.append(Example(id=llm.id, text=llm.text, entities=record.example.entities, relations=record.example.relations,
                                source=llm.source, review=Review(status=status, annotator="bench-truth", diff=diff if status == "corrected" else None)))
    return split_examples(verified, dev=0.15, test=0.15, seed=seed)


def load_splits_any(data: Path, seed: int, holdout: float = 0.15) -> dict[str, list]:
    from distill_ner.data.example import usable
    from distill_ner.data.formats import load_splits, read_examples, split_examples

    if (data / "verified" / "dataset_dict.json").exists():
        return load_splits(data / "verified")
    if (data / "dataset_dict.json").exists():
        return load_splits(data)
    return split_examples(usable(read_examples(data)), dev=holdout, test=holdout, seed=seed)


@app.command()
def main(
    data: Optional[Path] = typer.Argument(None, help="Run folder, DatasetDict folder, or one JSONL/CoNLL file."),
    demo: int = typer.Option(0, help="Instead of DATA: this many mock LLM examples, reviewed offline from the mock's truth."),
    out: Path = typer.Option(Path("bench_out/sweep"), help="Models and results."),
    teacher: Optional[Path] = typer.Option(None, help="A trained teacher (default: train one on all the train split)."),
    encoder: Optional[str] = typer.Option(None, help="Teacher encoder (default: offline MiniLM)."),
    fractions: str = typer.Option("1.0,0.5", help="Kept fractions."),
    methods: str = typer.Option("random", help="Pruning methods: random, teacher_loss, el2n, disagreement."),
    kds: str = typer.Option("none,hinton", help="KD settings."),
    alpha: Optional[float] = typer.Option(None, help="One KD weight for every fraction (default: the schedule, 0.5 at 100%)."),
    student_layers: int = typer.Option(3),
    teacher_epochs: Optional[int] = typer.Option(None, help="At most this many epochs (default: the trainer's step budget; early stopping on dev)."),
    epochs: Optional[int] = typer.Option(None, help="Students: at most this many epochs (default: the trainer's step budget)."),
    batch_size: Optional[int] = typer.Option(None, help="Default: the trainer's."),
    threads: Optional[int] = typer.Option(None, help="torch CPU threads (default: all cores)."),
    seed: int = typer.Option(0, help="Seed of the demo data, the split and the teacher."),
    seeds: Optional[str] = typer.Option(None, help="Student seeds, comma-separated (default: --seed); several give mean and std of F1."),
    extra_teachers: str = typer.Option("", help="More trained teachers, comma-separated (e.g. other seeds' bench/train.py teachers): KD students learn their combination."),
    set_: list[str] = typer.Option([], "--set", "-s", help="Any training argument as key=value (trainers/args.py), e.g. -s llm_teacher=true -s teacher_weighting=gold_loss."),
    holdout: float = typer.Option(0.15, help="Share of dev and of test when DATA is one file (0.1: the split of bench/train.py, whose teacher --teacher can then reuse)."),
) -> None:
    from distill_ner.trainers.args import parse_settings
    from distill_ner.trainers.sweep import half_data_verdict, run_sweep, sweep_table
    from distill_ner.trainers.trainer import train_teacher

    start = time.perf_counter()
    if demo:
        splits = demo_splits(demo, out, seed)
    elif data is not None:
        splits = load_splits_any(data, seed, holdout)
    else:
        raise SystemExit("give DATA (run folder, DatasetDict or file) or --demo N")
    print(", ".join(f"{k}: {len(v)}" for k, v in splits.items()))
    given = {"encoder": encoder, "batch_size": batch_size, "threads": threads}
    args = {**{k: v for k, v in given.items() if v is not None}, "epochs": teacher_epochs, "seed": seed, "progress": False, "student_layers": student_layers}
    if teacher is None:
        teacher = out / "teacher"
        if not (teacher / "model.json").exists():
            train_teacher(splits["train"], splits["dev"], teacher, args)
    settings = parse_settings(set_)
    rows = run_sweep(splits, teacher, [float(f) for f in fractions.split(",")], methods.split(","), kds.split(","), {**args, **settings, "epochs": epochs, "alpha": alpha}, out,
                     seeds=[int(s) for s in (seeds or str(seed)).split(",")], extra_teachers=[t for t in extra_teachers.split(",") if t])
    print(sweep_table(rows))
    print(half_data_verdict(rows) or "(no 50% KD row and 100% no-KD row to compare)")
    print(f"total {time.perf_counter() - start:.0f} s -> {out}/sweep.md")


if __name__ == "__main__":
    app()
