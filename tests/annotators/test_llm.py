import asyncio
import json
import socket

import pytest

from distill_ner.annotators.llm import LLMClient, LLMConfig, RequestFailed, ResponseCache, parse_json
from distill_ner.data.errors import DistillError

SCHEMA = {"type": "object", "properties": {"examples": {"type": "array"}}, "required": ["examples"]}
MESSAGES = [{"role": "system", "content": "sys"}, {"role": "user", "content": "Topic: Olm (Proteus anguinus)\nWrite 2 different sentences."}]


def config(url: str, **kw) -> LLMConfig:
    kw = {"backoff_initial": 0.01, "backoff_max": 0.02, "timeout": 5.0, **kw}
    return LLMConfig(base_url=url, model="mock-species", **kw)


def run(coro):
    return asyncio.run(coro)


async def ask(cfg, cache_dir=None, messages=MESSAGES, schema=SCHEMA, seed=0):
    async with LLMClient(cfg, cache_dir) as llm:
        answer = await llm.complete_json(messages, schema, seed=seed)
        return answer, llm.stats


def test_config_reads_the_environment_and_hides_the_key(monkeypatch):
    monkeypatch.setenv("OPENAI_BASE_URL", "http://example.invalid/v1")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret-123")
    monkeypatch.setenv("DISTILL_LLM_MODEL", "llama3")
    cfg = LLMConfig.from_env(model=None, concurrency=3)
    assert (cfg.base_url, cfg.model, cfg.concurrency) == ("http://example.invalid/v1", "llama3", 3)
    assert cfg.api_key.get_secret_value() == "sk-secret-123"
    assert "sk-secret" not in repr(cfg) and "sk-secret" not in cfg.model_dump_json()
    assert LLMConfig.from_env(base_url="http://other/v1").base_url == "http://other/v1"


def test_parse_json_tolerates_fences_and_chatter():
    assert parse_json('```json\n{"a": 1}\n```') == {"a": 1}
    assert parse_json('Sure! Here it is: {"a": [1, 2]} Hope this helps.') == {"a": [1, 2]}
    with pytest.raises(json.JSONDecodeError):
        parse_json('{"a": ')


def test_cache_key_covers_model_messages_and_parameters():
    base = {"model": "m", "messages": MESSAGES, "temperature": 0.7, "seed": 0, "schema": SCHEMA}
    keys = {
        ResponseCache.key(base),
        ResponseCache.key({**base, "model": "other"}),
        ResponseCache.key({**base, "temperature": 0.2}),
        ResponseCache.key({**base, "seed": 1}),
        ResponseCache.key({**base, "messages": MESSAGES[:1]}),
    }
    assert len(keys) == 5
    assert ResponseCache.key(dict(reversed(base.items()))) == ResponseCache.key(base)


def test_answers_are_cached_so_a_rerun_makes_no_call(mock_llm_server, tmp_path):
    first, stats1 = run(ask(config(mock_llm_server.base_url), tmp_path))
    requests = mock_llm_server.stats.requests
    second, stats2 = run(ask(config(mock_llm_server.base_url), tmp_path))
    assert first.value == second.value and len(first.value["examples"]) == 2
    assert (stats1.calls, stats2.calls, stats2.cache_hits) == (1, 0, 1)
    assert mock_llm_server.stats.requests == requests
    assert stats1.prompt_tokens > 0 and stats1.completion_tokens > 0


def test_retries_on_429_and_500(mock_llm_factory):
    server = mock_llm_factory(rate_limit=0.4, server_error=0.4, seed=3)
    answers = []
    for seed in range(6):
        answer, stats = run(ask(config(server.base_url, max_retries=12), seed=seed))
        answers.append(answer)
    assert all(a.value is not None for a in answers)
    assert server.stats.faults["rate_limit"] + server.stats.faults["server_error"] > 0
    assert server.stats.requests > server.stats.completions


def test_request_fails_for_good_after_bounded_retries(mock_llm_factory):
    server = mock_llm_factory(server_error=1.0)
    with pytest.raises(RequestFailed, match="HTTP 500 after 3 attempts"):
        run(ask(config(server.base_url, max_retries=2)))
    assert server.stats.requests == 3


def test_timeouts_are_retried(mock_llm_factory):
    server = mock_llm_factory(delay=0.5, delay_s=1.0, seed=1)
    answers = [run(ask(config(server.base_url, timeout=0.3, max_retries=8), seed=s))[0] for s in range(3)]
    assert all(a.value is not None for a in answers)


def test_malformed_and_truncated_json_is_re_asked(mock_llm_factory):
    server = mock_llm_factory(malformed=0.3, truncated=0.2, seed=2)
    # half the answers are faulty, independently per attempt: 10 re-asks leave 1 in 2,000 unanswered
    results = [run(ask(config(server.base_url, reasks=10, max_tokens=1000), seed=s)) for s in range(6)]
    assert all(answer.value is not None for answer, _ in results)
    assert sum(stats.reasks for _, stats in results) >= 1
    server = mock_llm_factory(malformed=1.0)
    answer, stats = run(ask(config(server.base_url, reasks=2)))
    assert answer.value is None and "not valid JSON" in answer.error and stats.reasks == 2 and stats.calls == 3
    assert answer.reason == "malformed_output" and len(answer.attempts) == 3
    server = mock_llm_factory(truncated=1.0)  # no token budget to raise: asking again would be cut off again
    answer, stats = run(ask(config(server.base_url, reasks=2)))
    assert answer.value is None and answer.reason == "truncated" and stats.reasks == 0 and stats.calls == 1


def test_falls_back_when_the_server_lacks_json_schema(mock_llm_factory):
    server = mock_llm_factory(json_schema=False)
    answer, stats = run(ask(config(server.base_url)))
    assert answer.value is not None and len(answer.value["examples"]) == 2
    assert stats.fallbacks == ["json_object_schema"] and "not supported" in stats.fallback_notes[0]


def test_a_wrong_key_is_a_one_line_error(mock_llm_factory, monkeypatch):
    server = mock_llm_factory(api_key="right-key")
    monkeypatch.setenv("OPENAI_API_KEY", "wrong-key")
    cfg = LLMConfig.from_env(base_url=server.base_url, backoff_initial=0.01)
    with pytest.raises(DistillError, match="refused the API key") as err:
        run(ask(cfg))
    assert "wrong-key" not in str(err.value)
    monkeypatch.setenv("OPENAI_API_KEY", "right-key")
    assert run(ask(LLMConfig.from_env(base_url=server.base_url)))[0].value is not None


def test_an_unreachable_server_is_a_one_line_error():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(DistillError, match=f"cannot reach the LLM server at http://127.0.0.1:{port}/v1"):
        run(ask(config(f"http://127.0.0.1:{port}/v1", max_retries=1, timeout=1)))


def test_no_base_url_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(DistillError, match="no LLM base URL"):
        LLMClient(LLMConfig.from_env())
