"""The mock world's reviewed gold as a data file, for `bench/train.py` and `bench/sweep.py`.

    .venv/bin/python bench/mock_data.py --n 450 --out bench_out/mock450.jsonl
    .venv/bin/python bench/train.py bench_out/mock450.jsonl --seeds 0,1,2 --kds hinton

Generates N examples with the mock LLM in-process, reviews them as the run config's simulated
annotators do (`bench/mock_difficulty.reviewed_gold`: rejected texts dropped, convention drift
and misses as configured) and writes the kept examples, one JSON `Example` a line. The same
N, seed and knobs give the same file.
"""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import typer  # noqa: E402

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


@app.command()
def main(
    n: int = typer.Option(450, help="Examples to ask the mock for (about three quarters survive review)."),
    out: Path = typer.Option(Path("bench_out/mock.jsonl"), help="The reviewed gold, JSONL."),  # noqa: B008
    seed: int = typer.Option(0),
    concurrency: int = typer.Option(8),
) -> None:
    """Generate, review as the simulated annotators do, write the gold."""
    from distill_ner.annotators.generate import generate
    from distill_ner.annotators.llm import LLMConfig
    from distill_ner.annotators.mock_llm import MockConfig, MockLLMServer
    from distill_ner.annotators.truth import load_truth_records
    from distill_ner.data.formats import read_jsonl, write_jsonl
    from distill_ner.data.spec import load_spec
    from distill_ner.flows.config import LLMSection, ReviewSection
    from mock_difficulty import reviewed_gold  # bench/ is on sys.path when this script runs

    llm, review = LLMSection(), ReviewSection()
    gen = out.with_suffix("") / "generated"
    config = MockConfig(seed=seed, error_rate=llm.error_rate, factual_error_rate=llm.factual_error_rate, truth_file=gen / "mock_truth.jsonl")
    with MockLLMServer(config) as server:
        generate(load_spec("species"), n, gen, LLMConfig(base_url=server.base_url, model="mock-species", concurrency=concurrency), seed=seed)
    names = tuple(f"annotator-{i + 1}" for i in range(review.annotators))
    gold, _ = reviewed_gold(read_jsonl(gen / "generated.jsonl"), load_truth_records(gen / "mock_truth.jsonl"), review.accuracy, review.convention_drift, names, seed)
    write_jsonl(out, gold)
    print(f"{len(gold)} reviewed examples -> {out} (accuracy {review.accuracy}, convention drift {review.convention_drift}, {len(names)} annotator(s))")


if __name__ == "__main__":
    app()
