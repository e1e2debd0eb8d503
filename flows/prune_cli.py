"""`distill prune` (registered in flows/cli.py): pruning steps from data/, hardness scores from trainers/."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console

from distill_ner.data.errors import DistillError
from distill_ner.data.prune import STEP_HELP

app = typer.Typer()
console = Console()


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


def score_methods(steps: list[str]) -> set[str]:
    """The score methods that `fraction:F:method` steps rank by (not `random`)."""
    return {s.split(":")[2] for s in steps if s.startswith("fraction:") and len(s.split(":")) > 2} - {"random"}


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
    from distill_ner.data.formats import load_splits
    from distill_ner.data.prune import parse_step, prune_splits, save_pruned

    splits = load_splits(verified)
    known = _load_scores(scores)
    needed = score_methods(step)
    missing = sorted(needed - known.keys())
    if missing:
        if teacher is None:
            raise DistillError(f"steps by {', '.join(missing)} need scores: pass --teacher or --scores")
        from distill_ner.trainers.scores import compute_scores

        for method in missing:  # scored on the whole train split; steps before may remove some
            known[method] = compute_scores(method, teacher, splits.get("train", []), dev=splits.get("dev"))
    result = prune_splits(splits, [parse_step(s, known, seed) for s in step])
    save_pruned(result, out)
    if needed:
        (out / "scores.json").write_text(json.dumps({m: known[m] for m in sorted(needed)}) + "\n", encoding="utf-8")
    for row in result.steps:
        console.print(f"{row['step']:>12}: {row['before']} -> {row['after']} (removed {row['removed']})")
    console.print(", ".join(f"{name}: {len(items)}" for name, items in result.splits.items()) + f" -> {out} (reasons in {out / 'removed.jsonl'})")
