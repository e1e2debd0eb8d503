"""`distill prune` and `distill sweep` (registered in flows/cli.py)."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console

from data.errors import DistillError
from data.prune import STEP_HELP
from trainers.args import default

app = typer.Typer()
console = Console()
SCORE_METHODS = ("teacher_loss", "el2n", "disagreement")


def _csv(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _load_scores(path: Path | None) -> dict[str, dict[str, float]]:
    if path is None:
        return {}
    if not path.exists():
        raise DistillError(f"{path}: scores file not found")
    try:
        scores = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise DistillError(f"{path}: not valid JSON ({err.msg}, line {err.lineno})") from None
    if not isinstance(scores, dict) or not all(isinstance(v, dict) for v in scores.values()):
        raise DistillError(f'{path}: expected {{"method": {{"example id": score}}}}')
    return scores


@app.command()
def prune(
    verified: Path = typer.Argument(..., help="Verified splits (a DatasetDict folder with train/dev/test)."),
    out: Path = typer.Option(..., help="Folder for the pruned DatasetDict, removed.jsonl and report.json."),
    step: list[str] = typer.Option(["dedup", "rejected"], help=f"Pruning steps in order (repeat the option): {STEP_HELP}."),
    teacher: Path | None = typer.Option(None, help="Teacher model folder, to compute the scores that score-based steps need."),
    scores: Path | None = typer.Option(None, help='Precomputed scores: JSON {"method": {"example id": score}}.'),
    seed: int = typer.Option(0, help="Seed for random choices."),
) -> None:
    """Prune the train split in recorded steps; dev and test are never touched.

    Steps: dedup[:0.9], rejected[:pending], confidence:0.6, balance[:3],
    fraction:0.5[:random|teacher_loss|el2n|disagreement[:hard|easy]].
    """
    from data.formats import load_splits
    from data.prune import parse_step, prune_splits, save_pruned

    splits = load_splits(verified)
    known = _load_scores(scores)
    needed = {s.split(":")[2] for s in step if s.startswith("fraction:") and len(s.split(":")) > 2} & set(SCORE_METHODS)
    missing = sorted(needed - known.keys())
    if missing:
        if teacher is None:
            raise DistillError(f"steps by {', '.join(missing)} need scores: pass --teacher or --scores")
        from trainers.scores import compute_scores

        for method in missing:  # scored on the whole train split; steps before may remove some
            known[method] = compute_scores(method, teacher, splits.get("train", []), dev=splits.get("dev"))
    result = prune_splits(splits, [parse_step(s, known, seed) for s in step])
    save_pruned(result, out)
    if needed:
        (out / "scores.json").write_text(json.dumps({m: known[m] for m in sorted(needed)}) + "\n", encoding="utf-8")
    for row in result.steps:
        console.print(f"{row['step']:>12}: {row['before']} -> {row['after']} (removed {row['removed']})")
    console.print(", ".join(f"{name}: {len(items)}" for name, items in result.splits.items()) + f" -> {out} (reasons in {out / 'removed.jsonl'})")


@app.command()
def sweep(
    verified: Path = typer.Argument(..., help="Verified splits (a DatasetDict folder with train/dev/test)."),
    teacher: Path = typer.Option(..., help="Teacher model folder, trained on all of the train split."),
    out: Path = typer.Option(..., help="Folder for sweep.json, sweep.md, the plots and the students."),
    fractions: str = typer.Option("1.0,0.7,0.5,0.3,0.1", help="Kept fractions, comma-separated."),
    methods: str = typer.Option("random,teacher_loss,el2n,disagreement", help="Pruning methods, comma-separated."),
    kd: str = typer.Option("none,hinton", help="KD settings, comma-separated: none, hinton, annealing."),
    alpha: float | None = typer.Option(None, help="A fixed KD weight for every fraction (default: the schedule)."),
    alpha_schedule: str | None = typer.Option(None, help="fraction:alpha anchors, e.g. 0.1:0.9,1.0:0.5 (default 0.1:0.95,1.0:0.5)."),
    student_layers: int = typer.Option(3, help="Teacher layers kept for the student."),
    epochs: int = typer.Option(default("epochs"), help="At most this many epochs (early stopping on dev)."),
    batch_size: int = typer.Option(16),
    learning_rate: float = typer.Option(1e-4, "--lr"),
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
    for option, given, known in (("--kd", _csv(kd), ("none", "hinton", "annealing")), ("--methods", _csv(methods), ("random", *SCORE_METHODS))):
        unknown = [v for v in given if v not in known]
        if unknown or not given:
            raise DistillError(f"{option} {','.join(given)!r}: use {', '.join(known)}")

    from data.formats import load_splits
    from trainers.modeling import read_meta
    from trainers.sweep import parse_alpha_schedule, run_sweep, sweep_table

    teacher_args = read_meta(teacher).get("args", {})
    args = {**teacher_args, "student_layers": student_layers, "epochs": epochs, "batch_size": batch_size,
            "learning_rate": learning_rate, "device": device, "alpha": alpha}
    schedule = parse_alpha_schedule(alpha_schedule) if alpha_schedule else None
    rows = run_sweep(load_splits(verified), teacher, fraction_list, _csv(methods), _csv(kd), args, out, seeds=seed_list, alpha_schedule=schedule)
    console.print(sweep_table(rows), markup=False)
    console.print(f"-> {out / 'sweep.md'}, {out / 'sweep_f1_vs_fraction.png'}, {out / 'sweep_pareto.png'}")
