"""The run report: data-set numbers, LLM-vs-human table, teacher and student table, F1-vs-size plot.

Written as `report.md`, `report.html` and `f1_vs_params.png` in the run folder, from what the
stages left there; every section is optional, so a partial run still gets a partial report.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import matplotlib
from markdown_it import MarkdownIt

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from distill_ner.data.run_layout import RunLayout


def plot_f1_vs_params(models: list[dict[str, Any]], path: Path) -> Path:
    """Scatter of entity micro F1 against parameter count, one labelled point per model."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for m in models:
        ax.scatter(m["parameters"] / 1e6, m["f1"], s=40)
        ax.annotate(m["model"], (m["parameters"] / 1e6, m["f1"]), textcoords="offset points", xytext=(5, 5), fontsize=8)
    ax.set_xlabel("parameters (millions)")
    ax.set_ylabel("entity micro F1 (test)")
    ax.set_title("F1 against size")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_report(run_dir: Path, title: str, sections: dict[str, str], models: list[dict[str, Any]] | None = None) -> Path:
    """Write report.md (and report.html with the plot) from Markdown sections in order."""
    run_dir = Path(run_dir)
    parts = [f"# {title}\n"]
    for heading, body in sections.items():
        parts.append(f"## {heading}\n\n{body.strip()}\n")
    if models:
        plot = plot_f1_vs_params(models, run_dir / "f1_vs_params.png")
        parts.append(f"## F1 against parameters\n\n![F1 against parameters]({plot.name})\n")
    markdown = "\n".join(parts)
    report = RunLayout(run_dir).report
    report.write_text(markdown, encoding="utf-8")
    report.with_suffix(".html").write_text(_html(title, markdown), encoding="utf-8")
    return report


def _html(title: str, markdown: str) -> str:
    """The report as a standalone HTML page (tables and the plot included)."""
    body = MarkdownIt("commonmark").enable("table").render(markdown)
    style = "body{font-family:sans-serif;max-width:60em;margin:2em auto}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 8px}"
    return f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>{style}</style></head><body>{body}</body></html>"
