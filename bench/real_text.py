"""Benchmark: the loop on a real corpus, from its raw text to a student scored on its real gold test set.

    .venv/bin/python bench/real_text.py bc5cdr                      # 1,000 training texts, seed 0
    .venv/bin/python bench/real_text.py linnaeus --n 1000 --seed 0 --threads 1

For a corpus of `../shared/data/real-ner/` (or `--data-dir`): a seeded subset of `--n` texts of its
training file is annotated with `distill annotate`'s code through the mock LLM in replay mode
(`annotators/replay.py`: the corpus' gold passed through the replay error model, so the "LLM"
drifts, misses, invents and mislabels like a real one); the simulated reviewers correct it against
the same gold as the run config's do (accuracy 0.95, convention drift 0.15); 10% of the reviewed
texts are the dev split; the teacher and the 3-layer Hinton KD student train with every trainer
default, on the corpus' spec (`data/specs/<corpus>.yaml`). Scored on the corpus' full gold test
file: the teacher, the student and the LLM's own (replayed) annotation of the test texts, with
strict span F1 and its 95% interval, token macro F1, and the false-alarm rate (the share of test
sentences with no gold entity in which the model finds one). Results go to OUT/real_text.md and
OUT/real_text.json. The texts are the CoNLL tokens joined by spaces (the corpora have no raw text).
"""

from __future__ import annotations

import json
import os
import random
import time
from pathlib import Path
from typing import Optional

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import typer  # noqa: E402

from distill_ner.data.tables import markdown_table  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = ROOT.parent / "shared" / "data" / "real-ner"
app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


def annotate_with_replay(spec, examples: list, out: Path, seed: int, k_samples: int = 1) -> tuple[list, dict]:
    """The examples' texts annotated by the mock LLM replaying their gold: (kept examples, truth
    records by text: the gold the simulated reviewer corrects to) and the run's summary in
    OUT/generate_summary.json. A rerun takes the answers from the cache."""
    from distill_ner.annotators.generate import annotate
    from distill_ner.annotators.llm import LLMConfig
    from distill_ner.annotators.mock_llm import MockConfig, MockLLMServer
    from distill_ner.annotators.replay import replay_truth
    from distill_ner.data.corpus import Document, windows
    from distill_ner.data.formats import read_jsonl, write_jsonl

    out.mkdir(parents=True, exist_ok=True)
    gold = write_jsonl(out / "gold.jsonl", examples)
    docs = [Document(id=e.id, text=e.text, file=str(gold)) for e in examples]
    with MockLLMServer(MockConfig(replay=gold, truth_file=out / "mock_truth.jsonl", seed=seed)) as server:
        config = LLMConfig(base_url=server.base_url, model="mock-replay", concurrency=8)
        annotate(spec, windows(docs), out, config, seed=seed, k_samples=k_samples, max_failure_share=1.0)
    generated = read_jsonl(out / "generated.jsonl")
    return generated, replay_truth(examples, [e.text for e in generated])


def row(name: str, test: list, predicted: list, parameters: int | None, seconds: float) -> dict:
    from distill_ner.trainers.evaluate import ner_scores

    scores = ner_scores(test, predicted)
    return {"model": name, "strict span F1": scores["f1"] * 100, "95% interval": f"{scores['f1_low'] * 100:.1f}-{scores['f1_high'] * 100:.1f}",
            "overlap span F1": scores["overlap_f1"] * 100, "token macro F1": scores["token_macro_f1"] * 100,
            "false alarms": "-" if scores["false_alarms"] is None else f"{scores['false_alarms']:.1%}", "parameters": f"{parameters / 1e6:.1f}M" if parameters else "-", "train s": round(seconds)}


@app.command()
def main(
    corpus: str = typer.Argument(..., help="A folder of --data-dir: bc5cdr, ncbi-disease, linnaeus or bionlp13cg."),
    n: int = typer.Option(1000, help="Training texts annotated by the (replayed) LLM and reviewed."),
    seed: int = typer.Option(0, help="The subset, the LLM's errors, the review and training."),
    data_dir: Path = typer.Option(DATA_DIR, help="Where the corpora are (train.conll, test.conll)."),  # noqa: B008
    out: Optional[Path] = typer.Option(None, help="Default: bench_out/real_text/<corpus>-<n>-s<seed>."),  # noqa: B008
    threads: Optional[int] = typer.Option(None, help="torch CPU threads (default: all cores)."),
    max_test: Optional[int] = typer.Option(None, help="Score on a seeded subset of the test file (default: all of it)."),
) -> None:
    """Annotate, review, train teacher and student, and score them and the LLM on the real test set."""
    from mock_difficulty import reviewed_gold  # bench/ is on sys.path when this script runs

    from distill_ner.annotators.truth import CONVENTION_DRIFT
    from distill_ner.data.formats import read_conll, split_examples
    from distill_ner.data.spec import load_spec
    from distill_ner.trainers.args import TrainingArgs
    from distill_ner.trainers.inference import predict_entities
    from distill_ner.trainers.modeling import load_model
    from distill_ner.trainers.trainer import train_student, train_teacher

    out = out or ROOT / "bench_out" / "real_text" / f"{corpus}-{n}-s{seed}"
    spec = load_spec(corpus)
    train_file, test_file = data_dir / corpus / "train.conll", data_dir / corpus / "test.conll"
    pool = read_conll(train_file)
    subset = random.Random(seed).sample(pool, min(n, len(pool)))
    test = read_conll(test_file)
    if max_test:
        test = random.Random(seed).sample(test, min(max_test, len(test)))
    started = time.perf_counter()
    generated, records = annotate_with_replay(spec, subset, out / "annotate", seed)
    reviewed, _ = reviewed_gold(generated, records, accuracy=0.95, convention_drift=CONVENTION_DRIFT, annotators=("annotator-1", "annotator-2"), seed=seed)
    splits = split_examples(reviewed, dev=0.1, test=0.0, seed=seed)
    print(f"{corpus}: {len(subset)} texts annotated, {len(generated)} kept, {len(reviewed)} reviewed "
          f"(train {len(splits['train'])}, dev {len(splits['dev'])}); test {len(test)} ({time.perf_counter() - started:.0f} s)", flush=True)

    test_llm, _ = annotate_with_replay(spec, test, out / "annotate-test", seed + 1)  # the LLM's own annotation of the test texts
    by_text = {e.text: e.entities for e in test_llm}
    llm_predicted = [by_text.get(e.text, []) for e in test]
    rows = [row("LLM annotation (replayed)", test, llm_predicted, None, 0.0)]

    args = TrainingArgs(seed=seed, threads=threads)
    t0 = time.perf_counter()
    teacher = train_teacher(splits["train"], splits["dev"], out / "teacher", args, spec=spec)
    t1 = time.perf_counter()
    student = train_student(splits["train"], splits["dev"], teacher, out / "student", args, kd="hinton")
    t2 = time.perf_counter()
    for name, path, seconds in (("teacher (MiniLM, 6 layers)", teacher, t1 - t0), (f"student ({args.student_layers} layers, Hinton KD)", student, t2 - t1)):
        model = load_model(path)
        predicted = predict_entities(model, test)
        rows.append(row(name, test, predicted, model.meta.parameters, seconds))
        print(markdown_table(rows[-1:], digits=1), flush=True)
    summary = json.loads((out / "annotate" / "generate_summary.json").read_text())
    report = (
        f"### {corpus}: {n} training texts, seed {seed}\n\n"
        f"Annotated {summary['kept']} of {summary['requested']} texts ({summary['calls']} calls); reviewed {len(reviewed)} "
        f"(train {len(splits['train'])}, dev {len(splits['dev'])}); scored on {len(test)} test texts of {test_file.name}.\n\n"
        + markdown_table(rows, digits=1) + "\n"
    )
    print(report)
    (out / "real_text.md").write_text(report, encoding="utf-8")
    (out / "real_text.json").write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    app()
