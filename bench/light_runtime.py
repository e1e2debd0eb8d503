"""Benchmark: what it costs to run an exported student, with the runtime install and with torch.

    .venv/bin/python bench/light_runtime.py [MODEL]     # MODEL: a trained model directory (default: the main job's student)

Builds two fresh virtual environments from a copy of the package: `pip install distill-ner` (no
extras: spaCy, the tokenizer, ONNX Runtime) and `pip install 'distill-ner[torch]'`. Exports MODEL
as an int8 ONNX pipeline and as a torch pipeline, then, in each environment, times a fresh process
that imports spaCy and calls `spacy.load` (median of `--repeats`), runs the demo sentence, and
checks whether `import torch` works. Prints the size of each environment and of each pipeline.
Results go to OUT/light_runtime.md (default OUT: bench_out/light_runtime).
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import typer

from distill_ner.data.tables import markdown_table

ROOT = Path(__file__).resolve().parents[1]
SENTENCE = "The snow leopard lives in the mountains of Central Asia and hunts blue sheep."
LOAD = """
import json, sys, time
t0 = time.perf_counter()
import spacy
nlp = spacy.load(sys.argv[1])
t1 = time.perf_counter()
doc = nlp(sys.argv[2])
print(json.dumps({"load_s": t1 - t0, "ents": [(e.text, e.label_) for e in doc.ents], "torch_imported": "torch" in sys.modules}))
"""
app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


def du_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink()) / 1e6


def make_venv(where: Path, source: Path, extra: str) -> Path:
    """A fresh virtual environment with `pip install source[extra]`; its python."""
    subprocess.run([sys.executable, "-m", "venv", str(where)], check=True)
    python = where / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    target = f"{source}[{extra}]" if extra else str(source)
    subprocess.run([str(python), "-m", "pip", "install", "-q", target], check=True, env=env)
    return python


@app.command()
def main(
    model: Path = typer.Argument(ROOT / "runs" / "demo" / "student", help="A trained model directory."),  # noqa: B008
    out: Path = typer.Option(ROOT / "bench_out" / "light_runtime"),  # noqa: B008
    repeats: int = typer.Option(5, help="Fresh processes per environment; the median load time is reported."),
) -> None:
    """Install size and `spacy.load` time of the runtime-only and the torch install."""
    from distill_ner.trainers.export.to_spacy import export_spacy

    if not (model / "model.json").exists():
        raise SystemExit(f"error: {model}: not a trained model directory (run bash scripts/demo.sh first, or pass one)")
    out.mkdir(parents=True, exist_ok=True)
    pipelines = {"onnx-int8": export_spacy(model, out / "onnx-int8", runtime="onnx", quantize="int8"), "torch": export_spacy(model, out / "torch")}
    rows = []
    with tempfile.TemporaryDirectory(prefix="distill-light-") as tmp:
        source = Path(tmp) / "source"
        source.mkdir()
        for name in ("pyproject.toml", "README.md", "data", "annotators", "trainers", "flows"):
            if (ROOT / name).is_dir():
                shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy2(ROOT / name, source / name)
        for install, extra, runtime in (("pip install distill-ner", "", "onnx-int8"), ("pip install 'distill-ner[torch]'", "torch", "torch")):
            venv = Path(tmp) / (extra or "light")
            python = make_venv(venv, source, extra)
            runs = []
            for _ in range(repeats):
                done = subprocess.run([str(python), "-c", LOAD, str(pipelines[runtime]), SENTENCE], capture_output=True, text=True, check=True)
                runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
            has_torch = subprocess.run([str(python), "-c", "import torch"], capture_output=True).returncode == 0
            rows.append({
                "install": install, "pipeline": runtime, "environment MB": round(du_mb(venv)), "pipeline MB": round(du_mb(pipelines[runtime]), 1),
                "import spacy + spacy.load s (median)": round(statistics.median(r["load_s"] for r in runs), 2),
                "torch importable": "yes" if has_torch else "no", "entities of the demo sentence": ", ".join(f"{t} ({label})" for t, label in runs[0]["ents"]),
            })
            print(markdown_table(rows[-1:]), flush=True)
    report = f"Model: {model}; {repeats} fresh processes each, on {os.cpu_count()} cores.\n\n" + markdown_table(rows) + "\n"
    (out / "light_runtime.md").write_text(report, encoding="utf-8")
    print(report)


if __name__ == "__main__":
    app()
