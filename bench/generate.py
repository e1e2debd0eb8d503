"""Benchmark: does `distill generate` keep up with the LLM server?

Starts the mock LLM in its own process, then measures
  1. the raw request rate: a bare `httpx.AsyncClient` posting the very requests generation makes,
  2. the rate through the generation pipeline (`annotators.generate.generate`: openai client,
     cache, retries, grounding, dedup, files) at the same concurrency,
and prints both and their ratio (target: at least 0.9).

    .venv/bin/python bench/generate.py --n 2000 --concurrency 8 --latency-s 0.05
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from servers import free_port, wait_until_up  # noqa: E402  (bench/ is on sys.path when this script runs)

from distill_ner.annotators.generate import chat_messages, generate, generate_schema, plan_requests  # noqa: E402
from distill_ner.annotators.llm import LLMConfig  # noqa: E402
from distill_ner.data.spec import load_spec  # noqa: E402


def start_mock(port: int, latency_s: float, truth: Path) -> subprocess.Popen:
    distill = Path(sys.executable).with_name("distill")
    args = [str(distill), "mock-llm", "--port", str(port), "--latency-s", str(latency_s), "--truth-file", str(truth)]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return wait_until_up(proc, f"http://127.0.0.1:{port}/v1/models", 60, "the mock LLM")


async def raw_rate(base_url: str, bodies: list[dict], concurrency: int) -> float:
    """Requests per second for a bare async HTTP client with `concurrency` requests in flight."""
    limit = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=concurrency)) as client:

        async def one(body: dict) -> None:
            async with limit:
                (await client.post(f"{base_url}/chat/completions", json=body)).raise_for_status()

        started = time.perf_counter()
        await asyncio.gather(*(one(b) for b in bodies))
        return len(bodies) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=2000, help="examples to generate (5 per request)")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--latency-s", type=float, default=0.0, help="mock generation time per request")
    args = parser.parse_args()

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    spec = load_spec("species")
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        proc = start_mock(port, args.latency_s, Path(tmp) / "truth.jsonl")
        base_url = f"http://127.0.0.1:{port}/v1"
        try:
            config = LLMConfig(base_url=base_url, model="mock-species", concurrency=args.concurrency)
            # the raw client sends the pipeline's own requests (another seed, so that nothing is shared)
            bodies = [
                {
                    "model": config.model,
                    "messages": chat_messages(spec, "generate", topic=r.topic, n=r.n),
                    "temperature": config.temperature,
                    "seed": 10_000 + r.seed,
                    "response_format": {"type": "json_schema", "json_schema": {"name": "answer", "schema": generate_schema(spec), "strict": True}},
                }
                for r in plan_requests(spec, args.n, seed=1)
            ]
            asyncio.run(raw_rate(base_url, bodies[:20], args.concurrency))  # warm up
            raw = asyncio.run(raw_rate(base_url, bodies, args.concurrency))
            summary = generate(spec, args.n, Path(tmp) / "run", config, seed=0)
            pipeline = summary.calls / summary.seconds
        finally:
            proc.terminate()
            proc.wait(timeout=10)
    print(f"requests: {len(bodies)} x {spec.examples_per_call} examples, concurrency {args.concurrency}, mock latency {args.latency_s:.3f} s")
    print(f"raw mock request rate:        {raw:8.1f} req/s")
    print(f"distill generate rate:        {pipeline:8.1f} req/s  ({summary.kept} kept, {summary.duplicates} duplicates, {summary.seconds:.2f} s)")
    print(f"ratio pipeline / raw:         {pipeline / raw:8.3f}  (target >= 0.9)")


if __name__ == "__main__":
    main()
