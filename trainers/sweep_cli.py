"""`distill sweep` (registered in flows/cli.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from distill_ner.data.errors import DistillError
from distill_ner.trainers.args import default
from distill_ner.trainers.kd import kd_names, parse_kd_setting

app = typer.Typer()
console = Console()


def _csv(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


@app.command()
def sweep(
    verified: Path = typer.Argument(..., help="Verified splits (a DatasetDict folder with train/dev/test)."),
    teacher: Path = typer.Option(..., help="Teacher model folder, trained on all of the train split."),
    out: Path = typer.Option(..., help="Folder for sweep.json, sweep.md, the plots and the students."),
    fractions: str = typer.Option("1.0,0.7,0.5,0.3,0.1", help="Kept fractions, comma-separated."),
    methods: str = typer.Option("random,teacher_loss,el2n,disagreement", help="Pruning methods, comma-separated."),
    kd: str = typer.Option("none,hinton", help=f"KD methods, comma-separated: {', '.join(kd_names())}; METHOD+transfer adds the pruned-away examples as a transfer set."),
    alpha: float | None = typer.Option(None, help="A fixed KD weight for every fraction (default: the schedule)."),
    alpha_schedule: str | None = typer.Option(None, help="fraction:alpha anchors, e.g. 0.1:0.9,1.0:0.5 (default 0.1:0.95,1.0:0.5)."),
    student_layers: int = typer.Option(default("student_layers"), help="Teacher layers kept for the student."),
    epochs: Optional[int] = typer.Option(None, help="At most this many epochs (early stopping on dev); default: as the teacher was trained."),
    batch_size: Optional[int] = typer.Option(None, help="Default: the teacher's."),
    learning_rate: Optional[float] = typer.Option(None, "--lr", help="Default: the teacher's."),
    seeds: str = typer.Option("0", help="Seeds, comma-separated; each repeats the grid (pruning and training), and the table shows mean and std."),
    device: str = typer.Option("auto", help="auto | cpu | cuda"),
) -> None:
    """Train students over pruning fractions x methods x KD on/off; write the table and plots."""
    try:  # cheap checks first: torch takes seconds to import
        fraction_list = [float(f) for f in _csv(fractions)]
        seed_list = [int(s) for s in _csv(seeds)]
    except ValueError:
        raise DistillError(f"--fractions {fractions!r} / --seeds {seeds!r}: use numbers such as 1.0,0.5,0.1 and 0,1,2") from None
    if not fraction_list or not all(0 < f <= 1 for f in fraction_list):
        raise DistillError(f"--fractions {fractions!r}: each kept fraction is above 0 and at most 1")
    if not _csv(kd):
        raise DistillError(f"--kd {kd!r}: use {', '.join(kd_names())}")
    for name in _csv(kd):
        try:
            parse_kd_setting(name)
        except DistillError as err:
            raise DistillError(f"--kd {kd!r}: {err}") from None

    from distill_ner.data.formats import load_splits
    from distill_ner.trainers.inference import read_meta
    from distill_ner.trainers.kd.alpha import parse_alpha_schedule
    from distill_ner.trainers.sweep import run_sweep, sweep_table

    teacher_args = read_meta(teacher).args
    own = {"epochs": epochs, "batch_size": batch_size, "learning_rate": learning_rate}  # None: the teacher's, as a run config's student section
    args = {**teacher_args, **{k: v for k, v in own.items() if v is not None}, "student_layers": student_layers, "device": device, "alpha": alpha}
    schedule = parse_alpha_schedule(alpha_schedule) if alpha_schedule else None
    rows = run_sweep(load_splits(verified), teacher, fraction_list, _csv(methods), _csv(kd), args, out, seeds=seed_list, alpha_schedule=schedule)
    console.print(sweep_table(rows), markup=False)
    console.print(f"-> {out / 'sweep.md'}, {out / 'sweep_f1_vs_fraction.png'}, {out / 'sweep_pareto.png'}")
