"""Benchmark: how hard is the mock LLM's world? A teacher on its reviewed gold, and the LLM itself.

    .venv/bin/python bench/mock_difficulty.py --n 300 --epochs 4          # a quick calibration
    .venv/bin/python bench/mock_difficulty.py --n 1000                    # the figure of issue 14

Generates N examples with the mock LLM in-process (`annotators.generate.generate` against a
`MockLLMServer`), reviews them offline as a careful human would (texts the truth marks factually
wrong or unusable are dropped, the rest get the truth: the gold under the one span convention),
splits 80/10/10 (seeded), fine-tunes the teacher (`trainers.trainer.train_teacher`, default
offline MiniLM) and prints strict span F1, overlap span F1 and token macro F1 on the gold test
split, per label, next to the LLM's own pre-annotation F1 on the same texts. The issue's target:
a teacher on about 1,000 reviewed examples lands between 0.75 and 0.92 strict span F1.
Prints numbers, asserts nothing. Models and results go to OUT (one folder per setting: the LLM
cache there is reused, so change --out when you change a mock knob).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Optional

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import typer  # noqa: E402

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


def reviewed_gold(generated: list, records: dict) -> tuple[list, dict]:
    """(gold examples, LLM example by text): the careful reviewer's verdicts from the mock's truth."""
    from data.example import Example, Review

    gold, llm = [], {}
    for example in generated:
        record = records.get(example.text)
        if record is None or record.rejected:
            continue
        llm[example.text] = example
        gold.append(Example(id=example.id, text=example.text, entities=record.example.entities, relations=record.example.relations,
                            source=example.source, review=Review(status="accepted", annotator="bench-truth")))
    return gold, llm


def row(name: str, scores: dict, labels: list[str]) -> str:
    per = "  ".join(f"{l} {scores['per_label'].get(l, {}).get('f1', 0.0):.3f}" for l in labels)
    return f"{name:<28} strict {scores['f1']:.3f}  overlap {scores['overlap_f1']:.3f}  token macro {scores['token_macro_f1']:.3f}   {per}"


@app.command()
def main(
    n: int = typer.Option(1000, help="Examples to ask the mock for."),
    epochs: int = typer.Option(12, help="Teacher epochs (at most; early stopping on dev)."),
    seed: int = typer.Option(0),
    out: Optional[Path] = typer.Option(None, help="Default: bench_out/mock_difficulty/n<N>-s<SEED>-e<ERR>-f<FACT>."),
    encoder: Optional[str] = typer.Option(None, help="Teacher encoder (default: offline MiniLM)."),
    batch_size: int = typer.Option(16),
    learning_rate: float = typer.Option(1e-4, "--lr"),
    threads: Optional[int] = typer.Option(None, help="torch CPU threads (default: all cores)."),
    error_rate: float = typer.Option(0.25, help="Mock: share of answers with annotation errors."),
    factual_error_rate: float = typer.Option(0.25, help="Mock: share of factually wrong texts."),
    concurrency: int = typer.Option(8),
    train: bool = typer.Option(True, help="Train and score the teacher (off: only the data and the LLM's F1)."),
) -> None:
    """Generate, review from the truth, split, train the teacher, print its F1 and the LLM's."""
    from collections import Counter

    from annotators.generate import generate
    from annotators.llm import LLMConfig
    from annotators.mock_llm import MockConfig, MockLLMServer
    from annotators.truth import load_truth_records
    from data.formats import read_jsonl, split_examples
    from data.spec import load_spec
    from trainers.evaluate import ner_scores

    out = out or Path(f"bench_out/mock_difficulty/n{n}-s{seed}-e{error_rate}-f{factual_error_rate}")
    gen = out / "generated"
    spec = load_spec("species")
    started = time.perf_counter()
    config = MockConfig(seed=seed, error_rate=error_rate, factual_error_rate=factual_error_rate, truth_file=gen / "mock_truth.jsonl")
    with MockLLMServer(config) as server:
        summary = generate(spec, n, gen, LLMConfig(base_url=server.base_url, model="mock-species", concurrency=concurrency), seed=seed)
    records = load_truth_records(gen / "mock_truth.jsonl")
    generated = read_jsonl(gen / "generated.jsonl")
    gold, llm = reviewed_gold(generated, records)
    errors = Counter(e for x in generated if x.text in records for e in records[x.text].errors)
    shapes = Counter(s for x in generated if x.text in records for s in records[x.text].shapes)
    print(f"generated {len(generated)} of {n} asked ({summary.duplicates} duplicates, rejected by grounding: {dict(summary.rejected)}) in {time.perf_counter() - started:.0f} s")
    print(f"reviewed: {len(gold)} kept, {len(generated) - len(gold)} rejected as factually wrong or unusable")
    print("errors in the generated examples:", dict(errors.most_common()))
    print("text shapes:", dict(shapes.most_common()))
    words = [len(g.span(e).split()) for g in gold for e in g.entities if e.label == "BREEDING"]
    print(f"entities per text {sum(len(g.entities) for g in gold) / max(1, len(gold)):.1f}; BREEDING spans {min(words, default=0)}-{max(words, default=0)} words, mean {sum(words) / max(1, len(words)):.1f}")

    splits = split_examples(gold, dev=0.1, test=0.1, seed=seed)
    test = splits["test"]
    print(f"split: train {len(splits['train'])}, dev {len(splits['dev'])}, test {len(test)}")
    llm_scores = ner_scores(test, [llm[g.text].entities for g in test])
    labels = sorted(llm_scores["per_label"])
    lines = [row("LLM pre-annotation (test)", llm_scores, labels)]
    result = {"n": n, "seed": seed, "kept": len(gold), "split": {k: len(v) for k, v in splits.items()}, "llm": llm_scores}
    if train:
        from trainers.args import TrainingArgs
        from trainers.evaluate import evaluate
        from trainers.trainer import train_teacher

        args = TrainingArgs(encoder=encoder, epochs=epochs, batch_size=batch_size, learning_rate=learning_rate, seed=seed, threads=threads, progress=False)
        began = time.perf_counter()
        teacher = train_teacher(splits["train"], splits["dev"], out / "teacher", args)
        seconds = time.perf_counter() - began
        metrics = evaluate(teacher, test, measure_speed=False)
        lines.insert(0, row(f"teacher ({epochs} ep, {seconds:.0f} s)", metrics, labels))
        result["teacher"] = {k: metrics[k] for k in ("f1", "overlap_f1", "token_macro_f1", "per_label", "relation_f1")}
        result["teacher_seconds"] = round(seconds)
        lines.append(f"teacher relation F1 {metrics['relation_f1'] if metrics['relation_f1'] is not None else 'n/a'}")
    print("\n".join(lines))
    out.mkdir(parents=True, exist_ok=True)
    (out / "difficulty.json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    app()
