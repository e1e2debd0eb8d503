"""Pruning sweep: students over pruning fractions x methods x KD settings, with a table and plots.

The KD weight follows the pruning fraction (`kd_alpha_for_fraction`), after "Distilling the
Knowledge in Data Pruning" (Ben-Baruch et al., ICML 2025): the smaller the kept fraction, the
more the student should learn from the teacher's soft targets (the teacher saw all the data),
and the less from the hard labels of the few examples that are left.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np

from data.errors import DistillError
from data.report import markdown_table

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

# (kept fraction, KD weight alpha) anchors, linearly interpolated and flat outside:
# alpha = 1 - fraction / 2 between 10% (alpha 0.95) and all the data (alpha 0.5).
DEFAULT_ALPHA_SCHEDULE: tuple[tuple[float, float], ...] = ((0.1, 0.95), (1.0, 0.5))
TABLE_COLUMNS = ["fraction", "method", "kd", "alpha", "n_train", "f1", "precision", "recall", "parameters", "train_seconds"]


def kd_alpha_for_fraction(fraction: float, schedule: Sequence[tuple[float, float]] | None = None) -> float:
    """The weight of the KD loss (the hard-label loss gets `1 - alpha`) for a kept fraction.

    Default schedule: 0.5 on all the data, rising linearly to 0.95 at 10% and below
    (0.75 at 50%). Pass `schedule` as `(fraction, alpha)` anchors to override it.
    """
    if not 0 < fraction <= 1:
        raise DistillError(f"pruning fraction must be in (0, 1], got {fraction}")
    anchors = sorted(schedule or DEFAULT_ALPHA_SCHEDULE)
    if not anchors or any(not 0 <= a <= 1 for _, a in anchors):
        raise DistillError(f"KD alpha schedule {list(anchors)}: needs at least one (fraction, alpha) pair with alpha in [0, 1]")
    xs, ys = zip(*anchors)
    return round(float(np.interp(fraction, xs, ys)), 4)


def parse_alpha_schedule(text: str) -> list[tuple[float, float]]:
    """`"0.1:0.9,1.0:0.5"` -> [(0.1, 0.9), (1.0, 0.5)] (for the CLI)."""
    try:
        pairs = [tuple(float(x) for x in part.split(":")) for part in text.split(",") if part.strip()]
    except ValueError:
        raise DistillError(f"KD alpha schedule {text!r}: use fraction:alpha pairs, e.g. 0.1:0.9,1.0:0.5") from None
    if not pairs or any(len(p) != 2 for p in pairs):
        raise DistillError(f"KD alpha schedule {text!r}: use fraction:alpha pairs, e.g. 0.1:0.9,1.0:0.5")
    return pairs  # type: ignore[return-value]


# --- table and plots ----------------------------------------------------------------------
def write_sweep_outputs(rows: list[dict[str, Any]], out_dir: str | Path) -> dict[str, Path]:
    """Write sweep.json, sweep.md, sweep_f1_vs_fraction.png and sweep_pareto.png into `out_dir`."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "json": out_dir / "sweep.json",
        "md": out_dir / "sweep.md",
        "f1_vs_fraction": plot_f1_vs_fraction(rows, out_dir / "sweep_f1_vs_fraction.png"),
        "pareto": plot_pareto(rows, out_dir / "sweep_pareto.png"),
    }
    paths["json"].write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")
    paths["md"].write_text(sweep_markdown(rows), encoding="utf-8")
    return paths


def sweep_markdown(rows: list[dict[str, Any]]) -> str:
    """The sweep as a Markdown section body: the table, the two plots and the headline check."""
    ordered = sorted(rows, key=lambda r: (-r["fraction"], r["method"], r["kd"]))
    parts = [markdown_table(ordered, TABLE_COLUMNS)]
    verdict = half_data_verdict(rows)
    if verdict:
        parts.append(verdict + "\n")
    parts.append("![F1 against kept fraction](sweep_f1_vs_fraction.png)\n\n![F1 against parameters and training time](sweep_pareto.png)\n")
    return "\n".join(parts)


def half_data_verdict(rows: list[dict[str, Any]]) -> str:
    """Whether a student on 50% of the data with KD reaches the F1 of the full-data student without KD."""
    full = [r["f1"] for r in rows if r["fraction"] == 1.0 and r["kd"] == "none"]
    half = [r for r in rows if r["fraction"] == 0.5 and r["kd"] != "none"]
    if not full or not half:
        return ""
    best = max(half, key=lambda r: r["f1"])
    ok = best["f1"] >= full[0]
    return (
        f"**50% with KD vs 100% without:** best 50% student ({best['method']}, {best['kd']}, alpha {best['alpha']}) "
        f"F1 {best['f1']:.3f} {'>=' if ok else '<'} {full[0]:.3f} ({'reached' if ok else 'not reached'})."
    )


def _series(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Rows grouped by `method / kd`; the full-data point (method `all`) joins every method's line."""
    full = [r for r in rows if r["method"] == "all"]
    methods = sorted({r["method"] for r in rows if r["method"] != "all"}) or ["all"]
    series: dict[str, list[dict[str, Any]]] = {}
    for method in methods:
        for kd in sorted({r["kd"] for r in rows}):
            points = [r for r in rows if r["kd"] == kd and (r["method"] == method or r in full)]
            if points:
                series[f"{method} / KD {kd}"] = sorted(points, key=lambda r: r["fraction"])
    return series


def plot_f1_vs_fraction(rows: list[dict[str, Any]], path: Path) -> Path:
    """F1 against kept fraction, one line per pruning method and KD setting."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, points in _series(rows).items():
        style = "--" if label.endswith("KD none") else "-"
        ax.plot([p["fraction"] for p in points], [p["f1"] for p in points], style, marker="o", label=label)
    ax.set_xlabel("fraction of the training set kept")
    ax.set_ylabel("entity micro F1")
    ax.set_title("Student F1 against pruning fraction")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _save(fig, path)


def plot_pareto(rows: list[dict[str, Any]], path: Path) -> Path:
    """Two panels: F1 against parameters and F1 against training seconds; the Pareto front is drawn."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2), sharey=True)
    for ax, key, xlabel in ((axes[0], "parameters", "parameters (millions)"), (axes[1], "train_seconds", "training seconds")):
        scale = 1e6 if key == "parameters" else 1.0
        for label, points in _series(rows).items():
            ax.scatter([p[key] / scale for p in points], [p["f1"] for p in points], s=25, label=label)
        front = pareto_front(rows, key)
        ax.plot([p[key] / scale for p in front], [p["f1"] for p in front], "k:", linewidth=1, label="Pareto front")
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("entity micro F1")
    axes[1].legend(fontsize=7)
    fig.suptitle("F1 against cost")
    return _save(fig, path)


def pareto_front(rows: list[dict[str, Any]], cost: str) -> list[dict[str, Any]]:
    """Rows not beaten by another row with lower-or-equal `cost` and higher F1, by increasing cost."""
    front, best = [], -1.0
    for row in sorted(rows, key=lambda r: (r[cost], -r["f1"])):
        if row["f1"] > best:
            front.append(row)
            best = row["f1"]
    return front


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
