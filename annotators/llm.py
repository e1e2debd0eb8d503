"""One async client for any OpenAI-compatible chat API (OpenAI, vLLM, Ollama, llama.cpp, the mock).

It owns everything about talking to an LLM: configuration from the environment (the key is a
`SecretStr`, never logged), a concurrency limit, retries with backoff on 429/5xx/timeouts,
JSON-schema structured output with fallbacks (`json_object`, then a schema in the prompt) for
servers that lack it, a bounded re-ask on malformed JSON, an on-disk cache keyed by model,
messages and parameters (a rerun repeats no call) and token totals.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import openai
from pydantic import BaseModel, ConfigDict, Field, SecretStr
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from data.errors import DistillError

StructuredMode = Literal["json_schema", "json_object", "none"]
_MODES: tuple[StructuredMode, ...] = ("json_schema", "json_object", "none")
_FENCE = re.compile(r"^\s*```(?:json)?\s*(.*?)\s*```\s*$", re.DOTALL)


class LLMConfig(BaseModel):
    """How to reach the LLM and how hard to try. `from_env` fills the connection from
    `OPENAI_BASE_URL`, `OPENAI_API_KEY` and `DISTILL_LLM_MODEL`; explicit values win."""

    model_config = ConfigDict(extra="forbid")

    base_url: str | None = None
    model: str = "gpt-4o-mini"
    api_key: SecretStr | None = Field(default=None, repr=False)
    temperature: float = 0.7
    max_tokens: int | None = None
    concurrency: int = Field(default=8, ge=1)
    timeout: float = Field(default=60.0, gt=0, description="seconds for one request")
    max_retries: int = Field(default=4, ge=0, description="retries of one request on 429, 5xx, timeouts")
    backoff_initial: float = Field(default=0.5, ge=0)
    backoff_max: float = Field(default=8.0, ge=0)
    reasks: int = Field(default=2, ge=0, description="re-asks after malformed or truncated JSON")
    structured: StructuredMode = "json_schema"

    @classmethod
    def from_env(cls, **overrides: Any) -> LLMConfig:
        """Config from the environment, with non-None `overrides` (e.g. CLI flags) on top."""
        values: dict[str, Any] = {
            "base_url": os.environ.get("OPENAI_BASE_URL") or None,
            "api_key": os.environ.get("OPENAI_API_KEY") or None,
        }
        if os.environ.get("DISTILL_LLM_MODEL"):
            values["model"] = os.environ["DISTILL_LLM_MODEL"]
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def cache_params(self) -> dict[str, Any]:
        """The parameters that change an answer (and so belong in the cache key)."""
        return {"model": self.model, "temperature": self.temperature, "max_tokens": self.max_tokens}


@dataclass
class LLMStats:
    """Counters for one client: calls made, cache hits, retries, re-asks, tokens spent."""

    calls: int = 0
    cache_hits: int = 0
    retries: int = 0
    reasks: int = 0
    failed: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    fallbacks: list[str] = field(default_factory=list)

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass
class JSONAnswer:
    """The outcome of `complete_json`: the parsed value, or `None` with the reason it failed."""

    value: Any | None
    error: str | None = None
    content: str = ""
    cached: bool = False


class ResponseCache:
    """Content-addressed answers on disk: one small JSON file per request key, written atomically."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self._made: set[Path] = set()

    @staticmethod
    def key(payload: dict[str, Any]) -> str:
        blob = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        try:
            return json.loads(self._path(key).read_text(encoding="utf-8"))
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    def put(self, key: str, value: dict[str, Any]) -> None:
        path = self._path(key)
        if path.parent not in self._made:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._made.add(path.parent)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(value, handle, ensure_ascii=False)
        os.replace(tmp, path)


class RequestFailed(Exception):
    """One request failed for good (retries spent); the run goes on without it."""


def _transient(err: BaseException) -> bool:
    return isinstance(err, (openai.RateLimitError, openai.InternalServerError, openai.APITimeoutError, openai.APIConnectionError))


def parse_json(content: str) -> Any:
    """Parse an LLM's JSON answer, tolerating a Markdown code fence and text around one object."""
    match = _FENCE.match(content)
    if match:
        content = match.group(1)
    try:
        return json.loads(content)
    except json.JSONDecodeError:
        start, end = content.find("{"), content.rfind("}")
        if 0 <= start < end:
            return json.loads(content[start : end + 1])
        raise


class LLMClient:
    """Async chat client with a concurrency limit, retries, structured output, re-asks and a cache.

    Use one per run (`async with LLMClient(config, cache_dir) as llm:`); `stats` holds the totals.
    """

    def __init__(self, config: LLMConfig, cache_dir: str | Path | None = None) -> None:
        if not config.base_url:
            raise DistillError("no LLM base URL: pass --base-url, set OPENAI_BASE_URL, or start the mock with `distill mock-llm`")
        self.config = config
        self.cache = ResponseCache(cache_dir) if cache_dir else None
        self.stats = LLMStats()
        self.mode: StructuredMode = config.structured
        self._limit = asyncio.Semaphore(config.concurrency)
        key = config.api_key.get_secret_value() if config.api_key else "not-needed"
        self._client = openai.AsyncOpenAI(base_url=config.base_url, api_key=key, timeout=config.timeout, max_retries=0)

    async def __aenter__(self) -> LLMClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._client.close()

    # --- one chat completion ------------------------------------------------------------
    async def complete(self, messages: list[dict[str, str]], schema: dict[str, Any] | None = None, seed: int | None = None) -> dict[str, Any]:
        """One answer `{"content", "finish_reason", "usage"}` for `messages`, from the cache if there.

        Raises `RequestFailed` when retries are spent on 429/5xx/timeouts, and `DistillError`
        for problems no retry fixes (wrong key, unreachable server, unknown model).
        """
        payload = {**self.config.cache_params(), "messages": messages, "schema": schema, "seed": seed}
        key = ResponseCache.key(payload)
        if self.cache and (hit := self.cache.get(key)) is not None:
            self.stats.cache_hits += 1
            return {**hit, "cached": True}
        async with self._limit:
            answer = await self._with_retries(messages, schema, seed)
        self.stats.calls += 1
        usage = answer["usage"]
        self.stats.prompt_tokens += usage.get("prompt_tokens", 0)
        self.stats.completion_tokens += usage.get("completion_tokens", 0)
        if self.cache:
            self.cache.put(key, answer)
        return {**answer, "cached": False}

    async def _with_retries(self, messages: list[dict[str, str]], schema: dict[str, Any] | None, seed: int | None) -> dict[str, Any]:
        backoff = wait_exponential_jitter(multiplier=self.config.backoff_initial, max=self.config.backoff_max)

        def wait(state: RetryCallState) -> float:
            """The server's Retry-After when it sends one (capped), else exponential backoff with jitter."""
            err = state.outcome.exception() if state.outcome else None
            hinted = _retry_after(err) if isinstance(err, openai.APIStatusError) else None
            return min(hinted, self.config.backoff_max) if hinted is not None else backoff(state)

        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.config.max_retries + 1),
            wait=wait,
            retry=retry_if_exception(_transient),
            before_sleep=lambda _state: self._count_retry(),
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    return await self._call(messages, schema, seed)
        except openai.APIConnectionError as err:
            if isinstance(err, openai.APITimeoutError):
                self.stats.failed += 1
                raise RequestFailed(f"timed out after {self.config.max_retries + 1} attempts") from None
            raise DistillError(f"cannot reach the LLM server at {self.config.base_url} ({err.__class__.__name__}: {err})") from None
        except (openai.RateLimitError, openai.InternalServerError) as err:
            self.stats.failed += 1
            raise RequestFailed(f"HTTP {err.status_code} after {self.config.max_retries + 1} attempts") from None
        except openai.AuthenticationError:
            raise DistillError(f"the LLM server at {self.config.base_url} refused the API key (401): check OPENAI_API_KEY") from None
        except openai.PermissionDeniedError:
            raise DistillError(f"the LLM server at {self.config.base_url} denied access (403) for model {self.config.model!r}") from None
        except openai.NotFoundError as err:
            raise DistillError(f"the LLM server at {self.config.base_url} answered 404 for model {self.config.model!r}: {_short(err)}") from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _count_retry(self) -> None:
        self.stats.retries += 1

    async def _call(self, messages: list[dict[str, str]], schema: dict[str, Any] | None, seed: int | None) -> dict[str, Any]:
        """One HTTP request; steps down the structured-output modes if the server refuses one."""
        while True:
            kwargs = self._request_kwargs(messages, schema, seed)
            try:
                # the client's generic POST: same auth, errors and timeouts as `chat.completions.create`,
                # without its per-request walk over the params (about 7 ms for a schema-sized body)
                response = await self._client.post("/chat/completions", body=kwargs, cast_to=dict)
            except openai.BadRequestError as err:
                if schema is not None and self.mode != "none" and "response_format" in str(err).lower() + str(err.body).lower():
                    self.mode = _MODES[_MODES.index(self.mode) + 1]
                    self.stats.fallbacks.append(self.mode)
                    continue
                raise DistillError(f"the LLM server at {self.config.base_url} rejected the request (400): {_short(err)}") from None
            try:
                choice = response["choices"][0]
                usage = response.get("usage") or {}
                return {
                    "content": choice["message"].get("content") or "",
                    "finish_reason": choice.get("finish_reason"),
                    "usage": {"prompt_tokens": usage.get("prompt_tokens") or 0, "completion_tokens": usage.get("completion_tokens") or 0},
                }
            except (KeyError, IndexError, TypeError, AttributeError):
                raise RequestFailed(f"the server's answer is not a chat completion: {str(response)[:200]}") from None

    def _request_kwargs(self, messages: list[dict[str, str]], schema: dict[str, Any] | None, seed: int | None) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"model": self.config.model, "messages": messages, "temperature": self.config.temperature}
        if self.config.max_tokens:
            kwargs["max_tokens"] = self.config.max_tokens
        if seed is not None:
            kwargs["seed"] = seed
        if schema is not None:
            if self.mode == "json_schema":
                kwargs["response_format"] = {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema, "strict": True}}
            else:
                hint = f"\nAnswer with one JSON object that matches this JSON schema:\n{json.dumps(schema)}"
                kwargs["messages"] = [*messages[:-1], {**messages[-1], "content": messages[-1]["content"] + hint}]
                if self.mode == "json_object":
                    kwargs["response_format"] = {"type": "json_object"}
        return kwargs

    # --- JSON with re-asks --------------------------------------------------------------
    async def complete_json(
        self,
        messages: list[dict[str, str]],
        schema: dict[str, Any] | None = None,
        seed: int | None = None,
        check: Callable[[Any], str | None] | None = None,
    ) -> JSONAnswer:
        """Ask for JSON; on malformed, truncated or (per `check`) wrongly shaped JSON, re-ask up to
        `config.reasks` times, showing the model its answer and the problem.

        Returns the parsed value, or `value=None` with the last problem. Raises like `complete`.
        """
        answer: dict[str, Any] = {}
        problem = "no answer"
        cached = True
        for attempt in range(self.config.reasks + 1):
            if attempt:
                self.stats.reasks += 1
            answer = await self.complete(messages, schema, seed)
            cached = cached and answer["cached"]
            content = answer["content"]
            problem = None
            if answer.get("finish_reason") == "length":
                problem = "the answer was cut off (finish_reason=length)"
            else:
                try:
                    value = parse_json(content)
                except json.JSONDecodeError as err:
                    problem = f"the answer is not valid JSON ({err.msg} at char {err.pos})"
                else:
                    problem = check(value) if check else None
                    if problem is None:
                        return JSONAnswer(value=value, content=content, cached=cached)
            messages = [
                *messages,
                {"role": "assistant", "content": content},
                {"role": "user", "content": f"Your answer could not be used: {problem}. Answer again with the complete JSON only."},
            ]
        return JSONAnswer(value=None, error=problem, content=answer.get("content", ""), cached=cached)


def _retry_after(err: openai.APIStatusError) -> float | None:
    """Seconds from a `retry-after-ms` or `retry-after` header, if the server sent one."""
    headers = err.response.headers
    try:
        if "retry-after-ms" in headers:
            return float(headers["retry-after-ms"]) / 1000
        if "retry-after" in headers:
            return float(headers["retry-after"])
    except ValueError:
        return None
    return None


def _short(err: openai.APIStatusError) -> str:
    """The server's own error message, short."""
    body = err.body
    if isinstance(body, dict):
        inner = body.get("error")
        message = inner.get("message") if isinstance(inner, dict) else body.get("message")
        if message:
            return str(message)[:200]
    return str(err)[:200]
