"""Benchmark: how much corrected test gold favours the LLM. One finished mock run, three golds.

    .venv/bin/python bench/blind_gold.py runs/demo

A run with `split.blind_test` has test texts that people labelled without the LLM's answer. For
those same texts this scores the LLM's own annotation, the teacher and the student against three
golds: the blind labels the run holds; what the run's simulated reviewers would have submitted
had they corrected the LLM's pre-annotation instead (`bench/mock_difficulty.reviewed_gold`, the
run's accuracy and convention drift: a missed LLM error stays in the gold); and the mock's own
truth. Texts a reviewer rejected under either way of reviewing are left out of all three. Each
model's row gives strict span F1 and, for teacher and student, the difference to the LLM with its
95% paired bootstrap interval.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import typer  # noqa: E402
from mock_difficulty import reviewed_gold  # noqa: E402  (bench/ is on sys.path when this script runs)

from distill_ner.annotators.truth import load_truth_records  # noqa: E402
from distill_ner.data.example import llm_entities, usable  # noqa: E402
from distill_ner.data.formats import load_splits, read_jsonl  # noqa: E402
from distill_ner.data.run_layout import RunLayout  # noqa: E402
from distill_ner.data.tables import markdown_table  # noqa: E402
from distill_ner.trainers.evaluate import f1_difference, ner_scores  # noqa: E402
from distill_ner.trainers.inference import predict_entities  # noqa: E402
from distill_ner.trainers.modeling import load_model  # noqa: E402

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


@app.command()
def main(run_dir: Path = typer.Argument(..., help="A finished run of the mock LLM with split.blind_test.")) -> None:  # noqa: B008
    layout = RunLayout(run_dir)
    config = json.loads(layout.config.read_text())
    test = [e for e in usable(load_splits(layout.verified_splits)["test"]) if e.review.blind]
    if not test:
        raise SystemExit(f"{run_dir}: no blind test texts (run it with -s split.blind_test=true)")
    records = load_truth_records(layout.mock_truth)
    generated = {e.text: e for e in read_jsonl(layout.generated)}
    review = config["review"]
    corrected, _ = reviewed_gold([generated[e.text] for e in test], records, review["accuracy"], review["convention_drift"], seed=config["llm"]["seed"])
    by_text = {e.text: e for e in corrected}
    test = [e for e in test if e.text in by_text and not records[e.text].rejected]
    golds = {
        "blind (the run's test split)": test,
        "corrected pre-annotations": [by_text[e.text] for e in test],
        "mock truth": [records[e.text].example for e in test],
    }
    llm = [llm_entities(e) for e in test]
    models = {name: predict_entities(load_model(layout.models / name), test) for name in ("teacher", "student")}
    rows = []
    for gold_name, gold in golds.items():
        row = {"gold": gold_name, "texts": len(gold), "LLM": f"{ner_scores(gold, llm)['f1']:.3f}"}
        for name, predicted in models.items():
            diff, low, high = f1_difference(gold, predicted, llm)
            row[name] = f"{ner_scores(gold, predicted)['f1']:.3f}"
            row[f"{name} - LLM"] = f"{diff:+.3f} ({low:+.3f} to {high:+.3f})"
        rows.append(row)
    print(markdown_table(rows))


if __name__ == "__main__":
    app()
