import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from distill_ner.annotators.cli import app
from distill_ner.annotators.generate import generate, plan_requests
from distill_ner.annotators.llm import LLMConfig
from distill_ner.annotators.mock_llm import MockConfig, MockLLMServer
from distill_ner.data.errors import DistillError
from distill_ner.data.formats import read_jsonl
from distill_ner.data.spec import DEFAULT_NEGATIVE_TOPICS

runner = CliRunner()
NEGATIVE_TOPICS = set(DEFAULT_NEGATIVE_TOPICS)


def cli(*args: str, env: dict | None = None):
    return runner.invoke(app, ["generate", *args], env=env, catch_exceptions=True)


def files(out: Path) -> tuple[dict, list, list]:
    summary = json.loads((out / "generate_summary.json").read_text())
    rejected = [json.loads(line) for line in (out / "rejected.jsonl").read_text().splitlines()]
    return summary, read_jsonl(out / "generated.jsonl"), rejected


def test_plan_splits_cycles_topics_and_extends(species_spec):
    plan = plan_requests(species_spec, 12, seed=3)
    assert [r.n for r in plan] == [5, 5, 2]
    assert len({r.topic for r in plan}) == 3 and plan == plan_requests(species_spec, 12, seed=3)
    bigger = plan_requests(species_spec, 2000, seed=3)
    assert [r.topic for r in bigger[:2]] == [r.topic for r in plan[:2]]
    assert len({(r.topic, r.seed) for r in bigger}) == len(bigger)  # a topic asked again gets a new seed
    assert plan_requests(species_spec, 12, seed=4)[0].topic != plan[0].topic or plan_requests(species_spec, 12, seed=5)[0].topic != plan[0].topic


def test_an_empty_seed_list_is_an_error(species_spec):
    empty = species_spec.model_copy(update={"topics": {"birds": []}})
    with pytest.raises(DistillError, match="seed topic list is empty"):
        plan_requests(empty, 10)


def test_generate_against_the_mock_with_faults_then_rerun_makes_no_call(mock_llm_factory, tmp_path):
    server = mock_llm_factory(fault_rate=0.2, seed=4, delay_s=0.05)
    out = tmp_path / "run"
    result = cli("--n", "80", "--out", str(out), "--base-url", server.base_url, "--model", "mock-species", "--concurrency", "4", "--max-retries", "8")
    assert result.exit_code == 0, result.output
    assert "kept" in result.output and "LLM calls made" in result.output
    summary, kept, rejected = files(out)
    assert sum(server.stats.faults.values()) > 0  # faults really happened
    # every requested example is kept or rejected with a reason
    assert summary["kept"] + sum(summary["rejected"].values()) + summary["duplicates"] == summary["requested"] == 80
    assert len(kept) == summary["kept"] >= 60 and len(rejected) == 80 - len(kept)
    assert all(row["reason"] for row in rejected)
    assert summary["calls"] > 0 and summary["complete"] and summary["prompt_tokens"] > 0
    for example in kept:  # grounded, provenance, stable ids
        assert example.source.origin == "llm" and example.source.topic and example.source.prompt_id
        assert example.entities or example.source.topic in NEGATIVE_TOPICS  # only the off-topic texts may name nothing
        assert all(example.span(e).strip() == example.span(e) for e in example.entities)
    requests = server.stats.requests
    before = (out / "generated.jsonl").read_text()

    again = cli("--n", "80", "--out", str(out), "--base-url", server.base_url, "--model", "mock-species", "--concurrency", "4")
    assert again.exit_code == 0, again.output
    summary2, _, _ = files(out)
    assert summary2["calls"] == 0 and summary2["cache_hits"] >= summary["calls"] - 0
    assert server.stats.requests == requests  # not one HTTP request
    assert (out / "generated.jsonl").read_text() == before


def test_unknown_labels_in_llm_output_are_counted_not_crashed(mock_llm_factory, tmp_path):
    server = mock_llm_factory(unknown_label=1.0, error_rate=0.0)
    result = cli("--n", "10", "--out", str(tmp_path), "--base-url", server.base_url)
    assert result.exit_code == 1 and "no example kept of 10 asked: unknown_label 10" in str(result.exception)
    assert not (tmp_path / "generated.jsonl").exists()  # nothing kept: no empty data set to carry on with
    summary, kept, rejected = files(tmp_path / "last_failure")  # the rejections are there to look at
    assert summary["rejected"] == {"unknown_label": 10} and not kept
    assert "LOCATION" in rejected[0]["detail"] and rejected[0]["raw"]["text"]


def _outputs(out: Path) -> dict[str, bytes]:
    return {name: (out / name).read_bytes() for name in ("generated.jsonl", "rejected.jsonl", "generate_summary.json")}


@pytest.mark.parametrize("failure", ["unreachable", "not an LLM", "key refused", "every answer rejected"])
def test_a_failed_run_leaves_the_finished_one_as_it_was(failure, mock_llm_factory, species_spec, tmp_path):
    out, fast = tmp_path / "run", dict(backoff_initial=0.01, max_retries=0, timeout=5)
    good = mock_llm_factory(seed=1, api_key="sk-right")
    generate(species_spec, 15, out, LLMConfig(base_url=good.base_url, model="mock-species", api_key="sk-right", **fast))
    finished = _outputs(out)
    base_url, key = {
        "unreachable": ("http://127.0.0.1:9/v1", "sk-right"),
        "not an LLM": (good.base_url.removesuffix("/v1") + "/nothing/v1", "sk-right"),
        "key refused": (good.base_url, "sk-wrong"),
        "every answer rejected": (mock_llm_factory(unknown_label=1.0, error_rate=0.0).base_url, "sk-right"),
    }[failure]
    with pytest.raises(DistillError, match="untouched"):  # a new seed: nothing is cached
        generate(species_spec, 15, out, LLMConfig(base_url=base_url, model="mock-species", api_key=key, **fast), seed=9)
    assert _outputs(out) == finished
    assert (out / "last_failure" / "generate_summary.json").exists()
    generate(species_spec, 15, out, LLMConfig(base_url=good.base_url, model="mock-species", api_key="sk-right", **fast))
    again = _outputs(out)  # the same run again, all from the cache: the same examples (the summary counts cache hits)
    assert again["generated.jsonl"] == finished["generated.jsonl"] and not (out / "last_failure").exists()


def test_a_server_that_goes_away_loses_nothing_and_the_run_continues(species_spec, tmp_path):
    out, cfg = tmp_path / "run", dict(model="mock-species", backoff_initial=0.01, max_retries=1, timeout=2)
    with MockLLMServer(MockConfig(seed=1)) as first:
        generate(species_spec, 20, out, LLMConfig(base_url=first.base_url, **cfg))
    finished = _outputs(out)
    with pytest.raises(DistillError, match=r"cannot reach the LLM server .* 4 of 8 requests finished .* rerun"):
        generate(species_spec, 40, out, LLMConfig(base_url=first.base_url, **cfg))
    assert _outputs(out) == finished  # the finished 20-example run is left as it was
    summary, kept, _ = files(out / "last_failure")
    assert not summary["complete"] and summary["done_requests"] == 4 and len(kept) > 15
    with MockLLMServer(MockConfig(seed=1)) as second:  # another port: the cache still applies
        resumed = generate(species_spec, 40, out, LLMConfig(base_url=second.base_url, **cfg))
        assert resumed.calls == 4 and resumed.cache_hits == 4 and second.stats.requests == 4
    assert resumed.complete and resumed.kept + resumed.duplicates + sum(resumed.rejected.values()) == 40


def test_k_samples_give_confidence(mock_llm_factory, species_spec, tmp_path):
    clean = mock_llm_factory(error_rate=0.0, seed=2)
    summary = generate(species_spec, 10, tmp_path / "clean", LLMConfig(base_url=clean.base_url), k_samples=3)
    kept = read_jsonl(tmp_path / "clean" / "generated.jsonl")
    assert summary.mean_confidence == 1.0 and all(e.confidence == 1.0 for x in kept for e in x.entities)
    noisy = mock_llm_factory(error_rate=0.6, seed=2)
    summary = generate(species_spec, 30, tmp_path / "noisy", LLMConfig(base_url=noisy.base_url), k_samples=4)
    kept = read_jsonl(tmp_path / "noisy" / "generated.jsonl")
    scores = [e.confidence for x in kept for e in x.entities]
    assert all(0 < s <= 1 for s in scores) and min(scores) < 1 and summary.mean_confidence < 1
    assert all(x.source.confidence is not None for x in kept)


def test_cli_errors_are_one_line_with_a_non_zero_exit(tmp_path):
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "OPENAI_API_KEY": "sk-do-not-print"}
    distill = Path(sys.executable).with_name("distill")
    args = [str(distill), "generate", "--n", "5", "--out", str(tmp_path), "--base-url", f"http://127.0.0.1:{port}/v1", "--max-retries", "0"]
    done = subprocess.run(args, capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 1
    errors = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith("error: cannot reach the LLM server") and "Traceback" not in done.stderr
    assert "sk-do-not-print" not in done.stdout + done.stderr


def test_two_generates_on_one_run_folder_cannot_both_proceed(mock_llm_factory, tmp_path):
    server = mock_llm_factory(latency_s=4.0)  # the first holds the folder for about 16 s: the second starts well inside that, even on a loaded machine
    distill = str(Path(sys.executable).with_name("distill"))
    args = [distill, "generate", "--n", "20", "--out", str(tmp_path / "run"), "--base-url", server.base_url, "--model", "mock-species", "--concurrency", "1"]
    first = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lock = tmp_path / "run" / ".lock"
    for _ in range(2400):
        if lock.exists() and lock.read_text():
            break
        time.sleep(0.05)
    second = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert first.poll() is None, "the first run ended before the second started: the machine is too slow for this check"
    out, err = first.communicate(timeout=120)
    assert first.returncode == 0, err
    assert second.returncode == 1 and f"in use by pid {first.pid}" in second.stderr and "distill generate" in second.stderr
    assert server.stats.requests == 4  # the second made no call


def test_a_share_of_the_texts_names_nothing_and_is_kept(species_spec, mock_llm_factory, tmp_path):
    """Every 10th request (negative_share 0.1) asks for off-topic texts; they are kept with no
    entity (or with what the LLM wrongly tagged, for the reviewer to remove), never rejected."""
    plan = plan_requests(species_spec, 100, seed=1)
    negatives = [r for r in plan if r.negative]
    assert [r.index for r in negatives] == [9, 19] and {r.topic for r in negatives} <= set(species_spec.negative_topics)
    assert not any(r.negative for r in plan_requests(species_spec.model_copy(update={"negative_share": 0.0}), 100, seed=1))
    server = mock_llm_factory(seed=1, error_rate=0.5)
    out = tmp_path / "run"
    summary = generate(species_spec, 100, out, LLMConfig(base_url=server.base_url, model="mock-species"), seed=1)
    kept = read_jsonl(out / "generated.jsonl")
    off_topic = [e for e in kept if e.source.topic in species_spec.negative_topics]
    assert len(off_topic) == 10 and summary.rejected.get("no_entities", 0) == 0
    assert sum(1 for e in off_topic if not e.entities) >= 3  # most name nothing ...
    assert all(not server.truth[e.text].example.entities for e in off_topic)  # ... and their truth names nothing
    assert sum(1 for e in kept if e.entities) >= 80
