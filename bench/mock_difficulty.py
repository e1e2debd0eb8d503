"""Benchmark: how hard is the mock LLM's world? A teacher on its reviewed gold, and the LLM itself.

    .venv/bin/python bench/mock_difficulty.py --n 300 --epochs 4          # a quick calibration
    .venv/bin/python bench/mock_difficulty.py --n 1000                    # the figure of issue 14

Generates N examples with the mock LLM in-process (`annotators.generate.generate` against a
`MockLLMServer`), reviews them offline exactly as the flow's simulated annotators would
(`annotators.truth.review_example` with the run config's review accuracy, convention drift and
annotators, or --accuracy / --convention-drift / --annotators: texts the truth marks factually
wrong or unusable are dropped, missed ones keep the LLM's answer, the rest get the truth as each
reviewer draws it), splits 80/10/10 (seeded), fine-tunes the teacher (`trainers.trainer.train_teacher`, default
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

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import typer

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


def reviewed_gold(
    generated: list, records: dict, accuracy: float = 1.0, convention_drift: float = 0.0, annotators: tuple[str, ...] = ("annotator-1",), seed: int = 0,
) -> tuple[list, dict]:
    """(gold examples, LLM example by text): what the simulated reviewers submit, decided exactly
    as the simulated Label Studio annotator decides it (`annotators.truth.review_example`, the same
    seeded draw per annotator and text, annotators taking examples in turn): rejected texts are
    dropped, missed ones keep the LLM's answer, the rest get the truth as that reviewer draws it,
    with `review.diff` recording what changed (so `trainers.scores.llm_entities` recovers the LLM's)."""
    import hashlib
    import random

    from distill_ner.annotators.label_studio import review_diff
    from distill_ner.annotators.truth import review_example
    from distill_ner.data.example import Review

    gold, llm = [], {}
    for n, example in enumerate(generated):
        record = records.get(example.text)
        if record is None:
            continue
        name = annotators[n % len(annotators)]
        rng = random.Random(hashlib.sha1(f"{seed}\x00{name}\x00{example.text}".encode()).digest())
        decision, submitted = review_example(record, example, name, accuracy, convention_drift, rng)
        if decision == "rejected":
            continue
        llm[example.text] = example
        diff = review_diff(example, submitted.entities, submitted.relations)  # as the Label Studio review records it
        gold.append(example.model_copy(update={
            "entities": submitted.entities, "relations": submitted.relations,
            "review": Review(status="accepted" if decision == "missed" else "corrected", annotator=name, diff=diff if diff.changed else None),
        }))
    return gold, llm


def _unseen(train: list, test: list) -> dict[str, float]:
    """Per label, the share of test entities whose (text, label) never occurs in train."""
    from collections import Counter

    seen = {(x.span(e), e.label) for x in train for e in x.entities}
    total, new = Counter(), Counter()
    for x in test:
        for e in x.entities:
            total[e.label] += 1
            new[e.label] += (x.span(e), e.label) not in seen
    return {label: round(new[label] / total[label], 3) for label in sorted(total)}


def row(name: str, scores: dict, labels: list[str]) -> str:
    per = "  ".join(f"{l} {scores['per_label'].get(l, {}).get('f1', 0.0):.3f}" for l in labels)
    return f"{name:<28} strict {scores['f1']:.3f}  overlap {scores['overlap_f1']:.3f}  token macro {scores['token_macro_f1']:.3f}   {per}"


@app.command()
def main(
    n: int = typer.Option(1000, help="Examples to ask the mock for."),
    epochs: int = typer.Option(12, help="Teacher epochs (at most; early stopping on dev)."),
    seed: int = typer.Option(0),
    out: Path | None = typer.Option(None, help="Default: bench_out/mock_difficulty/n<N>-s<SEED>-e<ERR>-f<FACT>."),  # noqa: B008
    encoder: str | None = typer.Option(None, help="Teacher encoder (default: offline MiniLM)."),
    batch_size: int = typer.Option(16),
    learning_rate: float = typer.Option(1e-4, "--lr"),
    threads: int | None = typer.Option(None, help="torch CPU threads (default: all cores)."),
    error_rate: float = typer.Option(0.25, help="Mock: share of answers with annotation errors."),
    factual_error_rate: float = typer.Option(0.25, help="Mock: share of factually wrong texts."),
    accuracy: float = typer.Option(None, help="Reviewer: chance to review a task (else the LLM answer goes through); default: the run config's."),
    convention_drift: float = typer.Option(None, help="Reviewer: chance per entity of convention drift (annotators/truth.py); default: the run config's."),
    annotators: int = typer.Option(None, help="Simulated reviewers taking examples in turn (annotator-1, ...); default: the run config's."),
    concurrency: int = typer.Option(8),
    train: bool = typer.Option(True, help="Train and score the teacher (off: only the data and the LLM's F1)."),
) -> None:
    """Generate, review from the truth, split, train the teacher, print its F1 and the LLM's."""
    from collections import Counter

    from distill_ner.annotators.generate import generate
    from distill_ner.annotators.llm import LLMConfig
    from distill_ner.annotators.mock_llm import MockConfig, MockLLMServer
    from distill_ner.annotators.truth import load_truth_records
    from distill_ner.data.formats import read_jsonl, split_examples
    from distill_ner.data.spec import load_spec
    from distill_ner.flows.config import ReviewSection
    from distill_ner.trainers.evaluate import ner_scores

    defaults = ReviewSection()
    accuracy = defaults.accuracy if accuracy is None else accuracy
    convention_drift = defaults.convention_drift if convention_drift is None else convention_drift
    names = tuple(f"annotator-{i + 1}" for i in range(annotators or defaults.annotators))
    out = out or Path(f"bench_out/mock_difficulty/n{n}-s{seed}-e{error_rate}-f{factual_error_rate}")
    gen = out / "generated"
    spec = load_spec("species")
    started = time.perf_counter()
    config = MockConfig(seed=seed, error_rate=error_rate, factual_error_rate=factual_error_rate, truth_file=gen / "mock_truth.jsonl")
    with MockLLMServer(config) as server:
        summary = generate(spec, n, gen, LLMConfig(base_url=server.base_url, model="mock-species", concurrency=concurrency), seed=seed)
    records = load_truth_records(gen / "mock_truth.jsonl")
    generated = read_jsonl(gen / "generated.jsonl")
    gold, llm = reviewed_gold(generated, records, accuracy, convention_drift, names, seed)
    errors = Counter(e for x in generated if x.text in records for e in records[x.text].errors)
    shapes = Counter(s for x in generated if x.text in records for s in records[x.text].shapes)
    print(f"generated {len(generated)} of {n} asked ({summary.duplicates} duplicates, rejected by grounding: {dict(summary.rejected)}) in {time.perf_counter() - started:.0f} s")
    print(f"reviewed (accuracy {accuracy}, convention drift {convention_drift}, {', '.join(names)}): {len(gold)} kept, {len(generated) - len(gold)} rejected as factually wrong or unusable")
    truth_gold = [records[g.text].example for g in gold]
    print(f"reviewed gold against the truth: {row('strict/overlap', ner_scores(truth_gold, [g.entities for g in gold]), [])}")
    print("errors in the generated examples:", dict(errors.most_common()))
    print("text shapes:", dict(shapes.most_common()))
    words = [len(g.span(e).split()) for g in gold for e in g.entities if e.label == "BREEDING"]
    print(f"entities per text {sum(len(g.entities) for g in gold) / max(1, len(gold)):.1f}; BREEDING spans {min(words, default=0)}-{max(words, default=0)} words, mean {sum(words) / max(1, len(words)):.1f}")

    splits = split_examples(gold, dev=0.1, test=0.1, seed=seed)
    print("test spans never seen in train, per label:", _unseen(splits["train"], splits["test"]))
    test = splits["test"]
    print(f"split: train {len(splits['train'])}, dev {len(splits['dev'])}, test {len(test)}")
    llm_scores = ner_scores(test, [llm[g.text].entities for g in test])
    labels = sorted(llm_scores["per_label"])
    lines = [row("LLM pre-annotation (test)", llm_scores, labels)]
    result = {"n": n, "seed": seed, "accuracy": accuracy, "convention_drift": convention_drift, "annotators": len(names), "kept": len(gold),
              "unseen": _unseen(splits["train"], test), "split": {k: len(v) for k, v in splits.items()}, "llm": llm_scores}
    if train:
        from distill_ner.trainers.args import TrainingArgs
        from distill_ner.trainers.evaluate import evaluate
        from distill_ner.trainers.trainer import train_teacher

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
