"""The client and `distill generate` against a server that behaves as llama.cpp's llama-server,
llama-cpp-python, vLLM and Ollama were seen to behave (tests/annotators/fake_servers.py)."""

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from distill_ner.annotators.cli import app
from distill_ner.annotators.generate import generate
from distill_ner.annotators.llm import LLMClient, LLMConfig
from distill_ner.data.errors import DistillError
from tests.annotators.fake_servers import FakeLLM, error

runner = CliRunner()
FAST = {"backoff_initial": 0.01, "backoff_max": 0.02, "timeout": 10.0}


def cfg(server: FakeLLM, **kw) -> LLMConfig:
    return LLMConfig(base_url=server.base_url, model="fake", **{**FAST, **kw})


def rows(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "rejected.jsonl").read_text().splitlines()]


def distill(*args: str) -> subprocess.CompletedProcess:
    exe = str(Path(sys.executable).with_name("distill"))
    return subprocess.run([exe, *args], capture_output=True, text=True, timeout=120, env={**os.environ, "OPENAI_API_KEY": "not-needed"})


def test_llama_cpp_python_500_on_json_schema_steps_down_at_once(species_spec, tmp_path):
    with FakeLLM(json_schema_status=500) as server:
        result = runner.invoke(app, ["generate", "--n", "10", "--out", str(tmp_path / "run"), "--base-url", server.base_url, "--model", "fake", "--concurrency", "3"])
        formats = server.formats()
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "run" / "generate_summary.json").read_text())
    assert summary["kept"] == 10 and summary["retries"] == 0
    assert summary["structured_mode"] == "json_object_schema"
    assert formats.count("json_schema") <= 3 and formats.count("json_object") == 2  # at most the first requests in flight
    assert "Input should be 'text' or 'json_object'" in summary["fallbacks"][0]
    assert "Input should be 'text' or 'json_object'" in result.output  # the server's own words reach the user


def test_a_refused_schema_bound_is_dropped_and_json_schema_kept(species_spec, tmp_path):
    with FakeLLM(bounds_status=400) as server:
        summary = generate(species_spec, 5, tmp_path, cfg(server))
        schemas = [b["response_format"]["json_schema"]["schema"] for b in server.bodies]
    assert schemas[0]["properties"]["examples"]["maxItems"] == 5 == schemas[0]["properties"]["examples"]["minItems"]
    assert summary.kept == 5 and summary.structured_mode == "json_schema"
    assert "maxItems" not in json.dumps(schemas[-1]) and "not permitted" in summary.fallbacks[0]
    assert "minItems" in json.dumps(schemas[-1]) and "maxLength" in json.dumps(schemas[-1])  # only what the server named is dropped


def test_a_reask_after_a_runaway_answer_fits_the_context(species_spec, tmp_path):
    # the first answer runs on for 6,000 characters; a re-ask that quoted it whole would be refused (400 context size)
    with FakeLLM(runaway=True, context_chars=5000) as server:
        summary = generate(species_spec, 10, tmp_path, cfg(server, concurrency=2))
        reasks = [b["messages"] for b in server.bodies if any(m["role"] == "assistant" for m in b["messages"])]
    assert summary.kept == 10 and summary.reasks == 2 and summary.complete
    assert all(len(m[-2]["content"]) < 400 for m in reasks)  # a short prefix of the bad answer, not all of it


def test_a_context_length_error_is_one_request_rejected_not_the_run(species_spec, tmp_path):
    def hook(body, n):
        if n == 1:
            return error(400, "request (4134 tokens) exceeds the available context size (4096 tokens), try increasing it", "exceed_context_size_error")
        return None

    with FakeLLM(hook=hook) as server:
        summary = generate(species_spec, 12, tmp_path, cfg(server, concurrency=1))
    out = rows(tmp_path)
    assert summary.complete and summary.kept == 7 and summary.rejected == {"context_length": 5}
    assert all("exceeds the available context size (4096 tokens)" in r["detail"] for r in out if r["reason"] == "context_length")


def test_an_answer_cut_off_is_asked_again_with_a_larger_budget_and_another_seed(species_spec, tmp_path):
    with FakeLLM(cut_below=800) as server:
        summary = generate(species_spec, 5, tmp_path, cfg(server, max_tokens=500))
        sent = [(b["max_tokens"], b["seed"], len(b["messages"])) for b in server.bodies]
    assert summary.kept == 5
    assert [s[0] for s in sent] == [500, 1000] and sent[0][1] != sent[1][1]
    assert sent[1][2] == sent[0][2]  # asked afresh: the cut-off answer is not appended


def test_max_tokens_scales_with_examples_per_call(species_spec, tmp_path):
    with FakeLLM() as server:
        generate(species_spec.model_copy(update={"examples_per_call": 3}), 6, tmp_path, cfg(server))
        budgets = {b["max_tokens"] for b in server.bodies}
    with FakeLLM() as server:
        generate(species_spec.model_copy(update={"examples_per_call": 1}), 1, tmp_path / "one", cfg(server))
        budgets_one = {b["max_tokens"] for b in server.bodies}
    assert len(budgets) == 1 and len(budgets_one) == 1 and budgets.pop() > budgets_one.pop() > 0


@pytest.mark.parametrize("style", ["prose", "list"])
def test_a_server_that_ignores_response_format(style, species_spec, tmp_path):
    """Prose and a code fence around the JSON (with braces of its own after it), or a bare list."""
    with FakeLLM(style=style) as server:
        summary = generate(species_spec, 10, tmp_path, cfg(server))
    assert summary.kept == 10 and summary.reasks == 0


def test_every_http_status_is_a_rejection_or_one_line(tmp_path):
    def hook(body, n):
        return [
            error(422, "unprocessable"),
            (422, {"detail": [{"loc": ["body", "seed"], "msg": "Input should be a valid integer"}]}),
            error(413, "payload too large"),
            error(400, "the model cannot do that"),
        ][n % 4]

    with FakeLLM(hook=hook) as server:
        done = distill("generate", "--n", "20", "--out", str(tmp_path / "run"), "--base-url", server.base_url, "--model", "fake", "--concurrency", "1")
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 1 and "Traceback" not in done.stderr and len(lines) == 1, done.stderr
    assert lines[0].startswith("error: no example kept of 20 asked: llm_rejected 20") and "HTTP 4" in lines[0]
    rejected = rows(tmp_path / "run" / "last_failure")
    assert {r["detail"] for r in rejected} >= {"HTTP 422: unprocessable", "HTTP 422: body.seed: Input should be a valid integer", "HTTP 413: payload too large"}


def test_a_failure_share_above_the_limit_fails_the_run_and_keeps_the_earlier_outputs(tmp_path):
    out = tmp_path / "run"
    with FakeLLM() as good:
        assert distill("generate", "--n", "5", "--out", str(out), "--base-url", good.base_url, "--model", "fake").returncode == 0
    before = (out / "generated.jsonl").read_bytes()

    def hook(body, n):  # 3 of every 5 examples mention what their text does not contain
        answer = FakeLLM().respond({**body, "response_format": None}, n)[1]
        items = json.loads(answer["choices"][0]["message"]["content"])["examples"]
        for it in items[:3]:
            it["entities"][1]["text"] = "a habitat nowhere in the text"
        answer["choices"][0]["message"]["content"] = json.dumps({"examples": items})
        return 200, answer

    with FakeLLM(hook=hook) as bad:
        args = ["generate", "--n", "10", "--seed", "3", "--out", str(out), "--base-url", bad.base_url, "--model", "fake"]
        failed = distill(*args)
        allowed = distill(*args, "--max-failure-share", "0.7")
    lines = [line for line in failed.stderr.splitlines() if line.strip()]
    assert failed.returncode == 1 and len(lines) == 1, failed.stderr
    assert "6 of 10 asked were rejected (60%, above the allowed 50%" in lines[0] and "mention_not_found 6" in lines[0]
    assert allowed.returncode == 0, allowed.stderr
    assert before != (out / "generated.jsonl").read_bytes()  # the allowed run replaced them
    assert (out / "last_failure").exists() is False


def test_a_failed_share_leaves_the_finished_run_as_it_was(species_spec, tmp_path):
    with FakeLLM() as good:
        generate(species_spec, 5, tmp_path, cfg(good))
    before = (tmp_path / "generated.jsonl").read_bytes()
    with FakeLLM(hook=lambda body, n: error(400, "no") if n < 3 else None) as flaky:
        with pytest.raises(DistillError, match=r"10 of 15 asked were rejected .* above the allowed 50%.*untouched"):
            generate(species_spec, 15, tmp_path, cfg(flaky, concurrency=1), seed=5)
    assert (tmp_path / "generated.jsonl").read_bytes() == before


def test_a_timeout_retries_with_another_seed(species_spec, tmp_path):
    # the first request hangs past the timeout, as a small model looping inside a JSON grammar does
    with FakeLLM(slow_first_s=3.0) as server:
        summary = generate(species_spec, 5, tmp_path, cfg(server, timeout=1.0))
        seeds = [b["seed"] for b in server.bodies]
    assert len(seeds) == 2 and seeds[0] != seeds[1]
    assert summary.kept == 5 and summary.timeouts == 1 and summary.retries == 1


def test_retries_and_timeouts_are_heard_as_they_happen(species_spec, tmp_path):
    with FakeLLM(slow_first_s=3.0) as server:
        events: list[str] = []
        generate(species_spec, 5, tmp_path, cfg(server, timeout=1.0), on_event=events.append)
    assert events.count("timeout") == 1 and events.count("retry") == 1 and events.count("sent") == 2


def test_the_progress_bar_shows_retries_timeouts_and_reasks(tmp_path):
    with FakeLLM(runaway=True) as server:
        result = runner.invoke(app, ["generate", "--n", "5", "--out", str(tmp_path / "run"), "--base-url", server.base_url, "--model", "fake"])
    assert result.exit_code == 0, result.output
    assert "in flight 0 · re-asks 1" in result.output


def test_a_malformed_answer_keeps_each_attempt_once(species_spec, tmp_path):
    def hook(body, n):
        return 200, {"choices": [{"message": {"content": f"attempt {n}: not JSON at all"}, "finish_reason": "stop"}], "usage": {}}

    with FakeLLM(hook=hook) as server:
        with pytest.raises(DistillError, match="no example kept"):
            generate(species_spec, 5, tmp_path, cfg(server, reasks=2))
    out = rows(tmp_path / "last_failure")
    assert len(out) == 5 and all(r["reason"] == "malformed_output" for r in out)
    assert [a["content"] for a in out[0]["raw"]["attempts"]] == ["attempt 1: not JSON at all", "attempt 2: not JSON at all", "attempt 3: not JSON at all"]
    assert all(r["raw"] is None for r in out[1:])
    assert len((tmp_path / "last_failure" / "rejected.jsonl").read_text()) < 2000


def test_a_run_config_sets_every_llm_bound(tmp_path):
    from distill_ner.flows.config import load_run_config
    from distill_ner.flows.distill_flow import generate_batch

    overrides = [f"runs_dir={tmp_path}", "llm.max_tokens=321", "llm.temperature=0.1", "llm.structured=json_object", "llm.reasks=0", "llm.timeout=7", "llm.grounding.min_entities=4"]
    config = load_run_config("demo", overrides)
    requests = [{"index": 0, "topic": "Olm (Proteus anguinus)", "n": 2, "sample": 0, "seed": 0}]
    with FakeLLM() as server:
        batch = generate_batch.fn(config.model_dump(mode="json"), requests, server.base_url)
        body = server.bodies[0]
    assert (body["max_tokens"], body["temperature"], body["response_format"]) == (321, 0.1, {"type": "json_object"})
    assert [r["reason"] for o in batch["outcomes"] for r in o["rejected"]] == ["no_entities", "no_entities"]  # 3 entities each, 4 required


def test_a_client_hears_each_event_once_per_request(tmp_path):
    async def ask(url):
        events: list[str] = []
        async with LLMClient(LLMConfig(base_url=url, model="fake", **FAST), on_event=events.append) as llm:
            await llm.complete([{"role": "user", "content": "Topic: Olm\nWrite 1 sentence."}])
        return events

    with FakeLLM() as server:
        assert asyncio.run(ask(server.base_url)) == ["sent", "answered"]


def test_the_run_config_defaults_are_the_clients():
    from distill_ner.flows.config import LLMSection

    section, client = LLMSection(), LLMConfig()
    assert {k: v for k, v in section.client_settings().items() if k != "model"} == {k: getattr(client, k) for k in section.client_settings() if k != "model"}
    assert set(LLMSection.model_fields["structured"].annotation.__args__) == set(LLMConfig.model_fields["structured"].annotation.__args__)


@pytest.fixture(scope="module")
def prefect():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        yield


def test_a_flow_stops_at_a_failure_share_above_the_limit(prefect, tmp_path):
    from distill_ner.flows.config import load_run_config
    from distill_ner.flows.distill_flow import generate_stage

    config = load_run_config(None, [f"runs_dir={tmp_path}", "name=share", "llm.n=15", "llm.concurrency=1", "generation_batches=1", "llm.max_retries=0"])
    with FakeLLM(hook=lambda body, n: error(422, "unprocessable") if n < 3 else None) as server:
        with pytest.raises(DistillError, match=r"10 of 15 asked were rejected .*llm_rejected 10 \(HTTP 422: unprocessable\)"):
            generate_stage(config, server.base_url)
    assert not (tmp_path / "share" / "generated.jsonl").exists() and (tmp_path / "share" / "last_failure" / "generated.jsonl").exists()
