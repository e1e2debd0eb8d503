"""One async client for any OpenAI-compatible chat API (OpenAI, vLLM, Ollama, llama.cpp, the mock).

It owns everything about talking to an LLM: configuration from the environment (the key is a
`SecretStr`, never logged), a concurrency limit, retries with backoff on 429/5xx/timeouts (a new
seed after a timeout), structured output that steps down (`json_schema`, then `json_object` with
the schema, then plain `json_object`, then the schema in the prompt) as soon as a server refuses
a form, a bounded re-ask on malformed JSON (quoting only a short prefix of the bad answer) and on
answers cut off by the token budget (asking again with a larger budget), an on-disk cache keyed by
model, messages and parameters (a rerun repeats no call) and token totals.

Every HTTP status ends either as a per-request `RequestFailed` (with a reason code and the
server's own message; the run goes on) or as a one-line fatal `DistillError` (401, 403, 404, 405,
an unreachable server).
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

from distill_ner.annotators.llm_settings import STRUCTURED_MODES, ClientSettings, StructuredMode
from distill_ner.data.errors import DistillError

REASK_QUOTE = 300  # characters of a bad answer quoted back in a re-ask
_FENCE = re.compile(r"```(?:json)?\s*(.*?)\s*```", re.DOTALL)
_CONTEXT = re.compile(r"context[ _-]?(size|length|window)|context_length_exceeded|prompt is too long|too many tokens|maximum context", re.I)
_STRUCTURED = re.compile(r"response_format|json_schema|json_object|structured output|guided_json", re.I)
_BOUND_KEYS = ("minItems", "maxItems", "minLength", "maxLength")
_TRANSIENT_STATUS = {408, 409, 429}
Event = Literal["sent", "answered", "retry", "timeout", "reask", "fallback"]


class LLMConfig(ClientSettings):
    """How to reach the LLM and how hard to try (`ClientSettings`, plus the connection). `from_env`
    fills the connection from `OPENAI_BASE_URL`, `OPENAI_API_KEY` and `DISTILL_LLM_MODEL`;
    explicit values win."""

    base_url: str | None = None
    api_key: SecretStr | None = Field(default=None, repr=False)
    backoff_initial: float = Field(default=0.5, ge=0)
    backoff_max: float = Field(default=8.0, ge=0)

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
    """Counters for one client: calls made, cache hits, retries, timeouts, re-asks, tokens spent,
    and the structured-output step-downs (`fallbacks`: modes; `fallback_notes`: the server's words)."""

    calls: int = 0
    cache_hits: int = 0
    retries: int = 0
    timeouts: int = 0
    reasks: int = 0
    failed: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    fallbacks: list[str] = field(default_factory=list)
    fallback_notes: list[str] = field(default_factory=list)


@dataclass
class JSONAnswer:
    """The outcome of `complete_json`: the parsed value, or `None` with the reason code and the
    problem; `attempts` holds each attempt once (its problem and content)."""

    value: Any | None
    error: str | None = None
    content: str = ""
    cached: bool = False
    reason: str | None = None
    attempts: list[dict[str, Any]] = field(default_factory=list)


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
    """One request failed for good; the run goes on without it. `reason` is a short code
    (`llm_error`, `llm_timeout`, `context_length`, `llm_rejected`, `not_a_completion`)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def _transient(err: BaseException) -> bool:
    if isinstance(err, (openai.APITimeoutError, openai.APIConnectionError)):
        return True
    return isinstance(err, openai.APIStatusError) and (err.status_code in _TRANSIENT_STATUS or err.status_code >= 500)


def parse_json(content: str) -> Any:
    """Parse an LLM's JSON answer, tolerating Markdown code fences and prose around the JSON
    (even prose with braces of its own): the first top-level object or list that decodes wins.
    A broken object is not mined for fragments (that is a malformed answer)."""
    try:
        return json.loads(content)
    except json.JSONDecodeError as err:
        first = err
    decoder = json.JSONDecoder()
    for text in [m.group(1) for m in _FENCE.finditer(content)] + [content]:
        for start in _top_level_starts(text):
            try:
                value, _ = decoder.raw_decode(text, start)
            except json.JSONDecodeError:
                continue
            if isinstance(value, dict) or (isinstance(value, list) and value):
                return value
    raise first


def _top_level_starts(text: str, limit: int = 64) -> list[int]:
    """Positions of `{` or `[` outside any bracket opened before them (strings inside brackets skipped)."""
    starts: list[int] = []
    depth, in_string, escaped = 0, False, False
    for i, ch in enumerate(text):
        if in_string:
            escaped, in_string = (False, True) if escaped else (ch == "\\", ch != '"')
            continue
        if ch in "{[":
            if depth == 0:
                starts.append(i)
                if len(starts) >= limit:
                    break
            depth += 1
        elif ch in "}]":
            depth = max(0, depth - 1)
        elif ch == '"' and depth > 0:
            in_string = True
    return starts


def strip_bounds(schema: Any, keys: frozenset[str] | tuple[str, ...] = _BOUND_KEYS) -> Any:
    """`schema` without the bound keywords `keys` (default: all of minItems, maxItems,
    minLength, maxLength), for servers that refuse them."""
    if isinstance(schema, dict):
        return {k: strip_bounds(v, keys) for k, v in schema.items() if k not in keys}
    if isinstance(schema, list):
        return [strip_bounds(v, keys) for v in schema]
    return schema


def next_seed(seed: int | None, attempt: int) -> int:
    """Another seed for the `attempt`-th repeat of a request (after a timeout or a cut-off answer)."""
    return ((seed or 0) + 7919 * attempt) % (2**31)


def _quote(content: str) -> str:
    """A short prefix of a bad answer, to show the model in a re-ask without filling its context."""
    if len(content) <= REASK_QUOTE:
        return content
    return content[:REASK_QUOTE] + f" … [{len(content) - REASK_QUOTE} more characters cut]"


class LLMClient:
    """Async chat client with a concurrency limit, retries, structured output, re-asks and a cache.

    Use one per run (`async with LLMClient(config, cache_dir) as llm:`); `stats` holds the totals
    and `on_event` (if given) hears each `Event` as it happens (for a live progress display).
    """

    def __init__(self, config: LLMConfig, cache_dir: str | Path | None = None, on_event: Callable[[str], None] | None = None) -> None:
        if not config.base_url:
            raise DistillError("no LLM base URL: pass --base-url, set OPENAI_BASE_URL, or start the mock with `distill mock-llm`")
        self.config = config
        self.cache = ResponseCache(cache_dir) if cache_dir else None
        self.stats = LLMStats()
        self.mode: StructuredMode = config.structured
        self.dropped: frozenset[str] = frozenset() if config.schema_bounds else frozenset(_BOUND_KEYS)  # bound keywords not sent
        self.on_event = on_event
        self._limit = asyncio.Semaphore(config.concurrency)
        key = config.api_key.get_secret_value() if config.api_key else "not-needed"
        self._client = openai.AsyncOpenAI(base_url=config.base_url, api_key=key, timeout=config.timeout, max_retries=0)

    async def __aenter__(self) -> LLMClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._client.close()

    def _emit(self, event: Event) -> None:
        if self.on_event:
            self.on_event(event)

    # --- one chat completion ------------------------------------------------------------
    async def complete(
        self, messages: list[dict[str, str]], schema: dict[str, Any] | None = None, seed: int | None = None, max_tokens: int | None = None
    ) -> dict[str, Any]:
        """One answer `{"content", "finish_reason", "usage"}` for `messages`, from the cache if there.

        `max_tokens` (else `config.max_tokens`) bounds the answer. Raises `RequestFailed` when
        the request fails for good (retries spent, context too long, another 4xx), and
        `DistillError` for problems no retry fixes (wrong key, unreachable server, unknown model).
        """
        budget = max_tokens or self.config.max_tokens
        payload = {**self.config.cache_params(), "max_tokens": budget, "messages": messages, "schema": schema, "seed": seed}
        key = ResponseCache.key(payload)
        if self.cache and (hit := self.cache.get(key)) is not None:
            self.stats.cache_hits += 1
            return {**hit, "cached": True}
        async with self._limit:
            try:
                answer = await self._with_retries(messages, schema, seed, budget)
            except RequestFailed:
                self.stats.failed += 1
                raise
        self.stats.calls += 1
        usage = answer["usage"]
        self.stats.prompt_tokens += usage.get("prompt_tokens", 0)
        self.stats.completion_tokens += usage.get("completion_tokens", 0)
        if self.cache:
            self.cache.put(key, answer)
        return {**answer, "cached": False}

    async def _with_retries(self, messages: list[dict[str, str]], schema: dict[str, Any] | None, seed: int | None, budget: int | None) -> dict[str, Any]:
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
        attempts = self.config.max_retries + 1
        current = seed
        try:
            async for attempt in retrying:
                with attempt:
                    try:
                        return await self._call(messages, schema, current, budget)
                    except openai.APITimeoutError:
                        self.stats.timeouts += 1
                        self._emit("timeout")
                        current = next_seed(seed, attempt.retry_state.attempt_number)  # the same seed may loop the same way
                        raise
        except openai.APITimeoutError:
            raise RequestFailed("llm_timeout", f"no answer within {self.config.timeout:g} s, {attempts} attempts (raise --timeout or lower --max-tokens)") from None
        except openai.APIConnectionError as err:
            raise DistillError(f"cannot reach the LLM server at {self.config.base_url} ({err.__class__.__name__}: {err})") from None
        except openai.APIStatusError as err:
            raise RequestFailed("llm_error", f"HTTP {err.status_code} after {attempts} attempts: {_short(err)}") from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _count_retry(self) -> None:
        self.stats.retries += 1
        self._emit("retry")

    async def _call(self, messages: list[dict[str, str]], schema: dict[str, Any] | None, seed: int | None, budget: int | None) -> dict[str, Any]:
        """One HTTP request; steps down the structured-output modes (and drops schema bounds) at
        once if the server refuses them, and sorts every other error status."""
        while True:
            mode, dropped = self.mode, self.dropped
            kwargs = self._request_kwargs(messages, schema, seed, budget, mode, dropped)
            self._emit("sent")
            try:
                # the client's generic POST: same auth, errors and timeouts as `chat.completions.create`,
                # without its per-request walk over the params (about 7 ms for a schema-sized body)
                response = await self._client.post("/chat/completions", body=kwargs, cast_to=dict)
            except openai.APIStatusError as err:
                self._emit("answered")
                if self._step_down(err, schema, mode, dropped):
                    continue
                raise self._classify(err) from None
            except (openai.APIResponseValidationError, ValueError) as err:
                self._emit("answered")
                raise RequestFailed("not_a_completion", f"the server's answer is not JSON: {str(err)[:200]}") from None
            except BaseException:
                self._emit("answered")
                raise
            self._emit("answered")
            try:
                choice = response["choices"][0]
                usage = response.get("usage") or {}
                return {
                    "content": choice["message"].get("content") or "",
                    "finish_reason": choice.get("finish_reason"),
                    "usage": {"prompt_tokens": usage.get("prompt_tokens") or 0, "completion_tokens": usage.get("completion_tokens") or 0},
                }
            except (KeyError, IndexError, TypeError, AttributeError):
                raise RequestFailed("not_a_completion", f"the server's answer is not a chat completion: {str(response)[:200]}") from None

    def _step_down(self, err: openai.APIStatusError, schema: dict[str, Any] | None, mode: StructuredMode, dropped: frozenset[str]) -> bool:
        """Whether `err` refuses the structured-output form (or a bound keyword of the schema) just
        used; if so, the client moves to the next form, or drops the keywords the server named,
        for every later request (once, however many requests in flight hear the same refusal)."""
        if schema is None or err.status_code in (401, 403, 404, 429):
            return False
        text = _error_text(err)
        named = {k for k in _BOUND_KEYS if k.lower() in _short(err).lower()} - dropped  # the message, not an echo of the schema
        if named:
            if named - self.dropped:
                self.dropped |= named
                self._note_fallback("without " + ", ".join(sorted(named)), err)
            return True
        if mode != "none" and _STRUCTURED.search(text):
            if self.mode == mode:
                self.mode = STRUCTURED_MODES[STRUCTURED_MODES.index(mode) + 1]
                self._note_fallback(self.mode, err)
            return True
        return False

    def _note_fallback(self, to: str, err: openai.APIStatusError) -> None:
        self.stats.fallbacks.append(to)
        self.stats.fallback_notes.append(f"HTTP {err.status_code} {_short(err)} -> {to}")
        self._emit("fallback")

    def _classify(self, err: openai.APIStatusError) -> Exception:
        """A fatal `DistillError` for what no other request would survive, else a per-request
        `RequestFailed` (or the error itself, to be retried, for 408/409/429/5xx)."""
        status, url, message = err.status_code, self.config.base_url, _short(err)
        if status == 401:
            return DistillError(f"the LLM server at {url} refused the API key (401): check OPENAI_API_KEY")
        if status == 403:
            return DistillError(f"the LLM server at {url} denied access (403) for model {self.config.model!r}")
        if status == 404:
            return DistillError(f"the LLM server at {url} answered 404 for model {self.config.model!r}: {message}")
        if status == 405:
            return DistillError(f"the LLM server at {url} does not take POST /chat/completions (405): is it an OpenAI-compatible /v1 URL?")
        if status != 429 and _CONTEXT.search(_error_text(err)):
            return RequestFailed("context_length", f"HTTP {status}: {message}")
        if _transient(err):
            return err
        return RequestFailed("llm_rejected", f"HTTP {status}: {message}")

    def _request_kwargs(
        self, messages: list[dict[str, str]], schema: dict[str, Any] | None, seed: int | None, budget: int | None, mode: StructuredMode, dropped: frozenset[str]
    ) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"model": self.config.model, "messages": messages, "temperature": self.config.temperature}
        if budget:
            kwargs["max_tokens"] = budget
        if seed is not None:
            kwargs["seed"] = seed
        if schema is not None:
            if dropped:
                schema = strip_bounds(schema, dropped)
            if mode == "json_schema":
                kwargs["response_format"] = {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema, "strict": True}}
            else:
                hint = f"\nAnswer with one JSON object that matches this JSON schema:\n{json.dumps(schema)}"
                kwargs["messages"] = [*messages[:-1], {**messages[-1], "content": messages[-1]["content"] + hint}]
                if mode == "json_object_schema":
                    kwargs["response_format"] = {"type": "json_object", "schema": schema}
                elif mode == "json_object":
                    kwargs["response_format"] = {"type": "json_object"}
        return kwargs

    # --- JSON with re-asks --------------------------------------------------------------
    async def complete_json(
        self,
        messages: list[dict[str, str]],
        schema: dict[str, Any] | None = None,
        seed: int | None = None,
        check: Callable[[Any], str | None] | None = None,
        max_tokens: int | None = None,
    ) -> JSONAnswer:
        """Ask for JSON; re-ask up to `config.reasks` times when the answer is unusable.

        Malformed or (per `check`) wrongly shaped JSON: the re-ask quotes a short prefix of the
        answer and names the problem. An answer cut off by the token budget
        (`finish_reason=length`): asked again afresh with twice the budget and another seed (with
        no budget to raise, it is not asked again). Returns the parsed value, or `value=None` with
        the reason code (`malformed_output`, `truncated`, or the failed re-ask's) and the problem.
        Raises like `complete` when the first request fails.
        """
        budget = max_tokens or self.config.max_tokens
        ask, current = messages, seed
        attempts: list[dict[str, Any]] = []
        answer: dict[str, Any] = {"content": ""}
        problem, reason, cached = "no answer", "malformed_output", True
        for attempt in range(self.config.reasks + 1):
            if attempt:
                self.stats.reasks += 1
                self._emit("reask")
            try:
                answer = await self.complete(ask, schema, current, budget)
            except RequestFailed as err:
                if not attempts:
                    raise
                attempts.append({"problem": f"{err.reason}: {err.detail}", "content": ""})
                problem = f"{problem}; the re-ask failed ({err.reason}: {err.detail})"  # the reason stays the answer's own
                break
            cached = cached and answer["cached"]
            content = answer["content"]
            if answer.get("finish_reason") == "length":
                problem, reason = f"the answer was cut off at {budget or 'the server’s limit of'} tokens (finish_reason=length)", "truncated"
                attempts.append({"problem": problem, "content": content})
                if not budget:
                    break  # the same budget would cut it off again
                ask, budget, current = messages, budget * 2, next_seed(seed, attempt + 1)
                continue
            try:
                value = parse_json(content)
            except json.JSONDecodeError as err:
                problem = f"the answer is not valid JSON ({err.msg} at char {err.pos})"
            else:
                problem = check(value) if check else None
                if problem is None:
                    return JSONAnswer(value=value, content=content, cached=cached, attempts=attempts)
            reason = "malformed_output"
            attempts.append({"problem": problem, "content": content})
            ask = [
                *messages,
                {"role": "assistant", "content": _quote(content)},
                {"role": "user", "content": f"Your answer could not be used: {problem}. Answer again with the complete JSON only."},
            ]
        return JSONAnswer(value=None, error=problem, content=answer.get("content", ""), cached=cached, reason=reason, attempts=attempts)


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


def _error_text(err: openai.APIStatusError) -> str:
    """Everything the server said about an error, for pattern checks."""
    try:
        body = json.dumps(err.body, ensure_ascii=False) if err.body is not None else ""
    except (TypeError, ValueError):
        body = str(err.body)
    return f"{err} {body}"


def _short(err: openai.APIStatusError) -> str:
    """The server's own error message, short and on one line."""
    body, message = err.body, None
    if isinstance(body, dict):
        inner = body.get("error")
        message = inner.get("message") if isinstance(inner, dict) else inner if isinstance(inner, str) else None
        message = message or body.get("message") or body.get("detail")
    elif isinstance(body, str):
        message = body
    if isinstance(message, list):  # FastAPI-style validation errors
        message = "; ".join(f"{'.'.join(str(p) for p in m.get('loc', []))}: {m.get('msg')}" if isinstance(m, dict) else str(m) for m in message)
    text = str(message) if message else str(err)
    return " ".join(text.split())[:300]
