"""A mock LLM: a real HTTP server speaking the OpenAI chat API, writing species texts.

`/v1/models` and `/v1/chat/completions` (with `response_format` json_schema, json_object or
none, and `usage`). Answers are deterministic for a seed: the same request gets the same
answer. Texts come from the fact table in `mock_facts.yaml` in the many shapes of
`annotators.mock_world` (the paper's "<name> or <scientific name> live in ...; ... feed on ...;
... breed by <a long clause>" paragraphs, lists, parentheses, aliases, pronouns, numbers,
negations and distractors), and are as hard as real LLM output.

Knobs (`MockConfig`): factual errors in the texts (`factual_error_rate`, default 0.25, after the
paper's 74% correct; a careful reviewer rejects them), cut-off texts (`unusable_rate`, 0.02),
annotation errors in the answers (`error_rate`, default 0.25 of the answers, one to `max_errors`
of the kinds `error_kinds`: span convention drift, boundaries, partial names, wrong labels,
missed and invented entities, missing, misattached or reversed relations) and faults (429, 500,
delay, malformed or truncated JSON, an unknown label). The true annotation of every example it
writes, under one span convention, goes to a truth JSONL file (an `Example` per line plus
`"errors"`, the injected text and annotation errors, see `annotators.truth`), so that a
simulated annotator can correct the errors and reject the wrong texts. It also answers the
spec's `annotate` prompt ("Text: " and the text, to the end of the first user message, newlines
and all) from that truth, with annotation errors at the same rate (this is what k-sample
confidence asks); an annotate request is one whose schema is an item (`{"text", "entities",
"relations"}`) or an annotation (`{"entities", "relations"}`).

Texts it did not write (a user's own documents, `distill annotate`) are annotated by a gazetteer
of its fact table (`annotators.gazetteer`), only with the labels the request's schema names.
With `replay` (`distill mock-llm --replay GOLD`), a gold file in JSONL, CoNLL or DocBin: a text
the gold holds (itself, a piece of one gold text, or several gold texts) is answered with its
gold through the replay error model (`annotators.replay.ReplayErrors`: `replay_drift`,
`replay_missed`, `replay_mislabelled`, `replay_invented`), and its gold goes to the truth file
(origin "replay"), so the simulated reviewer corrects the answers to the gold; other texts get a
gazetteer of the gold's entity surfaces. Answers to texts the mock did not write carry the
replay error model's errors (the mock world's `with_errors` needs each mention to occur once,
which a user's text does not promise), one draw per request: k samples disagree where they fall.

Start it with `distill mock-llm --port N`, or in-process with `MockLLMServer(MockConfig()).start()`.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import re
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from distill_ner.annotators.gazetteer import Gazetteer
from distill_ner.annotators.http_server import BackgroundServer
from distill_ner.annotators.mock_world import (  # noqa: F401  (re-exported: the mock's world)
    ERROR_KINDS,
    FACTS_PATH,
    SHAPES,
    TEXT_ERRORS,
    Draft,
    FactTable,
    Species,
    Written,
    answer_item,
    draft_to_example,
    example_to_draft,
    inject_error,
    restrict,
    with_errors,
    write_example,
    write_off_topic,
)
from distill_ner.annotators.replay import ReplayErrors, ReplayGold, replay_answer
from distill_ner.annotators.truth import TruthRecord, write_truth_record
from distill_ner.data.errors import DistillError
from distill_ner.data.example import Example, Source

FAULT_KINDS = ("rate_limit", "server_error", "delay", "malformed", "truncated")
_ALL_LABELS = ["BREEDING", "FEEDING", "HABITAT", "SPECIES"]
_SCHEMA_HINT = "\nAnswer with one JSON object that matches this JSON schema:\n"  # what the client appends without json_schema
_REPLAY = ReplayErrors()


class MockConfig(BaseModel):
    """Behaviour of the mock: seed, annotation error rate and kinds, fault rates, truth file."""

    model_config = ConfigDict(extra="forbid")

    seed: int = 0
    model: str = "mock-species"
    error_rate: float = Field(default=0.25, ge=0, le=1, description="share of answers that carry annotation errors (one to `max_errors`)")
    error_kinds: tuple[str, ...] = ERROR_KINDS
    max_errors: int = Field(default=3, ge=1, description="most annotation errors in one answer (each one more with probability 0.35)")
    factual_error_rate: float = Field(default=0.25, ge=0, le=1, description="share of texts with a factual error (the paper's GPT-4: 74% correct); a careful reviewer rejects them")
    unusable_rate: float = Field(default=0.02, ge=0, le=1, description="share of texts cut off in mid-sentence (rejected as unusable)")
    rate_limit: float = Field(default=0.0, ge=0, le=1, description="share of requests answered 429")
    server_error: float = Field(default=0.0, ge=0, le=1, description="share answered 500")
    delay: float = Field(default=0.0, ge=0, le=1, description="share answered after `delay_s`")
    malformed: float = Field(default=0.0, ge=0, le=1, description="share answered with invalid JSON")
    truncated: float = Field(default=0.0, ge=0, le=1, description="share cut off (finish_reason=length)")
    unknown_label: float = Field(default=0.0, ge=0, le=1, description="share of answers with a label outside the schema")
    delay_s: float = Field(default=0.5, ge=0)
    latency_s: float = Field(default=0.0, ge=0, description="added to every answer (simulated generation time)")
    api_key: str | None = Field(default=None, repr=False, description="if set, requests must carry it")
    json_schema: bool = Field(default=True, description="False: answer 400 to json_schema response formats")
    truth_file: Path | None = None
    replay: Path | None = Field(default=None, description="gold file (JSONL, CoNLL, DocBin): annotate requests for its texts are answered from it")
    replay_drift: float = Field(default=_REPLAY.drift, ge=0, le=1, description="per mention: a boundary moved by one word (texts the mock did not write)")
    replay_missed: float = Field(default=_REPLAY.missed, ge=0, le=1, description="per mention: left out, with its relations")
    replay_mislabelled: float = Field(default=_REPLAY.mislabelled, ge=0, le=1, description="per mention: another label of the request's schema")
    replay_invented: float = Field(default=_REPLAY.invented, ge=0, le=1, description="per text: a new mention on words that are no entity")

    @model_validator(mode="after")
    def _replay_rates(self) -> MockConfig:
        self.replay_errors  # noqa: B018  (drift + missed + mislabelled <= 1)
        return self

    @property
    def replay_errors(self) -> ReplayErrors:
        """The error model of answers to texts the mock did not write."""
        return ReplayErrors(drift=self.replay_drift, missed=self.replay_missed, mislabelled=self.replay_mislabelled, invented=self.replay_invented)

    @classmethod
    def with_fault_rate(cls, rate: float, **values: Any) -> MockConfig:
        """Spread `rate` evenly over 429, 500, delay, malformed and truncated answers; a fault
        rate given by name in `values` wins over its share."""
        share = rate / len(FAULT_KINDS)
        return cls(**{**{kind: share for kind in FAULT_KINDS}, **values})


# --- the server -------------------------------------------------------------------------------
@dataclass
class MockStats:
    """Request counters (read by tests and the bench)."""

    requests: int = 0
    completions: int = 0
    faults: Counter = field(default_factory=Counter)
    examples: int = 0
    errors: Counter = field(default_factory=Counter)
    annotated: Counter = field(default_factory=Counter)  # annotate answers by source: own / replay / gazetteer


def _labels_from(body: dict[str, Any]) -> tuple[list[str] | None, list[str] | None, bool | None]:
    """(entity labels, relation labels, is_generate) read from a json_schema response format or
    from a schema written into the last message; None where the request does not say."""
    schema = None
    fmt = body.get("response_format") or {}
    if fmt.get("type") == "json_schema":
        schema = (fmt.get("json_schema") or {}).get("schema")
    else:
        users = [str(m.get("content", "")) for m in body["messages"] if m.get("role") == "user"]
        content = users[0] if users else ""
        idx = content.rfind("JSON schema:")
        if idx >= 0:
            try:
                schema = json.loads(content[idx + len("JSON schema:") :].strip())
            except json.JSONDecodeError:
                schema = None
    if not isinstance(schema, dict):
        return None, None, None
    props = schema.get("properties") or {}
    is_generate = True if "examples" in props else False if "entities" in props else None
    item = _dig(props, "examples", "items") if is_generate else schema
    ent = _dig(item, "properties", "entities", "items", "properties", "label", "enum")
    relations = _dig(item, "properties", "relations")
    # a schema that allows no relation (maxItems 0, an NER-only spec) asks for none
    rel = [] if _dig(relations, "maxItems") == 0 else _dig(relations, "items", "properties", "label", "enum")
    return ent, rel, is_generate


def _dig(value: Any, *keys: str) -> Any:
    for key in keys:
        value = value.get(key) if isinstance(value, dict) else None
    return value


class MockLLM:
    """The request handler and its state: fact table, truth, counters."""

    def __init__(self, config: MockConfig) -> None:
        self.config = config
        self.table = FactTable()
        self.stats = MockStats()
        self.truth: dict[str, TruthRecord] = {}
        self._drafts: dict[str, Draft] = {}
        self._seen: Counter = Counter()
        self._truth_handle = None
        self.replay = ReplayGold.load(config.replay) if config.replay else None
        self._gazetteer: Gazetteer | None = None
        if config.truth_file:
            try:
                config.truth_file.parent.mkdir(parents=True, exist_ok=True)
                self._truth_handle = config.truth_file.open("a", encoding="utf-8")
            except OSError as err:
                raise DistillError(f"{config.truth_file}: cannot write the mock's truth file ({err.strerror}); choose another --truth-file") from None
        self.app = Starlette(
            routes=[
                Route("/v1/models", self.models, methods=["GET"]),
                Route("/v1/chat/completions", self.chat, methods=["POST"]),
                Route("/health", lambda _r: JSONResponse({"ok": True}), methods=["GET"]),
            ]
        )

    def close(self) -> None:
        if self._truth_handle:
            self._truth_handle.close()
            self._truth_handle = None

    def _authorized(self, request: Request) -> bool:
        return self.config.api_key is None or request.headers.get("authorization") == f"Bearer {self.config.api_key}"

    async def models(self, request: Request) -> Response:
        if not self._authorized(request):
            return _error(401, "invalid_api_key", "Incorrect API key provided.")
        return JSONResponse({"object": "list", "data": [{"id": self.config.model, "object": "model", "owned_by": "distill-ner"}]})

    async def chat(self, request: Request) -> Response:
        self.stats.requests += 1
        if not self._authorized(request):
            return _error(401, "invalid_api_key", "Incorrect API key provided.")
        try:
            body = json.loads(await request.body())
            messages = body["messages"]
            assert isinstance(messages, list) and messages
        except (ValueError, KeyError, AssertionError):
            return _error(400, "invalid_request_error", "the body needs a non-empty 'messages' list")
        fmt = (body.get("response_format") or {}).get("type")
        if fmt == "json_schema" and not self.config.json_schema:
            return _error(400, "invalid_request_error", "response_format of type json_schema is not supported by this server")
        key = json.dumps([body.get("model"), messages, body.get("seed"), body.get("temperature"), fmt], sort_keys=True)
        digest = hashlib.sha256(f"{self.config.seed}:{key}".encode()).hexdigest()
        self._seen[digest] += 1
        fault = self._fault(random.Random(f"{digest}:{self._seen[digest]}"))
        if fault:
            self.stats.faults[fault] += 1
        if fault == "rate_limit":
            return _error(429, "rate_limit_exceeded", "Rate limit reached, retry later.", headers={"retry-after-ms": "10"})
        if fault == "server_error":
            return _error(500, "server_error", "The server had an error while processing your request.")
        if self.config.latency_s or fault == "delay":
            await asyncio.sleep(self.config.latency_s + (self.config.delay_s if fault == "delay" else 0))
        content = self.answer(body, random.Random(digest))
        finish = "stop"
        if fault == "malformed":
            content = content.replace('":', '" ', 1) if '":' in content else content + "}"
        elif fault == "truncated":
            content, finish = content[: max(1, len(content) // 2)], "length"
        self.stats.completions += 1
        prompt_chars = sum(len(str(m.get("content", ""))) for m in messages)
        usage = {"prompt_tokens": prompt_chars // 4 + 1, "completion_tokens": len(content) // 4 + 1}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        return JSONResponse(
            {
                "id": f"chatcmpl-{digest[:24]}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body.get("model") or self.config.model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": finish}],
                "usage": usage,
            }
        )

    def _fault(self, rng: random.Random) -> str | None:
        u = rng.random()
        for kind in FAULT_KINDS:
            u -= getattr(self.config, kind)
            if u < 0:
                return kind
        return None

    # --- answers ----------------------------------------------------------------------
    def answer(self, body: dict[str, Any], rng: random.Random) -> str:
        """The JSON text for one request: new examples for `generate`, an annotation for `annotate`."""
        ent_labels, rel_labels, is_generate = _labels_from(body)
        users = [str(m.get("content", "")) for m in body["messages"] if m.get("role") == "user"]
        prompt = users[0] if users else ""  # the task; later user turns are re-asks
        text_match = re.search(r"^Text: ", prompt, re.MULTILINE)
        if is_generate is False or (is_generate is None and text_match and "Topic:" not in prompt):
            text = annotate_text(prompt)
            answer = self._annotate(text, ent_labels, rel_labels, rng)
            if not _asks_for_text(body):
                answer.pop("text", None)
            return json.dumps(answer, ensure_ascii=False)
        topic_match = re.search(r"^Topic: (.*)$", prompt, re.MULTILINE)
        n_match = re.search(r"\bWrite (\d+)\b", prompt) or re.search(r"\b(\d+) (?:different )?(?:sentences|examples|texts)\b", prompt)
        n = max(1, min(int(n_match.group(1)) if n_match else 5, 50))
        topic = topic_match.group(1).strip() if topic_match else None
        off_topic = re.search(r"^Off-topic: (.*)$", prompt, re.MULTILINE)  # the spec's `negative` prompt
        if off_topic:
            items = [self._item(write_off_topic(rng), off_topic.group(1).strip(), ent_labels, rel_labels, body.get("model"), rng) for _ in range(n)]
        else:
            items = [self._generate_one(topic, ent_labels, rel_labels, body.get("model"), rng) for _ in range(n)]
        return json.dumps({"examples": items}, ensure_ascii=False)

    def _with_errors(self, truth: Draft, labels: list[str], rng: random.Random) -> tuple[Draft, list[str]]:
        return with_errors(truth, labels, tuple(self.config.error_kinds), self.config.error_rate, self.config.max_errors, rng)

    def _generate_one(self, topic: str | None, ent_labels, rel_labels, model: str | None, rng: random.Random) -> dict[str, Any]:
        sp = self.table.lookup(topic, rng)
        written = write_example(sp, self.table, rng, self.config.factual_error_rate, self.config.unusable_rate)
        return self._item(written, topic, ent_labels, rel_labels, model, rng)

    def _item(self, written: Written, topic: str | None, ent_labels, rel_labels, model: str | None, rng: random.Random) -> dict[str, Any]:
        """One written example as answered (annotation errors at the configured rate); its truth recorded once."""
        truth = restrict(written.draft, ent_labels, rel_labels)
        labels = ent_labels or _ALL_LABELS
        shown, errors = self._with_errors(truth, labels, rng)
        self.stats.examples += 1
        self.stats.errors.update(written.errors + errors)
        if truth.text not in self.truth:
            example = draft_to_example(truth, Source(model=model, topic=topic, origin="mock-llm"))
            record = TruthRecord(example=example, errors=written.errors + errors, notes=written.notes, shapes=truth.shapes)
            self.truth[truth.text] = record
            self._drafts[truth.text] = written.draft
            if self._truth_handle:
                write_truth_record(self._truth_handle, record)
        item = answer_item(shown)
        if self.config.unknown_label and rng.random() < self.config.unknown_label and item["entities"]:
            item["entities"][0] = {**item["entities"][0], "label": "LOCATION"}
        return item

    def _annotate(self, text: str, ent_labels, rel_labels, rng: random.Random) -> dict[str, Any]:
        """The answer to an annotate request: from the truth of a text the mock wrote, from the
        replay gold, or from a gazetteer (the gold's surfaces in replay mode, else the fact table)."""
        own = text if text in self._drafts else text.strip()
        if own in self._drafts:
            self.stats.annotated["own"] += 1
            truth = restrict(self._drafts[own], ent_labels, rel_labels)
            shown, _ = self._with_errors(truth, ent_labels or _ALL_LABELS, rng)
            return answer_item(shown)
        errors = self.config.replay_errors
        gold = self.replay.lookup(text) if self.replay else None
        if gold is not None:
            self.stats.annotated["replay"] += 1
            gold = _restricted(gold, ent_labels, rel_labels)
            answer, kinds = replay_answer(gold, ent_labels, rel_labels, errors, rng)
            if text not in self.truth:
                record = TruthRecord(example=gold, errors=kinds)
                self.truth[text] = record
                if self._truth_handle:
                    write_truth_record(self._truth_handle, record)
            return answer
        self.stats.annotated["gazetteer"] += 1
        found = self.gazetteer.annotate(text, ent_labels, rel_labels)
        return replay_answer(found, ent_labels, rel_labels, errors, rng)[0]

    @property
    def gazetteer(self) -> Gazetteer:
        """The gazetteer for texts the mock does not know: the replay gold's entity surfaces, or the fact table."""
        if self._gazetteer is None:
            self._gazetteer = self.replay.gazetteer if self.replay else Gazetteer.from_table(self.table)
        return self._gazetteer


def annotate_text(prompt: str) -> str:
    """The text of an annotate prompt: everything after the first line-start "Text: " to the end
    of the message (newlines included), less the schema hint a client appends when the server
    takes no json_schema."""
    match = re.search(r"^Text: ", prompt, re.MULTILINE)
    if match is None:
        return ""
    text = prompt[match.end() :]
    hint = text.rfind(_SCHEMA_HINT)
    return text[:hint] if hint >= 0 else text


def _asks_for_text(body: dict[str, Any]) -> bool:
    """Whether the answer should echo the text: the request's schema has a "text" property, or it names no schema."""
    fmt = body.get("response_format") or {}
    schema = (fmt.get("json_schema") or {}).get("schema") if fmt.get("type") == "json_schema" else None
    return not isinstance(schema, dict) or "text" in (schema.get("properties") or {})


def _restricted(example: Example, ent_labels: list[str] | None, rel_labels: list[str] | None) -> Example:
    """The example with only the entity and relation labels a request names (all, for None)."""
    keep = [i for i, e in enumerate(example.entities) if ent_labels is None or e.label in ent_labels]
    index = {old: new for new, old in enumerate(keep)}
    relations = [
        r.model_copy(update={"head": index[r.head], "tail": index[r.tail]}) for r in example.relations
        if r.head in index and r.tail in index and (rel_labels is None or r.label in rel_labels)
    ]
    return example.model_copy(update={"entities": [example.entities[i] for i in keep], "relations": relations})


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    kind = "invalid_request_error" if status < 500 else "server_error"
    return JSONResponse({"error": {"message": message, "type": kind, "code": code}}, status_code=status, headers=headers)


class MockLLMServer:
    """The mock on a real port: `start()` in a background thread (tests), or `serve()` in the foreground (CLI)."""

    def __init__(self, config: MockConfig | None = None, host: str = "127.0.0.1", port: int = 0) -> None:
        self.mock = MockLLM(config or MockConfig())
        self._http = BackgroundServer(self.mock.app, host, port, name="mock LLM")

    @property
    def host(self) -> str:
        return self._http.host

    @property
    def port(self) -> int:
        return self._http.port

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    @property
    def stats(self) -> MockStats:
        return self.mock.stats

    @property
    def truth(self) -> dict[str, TruthRecord]:
        return self.mock.truth

    def start(self, timeout: float = 10.0) -> MockLLMServer:
        """Serve from a daemon thread; returns once the port answers."""
        self._http.start(timeout)
        return self

    def serve(self, announce: Callable[[str], None] | None = None) -> None:
        """Serve in the foreground until interrupted (Ctrl-C); `announce` gets the base URL once bound."""
        sock = self._http.bind()
        if announce:
            announce(self.base_url)
        try:
            self._http.run(sock)
        finally:
            self.mock.close()

    def stop(self) -> None:
        self._http.stop()
        self.mock.close()

    def __enter__(self) -> MockLLMServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
