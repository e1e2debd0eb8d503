"""Pruning sweep: students over pruning fractions x methods x KD settings, with a table and plots.

The KD weight follows the pruning fraction (`trainers.kd.alpha.kd_alpha_for_fraction`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

import matplotlib
import numpy as np

from distill_ner.data.errors import DistillError
from distill_ner.data.example import Example
from distill_ner.data.tables import markdown_table
from distill_ner.trainers.kd import parse_kd_setting
from distill_ner.trainers.kd.alpha import kd_alpha_for_fraction

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

TABLE_COLUMNS = ["fraction", "method", "kd", "alpha", "n_train", "f1", "overlap_f1", "token_macro_f1", "precision", "recall", "relation_f1", "parameters", "train_seconds"]


class SweepRow(BaseModel):
    """One cell of the sweep (or the teacher's reference row): a student's scores on the gold split.

    With several seeds, scores are means over the seeds and `f1_std` / `seeds` say how spread.
    """

    fraction: float
    method: str = Field(description="pruning method, `all` for the full data, `teacher` for the reference row")
    kd: str
    alpha: float | None = None
    n_train: int | None = None
    f1: float = Field(description="strict span F1")
    overlap_f1: float | None = None
    token_macro_f1: float | None = None
    precision: float
    recall: float
    relation_f1: float | None = None
    parameters: int
    train_seconds: float = 0.0
    model_dir: str
    f1_std: float | None = None
    seeds: int | None = None


Rows = Sequence[SweepRow | dict[str, Any]]


def as_rows(rows: Rows) -> list[SweepRow]:
    """Sweep rows from rows or their JSON (`sweep.json`)."""
    return [SweepRow.model_validate(r) for r in rows]


# --- running the sweep ------------------------------------------------------------------
def run_sweep(
    splits: dict[str, list[Example]],
    teacher_dir: str | Path,
    fractions: Sequence[float],
    methods: Sequence[str],
    kd_settings: Sequence[str],
    args: Any,
    out_dir: str | Path,
    seeds: Sequence[int] = (0,),
    alpha_schedule: Sequence[tuple[float, float]] | None = None,
    scores: dict[str, dict[str, float]] | None = None,
    extra_teachers: Sequence[str | Path] = (),
) -> list[SweepRow]:
    """Train one student per (fraction, method, KD setting), evaluate it, and write the outputs.

    The train split is pruned with `ToFraction` (fraction 1.0 is trained once, as method `all`);
    dev and test are never pruned. Students are scored on test (dev when there is no test); the
    teacher is a reference row. KD alpha: `args.alpha` when set, else `kd_alpha_for_fraction`
    (with `alpha_schedule` if given). Each seed repeats the grid with that seed for pruning and
    training; with several seeds each repeat goes to `out_dir/seed-<s>/` and the table holds the
    mean over seeds with `f1_std` (see `mean_over_seeds`). Models go to `models/<name>/`, removed
    examples to `pruned/<name>.removed.jsonl`; a finished model is reused (trainers/pipeline.py) when rerun with the
    same inputs. `extra_teachers`: more trained teachers whose logits KD combines with the teacher's
    (`args.teacher_weighting`); the rows' KD column then says how many. Returns the table rows
    (also in `out_dir/sweep.json`).
    """
    from distill_ner.data.prune import DropRejected, prune_splits
    from distill_ner.trainers.args import TrainingArgs
    from distill_ner.trainers.scores import compute_scores

    out_dir = Path(out_dir)
    args = TrainingArgs.from_any(args)
    _check_grid(fractions, methods, kd_settings)
    if not seeds or len(set(seeds)) != len(seeds):
        raise DistillError(f"sweep: give one or more distinct seeds, got {list(seeds)}")
    base = prune_splits(splits, [DropRejected()]).splits
    eval_name = "test" if base.get("test") else "dev"
    if not base.get(eval_name):
        raise DistillError("sweep: no test or dev split to score the students on")
    scores = dict(scores or {})
    for method in sorted(set(methods) - {"random"} - scores.keys()):
        scores[method] = compute_scores(method, teacher_dir, base["train"], dev=base.get("dev"), early_dir=None)
    teacher = _teacher_row(teacher_dir, base[eval_name])
    per_seed = []
    for seed in seeds:
        seed_dir = out_dir if len(seeds) == 1 else out_dir / f"seed-{seed}"
        seed_args = args.model_copy(update={"seed": seed})
        per_seed.append([teacher, *_student_rows(base, eval_name, teacher_dir, fractions, methods, kd_settings, seed_args, seed_dir, seed, alpha_schedule, scores,
                                                   [str(t) for t in extra_teachers])])
        if len(seeds) > 1:
            write_sweep_outputs(per_seed[-1], seed_dir)
    rows = per_seed[0] if len(seeds) == 1 else mean_over_seeds(per_seed)
    write_sweep_outputs(rows, out_dir)
    return rows


def _student_rows(
    base: dict[str, list[Example]], eval_name: str, teacher_dir: str | Path, fractions: Sequence[float], methods: Sequence[str],
    kd_settings: Sequence[str], args: Any, out_dir: Path, seed: int, alpha_schedule: Sequence[tuple[float, float]] | None,
    scores: dict[str, dict[str, float]], extra_teachers: list[str],
) -> list[SweepRow]:
    """One repeat of the grid: prune with `seed`, train and score a student per cell."""
    from distill_ner.data.prune import ToFraction, prune_splits
    from distill_ner.data.example import llm_entities

    rows = []
    for fraction in sorted(set(fractions), reverse=True):
        for method in (["all"] if fraction >= 1 else list(methods)):
            train, removed = base["train"], []
            if fraction < 1:
                pruned = prune_splits(base, [ToFraction(fraction, method, scores.get(method), seed=seed)], drop_eval_overlap=False)
                train = pruned.splits["train"]
                removed = [r.example.model_copy(update={"entities": llm_entities(r.example)}) for r in pruned.removed]  # as the LLM annotated them
                _write_removed(pruned.removed, out_dir / "pruned" / f"{method}-{fraction:g}.removed.jsonl")
            for setting in kd_settings:
                kd, transfer = parse_kd_setting(setting)
                if transfer and fraction >= 1:
                    continue  # nothing was removed: the same student as without the transfer set
                alpha = args.alpha if args.alpha is not None else kd_alpha_for_fraction(fraction, alpha_schedule)
                run_args = args.model_copy(update={"kd": kd, "alpha": alpha if kd != "none" else 0.0})
                teachers = extra_teachers if kd != "none" else []
                rows.append(_student_row(base, train, eval_name, teacher_dir, out_dir / "models" / f"{method}-{fraction:g}-{setting}", run_args, fraction, method,
                                         transfer=removed if transfer else [], setting=setting_label(setting, run_args, teachers, removed if transfer else []), extra_teachers=teachers))
    return rows


def mean_over_seeds(per_seed: Sequence[Rows]) -> list[SweepRow]:
    """One row per (fraction, method, kd): scores and seconds averaged over the seeds' rows.

    Adds `f1_std` (sample standard deviation of F1 over seeds) and `seeds` (how many); the rest
    (alpha, n_train, parameters, model_dir) comes from the first seed.
    """
    groups: dict[tuple[Any, ...], list[SweepRow]] = {}
    for rows in per_seed:
        for row in as_rows(rows):
            groups.setdefault((row.fraction, row.method, row.kd), []).append(row)
    out = []
    for group in groups.values():
        means: dict[str, Any] = {}
        for key in ("f1", "overlap_f1", "token_macro_f1", "precision", "recall", "relation_f1", "train_seconds"):
            values = [getattr(r, key) for r in group if getattr(r, key) is not None]
            means[key] = round(float(np.mean(values)), 4) if values else None
        means["f1_std"] = round(float(np.std([r.f1 for r in group], ddof=1)), 4) if len(group) > 1 else 0.0
        means["seeds"] = len(group)
        out.append(group[0].model_copy(update=means))
    return out


def _check_grid(fractions: Sequence[float], methods: Sequence[str], kd_settings: Sequence[str]) -> None:
    from distill_ner.trainers.scores import SCORERS

    if not fractions or not methods or not kd_settings:
        raise DistillError("sweep: give at least one fraction, one method and one KD setting")
    for f in fractions:
        if not 0 < f <= 1:
            raise DistillError(f"sweep: fraction {f} is not in (0, 1]")
    for m in methods:
        if m != "random" and m not in SCORERS:
            raise DistillError(f"sweep: unknown pruning method {m!r} (known: random, {', '.join(SCORERS)})")
    for setting in kd_settings:
        parse_kd_setting(setting)


def _write_removed(removed: list[Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(r.to_json() + "\n" for r in removed), encoding="utf-8")


def _teacher_row(teacher_dir: str | Path, gold: list[Example]) -> SweepRow:
    from distill_ner.trainers.evaluate import evaluate

    m = evaluate(teacher_dir, gold, out_dir=None, measure_speed=False)
    return _row(1.0, "teacher", "teacher", None, _meta(teacher_dir).n_train, m, str(teacher_dir))


def setting_label(setting: str, args: Any, extra_teachers: Sequence[str], transfer: Sequence[Example] = ()) -> str:
    """The KD column of a row: the setting, with the number of teachers and the LLM teacher when used
    (`args.llm_teacher` and transfer texts that an LLM annotated)."""
    from distill_ner.trainers.kd.llm_teacher import llm_taught

    label = setting
    if extra_teachers:
        label += f" ({1 + len(extra_teachers)} teachers, {args.teacher_weighting})"
    if any(llm_taught(transfer, args.llm_teacher)):
        label += " + LLM teacher"
    return label


def _student_row(base: dict[str, list[Example]], train: list[Example], eval_name: str, teacher_dir: str | Path, model_dir: Path, args: Any, fraction: float, method: str,
                 transfer: list[Example], setting: str, extra_teachers: Sequence[str] = ()) -> SweepRow:
    from distill_ner.trainers.evaluate import evaluate
    from distill_ner.trainers.pipeline import student

    student(train, base["dev"], teacher_dir, model_dir, args, fraction=fraction, transfer=transfer, extra_teachers=extra_teachers, log=lambda _: None)
    m = evaluate(model_dir, base[eval_name], measure_speed=False)
    return _row(fraction, method, setting, _meta(model_dir).alpha if args.kd == "hinton" else None, len(train), m, str(model_dir))


def _meta(model_dir: str | Path) -> Any:
    from distill_ner.trainers.inference import read_meta

    return read_meta(model_dir)


def _row(fraction: float, method: str, kd: str, alpha: float | None, n_train: int | None, m: dict[str, Any], model_dir: str) -> SweepRow:
    """A row from `trainers.evaluate.evaluate`'s metrics."""
    return SweepRow(
        fraction=fraction, method=method, kd=kd, alpha=alpha, n_train=n_train, f1=m["f1"], overlap_f1=m.get("overlap_f1"),
        token_macro_f1=m.get("token_macro_f1"), precision=m["precision"], recall=m["recall"], relation_f1=m.get("relation_f1"),
        parameters=m["parameters"], train_seconds=m.get("train_seconds") or 0.0, model_dir=model_dir,
    )


# --- table and plots ----------------------------------------------------------------------
def write_sweep_outputs(rows: Rows, out_dir: str | Path) -> dict[str, Path]:
    """Write sweep.json, sweep.md, sweep_f1_vs_fraction.png and sweep_pareto.png into `out_dir`."""
    rows = as_rows(rows)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "json": out_dir / "sweep.json",
        "md": out_dir / "sweep.md",
        "f1_vs_fraction": plot_f1_vs_fraction(rows, out_dir / "sweep_f1_vs_fraction.png"),
        "pareto": plot_pareto(rows, out_dir / "sweep_pareto.png"),
    }
    paths["json"].write_text(json.dumps([r.model_dump(mode="json") for r in rows], indent=1) + "\n", encoding="utf-8")
    paths["md"].write_text(sweep_markdown(rows), encoding="utf-8")
    return paths


def table_columns(rows: Rows) -> list[str]:
    """`TABLE_COLUMNS`, with `f1_std` and `seeds` after `f1` when the rows are means over seeds."""
    if not any(r.seeds for r in as_rows(rows)):
        return TABLE_COLUMNS
    at = TABLE_COLUMNS.index("f1") + 1
    return [*TABLE_COLUMNS[:at], "f1_std", "seeds", *TABLE_COLUMNS[at:]]


def sweep_table(rows: Rows) -> str:
    """The sweep rows as a Markdown table, by falling fraction, then method and KD setting."""
    rows = sorted(as_rows(rows), key=lambda r: (-r.fraction, r.method, r.kd))
    return markdown_table([r.model_dump() for r in rows], table_columns(rows))


def sweep_markdown(rows: Rows, image_dir: str = "") -> str:
    """The sweep as a Markdown section body: the table, the two plots (under `image_dir`) and the headline check."""
    rows = as_rows(rows)
    parts = [sweep_table(rows)]
    verdict = half_data_verdict(rows)
    if verdict:
        parts.append(verdict + "\n")
    parts.append(f"![F1 against kept fraction]({image_dir}sweep_f1_vs_fraction.png)\n\n![F1 against parameters and training time]({image_dir}sweep_pareto.png)\n")
    return "\n".join(parts)


def half_data_verdict(rows: Rows) -> str:
    """Whether a student on 50% of the data with KD reaches the F1 of the full-data student without KD."""
    rows = as_rows(rows)
    full = [r for r in rows if r.fraction == 1.0 and r.kd == "none"]
    half = [r for r in rows if r.fraction == 0.5 and r.kd != "none"]
    if not full or not half:
        return ""
    best = max(half, key=lambda r: r.f1)
    ok = best.f1 >= full[0].f1
    spread = ""
    if (best.seeds or 1) > 1:
        spread = f"; means over {best.seeds} seeds, std {best.f1_std:.3f} and {full[0].f1_std:.3f}"
    return (
        f"**50% with KD vs 100% without:** best 50% student ({best.method}, {best.kd}, alpha {best.alpha}) "
        f"F1 {best.f1:.3f} {'>=' if ok else '<'} {full[0].f1:.3f} ({'reached' if ok else 'not reached'}{spread})."
    )


def _series(rows: list[SweepRow]) -> dict[str, list[SweepRow]]:
    """Student rows grouped by `method / kd`; the full-data point (method `all`) joins every method's line."""
    rows = [r for r in rows if r.method != "teacher"]
    full = [r for r in rows if r.method == "all"]
    methods = sorted({r.method for r in rows if r.method != "all"}) or ["all"]
    series: dict[str, list[SweepRow]] = {}
    for method in methods:
        for kd in sorted({r.kd for r in rows}):
            points = [r for r in rows if r.kd == kd and (r.method == method or r in full)]
            if points:
                series[f"{method} / KD {kd}"] = sorted(points, key=lambda r: r.fraction)
    return series


def plot_f1_vs_fraction(rows: Rows, path: Path) -> Path:
    """F1 against kept fraction, one line per pruning method and KD setting."""
    rows = as_rows(rows)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, points in _series(rows).items():
        style = "--" if label.endswith("KD none") else "-"
        errors = [p.f1_std or 0.0 for p in points]
        ax.errorbar([p.fraction for p in points], [p.f1 for p in points], yerr=errors if any(errors) else None,
                    fmt=style, marker="o", capsize=3, label=label)
    for teacher in (r for r in rows if r.method == "teacher"):
        ax.axhline(teacher.f1, color="grey", linestyle=":", label="teacher (all data)")
    ax.set_xlabel("fraction of the training set kept")
    ax.set_ylabel("entity micro F1")
    ax.set_title("Student F1 against pruning fraction")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _save(fig, path)


def plot_pareto(rows: Rows, path: Path) -> Path:
    """Two panels: F1 against parameters and F1 against training seconds; the Pareto front is drawn."""
    rows = as_rows(rows)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2), sharey=True)
    for ax, key, xlabel in ((axes[0], "parameters", "parameters (millions)"), (axes[1], "train_seconds", "training seconds")):
        scale = 1e6 if key == "parameters" else 1.0
        for label, points in _series(rows).items():
            ax.scatter([getattr(p, key) / scale for p in points], [p.f1 for p in points], s=25, label=label)
        for teacher in (r for r in rows if r.method == "teacher"):
            ax.scatter([getattr(teacher, key) / scale], [teacher.f1], marker="*", s=120, color="black", label="teacher")
        front = pareto_front(rows, key)
        ax.plot([getattr(p, key) / scale for p in front], [p.f1 for p in front], "k:", linewidth=1, label="Pareto front")
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("entity micro F1")
    axes[1].legend(fontsize=7)
    fig.suptitle("F1 against cost")
    return _save(fig, path)


def pareto_front(rows: Rows, cost: str) -> list[SweepRow]:
    """Rows not beaten by another row with lower-or-equal `cost` and higher F1, by increasing cost."""
    rows = as_rows(rows)
    front, best = [], -1.0
    for row in sorted(rows, key=lambda r: (getattr(r, cost), -r.f1)):
        if row.f1 > best:
            front.append(row)
            best = row.f1
    return front


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
