"""Merge several `bench/sweep.py` runs into one table and plots, mean ± std over their seeds.

    .venv/bin/python bench/sweep_merge.py OUT RUN_DIR [RUN_DIR ...]

Each RUN_DIR holds `seed-<s>/sweep.json` (one single-seed `bench/sweep.py ... --seeds s --out
RUN_DIR/seed-<s>` each), e.g. one run per KD setting that needs its own arguments (extra
teachers, `-s llm_teacher=true`), all on the same data, split and teacher. Rows of the same
seed are pooled (the teacher's row once), then averaged over seeds (`trainers.sweep.mean_over_seeds`).
Writes OUT/sweep.md, sweep.json and the sweep's plots, plus OUT/sweep_cells.png: strict span F1
per cell with its standard deviation over seeds. Prints the Markdown table.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import typer  # noqa: E402

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


def pooled_by_seed(run_dirs: list[Path]) -> dict[str, list[dict]]:
    """seed -> the rows of every run for that seed, each (fraction, method, kd) cell once."""
    per_seed: dict[str, dict[tuple, dict]] = {}
    for run in run_dirs:
        for path in sorted(run.glob("seed-*/sweep.json")):
            cells = per_seed.setdefault(path.parent.name, {})
            for row in json.loads(path.read_text(encoding="utf-8")):
                cells.setdefault((row["fraction"], row["method"], row["kd"]), row)
    return {seed: list(cells.values()) for seed, cells in sorted(per_seed.items())}


def plot_cells(rows: list, path: Path) -> Path:
    """Horizontal bars: strict span F1 per cell (percent) with the standard deviation over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{r.kd} ({r.fraction:.0%})" if r.method != "teacher" else "teacher (100%)" for r in rows]
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(rows) + 1.2))
    ax.barh(labels, [r.f1 * 100 for r in rows], xerr=[(r.f1_std or 0) * 100 for r in rows], color="tab:blue", alpha=0.7, capsize=3)
    low = min(r.f1 - (r.f1_std or 0) for r in rows) * 100
    ax.set_xlim(max(0.0, low - 2), 100)
    ax.invert_yaxis()
    ax.set_xlabel("strict span F1 (%), mean ± std over seeds")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


@app.command()
def main(out: Path = typer.Argument(..., help="Where the merged table and plots go."),
         run_dirs: list[Path] = typer.Argument(..., help="bench/sweep.py out folders, each with seed-<s>/sweep.json.")) -> None:
    """Pool the runs per seed, average over seeds, write and print the table."""
    from distill_ner.trainers.sweep import mean_over_seeds, sweep_table, write_sweep_outputs

    per_seed = pooled_by_seed(run_dirs)
    if not per_seed:
        raise SystemExit(f"no seed-*/sweep.json under {', '.join(map(str, run_dirs))}")
    rows = mean_over_seeds(list(per_seed.values()))
    write_sweep_outputs(rows, out)
    plot_cells(rows, out / "sweep_cells.png")
    print(f"seeds: {', '.join(per_seed)} ({', '.join(f'{s}: {len(r)} cells' for s, r in per_seed.items())})")
    print(sweep_table(rows))


if __name__ == "__main__":
    app()
