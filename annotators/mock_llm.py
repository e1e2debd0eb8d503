"""A mock LLM: a real HTTP server speaking the OpenAI chat API, writing species sentences.

`/v1/models` and `/v1/chat/completions` (with `response_format` json_schema, json_object or
none, and `usage`). Answers are deterministic for a seed: the same request gets the same
answer. Sentences come from the fact table in `mock_facts.yaml` in many styles (common,
scientific and alternative names, one to three facts per sentence, one or two sentences).

Knobs: annotation errors (`error_rate`, default 0.25: wrong label, shifted boundary, missing or
invented entity, wrong relation) and faults (429, 500, delay, malformed or truncated JSON, an
unknown label). The true annotation of every example it writes goes to a truth JSONL file
(an `Example` per line plus `"errors"`, see `annotators.truth`), so that a simulated
annotator can correct the errors. It also answers the spec's `annotate` prompt ("Text: ...")
from that truth, with errors at the same rate (this is what k-sample confidence asks).

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

import yaml
from pydantic import BaseModel, ConfigDict, Field
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from annotators.http_server import BackgroundServer
from annotators.truth import TruthRecord, write_truth_record
from data.errors import DistillError
from data.example import Entity, Example, Relation, Source

FACTS_PATH = Path(__file__).with_name("mock_facts.yaml")
ERROR_KINDS = ("wrong_label", "boundary", "missing_entity", "invented_entity", "wrong_relation")
FAULT_KINDS = ("rate_limit", "server_error", "delay", "malformed", "truncated")
_RELATION_OF = {"H": "live_in", "F": "feed_on", "B": "breed_by"}
_LABEL_OF = {"S": "SPECIES", "SCI": "SPECIES", "ALIAS": "SPECIES", "H": "HABITAT", "F": "FEEDING", "B": "BREEDING"}
_SLOT = re.compile(r"\{(S|SCI|ALIAS|H2|H|F2|F|B)\}")

# Sentences about a species `{S}`; every habitat/food/breeding slot is related to `{S}`.
TEMPLATES = (
    "{S} lives in {H}.",
    "{S} is found in {H}.",
    "{S} inhabits {H} and feeds on {F}.",
    "{S} ({SCI}) lives in {H}, where it feeds on {F}.",
    "{S} feeds on {F}.",
    "{S} eats {F} and {F2}.",
    "The diet of {S} consists mainly of {F}.",
    "{S} {B}.",
    "Native to {H}, {S} {B}.",
    "Found only in {H}, {S} is one of the rarest species on Earth.",
    "Once widespread, {S} now survives only in {H}.",
    "{S} lives in {H}, feeds on {F} and {B}.",
    "In {H}, {S} feeds mainly on {F}.",
    "Researchers have observed {S} feeding on {F} in {H}.",
    "Conservationists are working to protect {S}, which lives in {H}.",
    "{S} is critically endangered because its home in {H} is shrinking.",
    "{S}, also known as {ALIAS}, lives in {H}.",
    "{S}, sometimes called {ALIAS}, {B}.",
    "{SCI}, better known as {S}, feeds on {F}.",
    "During the breeding season, {S} {B}.",
    "{S} depends on {H} for food and shelter.",
    "{S} spends most of its life in {H} and {B}.",
    "{S} forages for {F} in {H}.",
    "The main threats to {S} in {H} are habitat loss and illegal trade.",
    "Although it was once common, {S} now lives only in {H}, where it eats {F}.",
    "Unlike many of its relatives, {S} {B}.",
    "{S} shares {H} with many other rare species and feeds on {F} and {F2}.",
    "With only a few thousand individuals left, {S} still {B}.",
    "A survey in {H} recorded {S} feeding on {F}.",
    "{S} ranges across {H} and {H2}.",
    "Populations of {S} in {H} and {H2} are declining.",
    "Field studies show that {S} {B} and feeds on {F}.",
    "{S} ({SCI}) {B}.",
    "{S} mainly eats {F}, but it will also take {F2} when food is scarce.",
    "{S} is listed as critically endangered on the IUCN Red List.",
    "Best known for its role in {H}, {S} relies on {F}.",
    "{S} ({SCI}), a rare inhabitant of {H}, {B} and feeds on {F}.",
    "Scientists studying {S} in {H} found that it {B}.",
    "{S} occurs in {H}.",
    "Endemic to {H}, {SCI} {B}.",
)
# A second sentence that refers back with a pronoun: its facts are entities without relations.
FOLLOW_UPS = (
    "It feeds on {F}.",
    "It also lives in {H}.",
    "It {B}.",
    "Its diet includes {F} and {F2}.",
    "The species {B}.",
    "It is threatened by the loss of {H}.",
    "Most individuals live in {H}.",
    "Captive programmes have helped it recover.",
)


class MockConfig(BaseModel):
    """Behaviour of the mock: seed, annotation error rate and kinds, fault rates, truth file."""

    model_config = ConfigDict(extra="forbid")

    seed: int = 0
    model: str = "mock-species"
    error_rate: float = Field(default=0.25, ge=0, le=1, description="share of examples that carry one annotation error")
    error_kinds: tuple[str, ...] = ERROR_KINDS
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

    @classmethod
    def with_fault_rate(cls, rate: float, **values: Any) -> MockConfig:
        """Spread `rate` evenly over 429, 500, delay, malformed and truncated answers; a fault
        rate given by name in `values` wins over its share."""
        share = rate / len(FAULT_KINDS)
        return cls(**{**{kind: share for kind in FAULT_KINDS}, **values})


# --- the fact table ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Species:
    name: str
    sci: str
    eco: str
    aliases: tuple[str, ...] = ()
    habitat: tuple[str, ...] = ()
    food: tuple[str, ...] = ()
    breeding: tuple[str, ...] = ()


class FactTable:
    """Species and per-ecotype habitat, food and breeding phrases from `mock_facts.yaml`."""

    def __init__(self, path: Path = FACTS_PATH) -> None:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        self.ecotypes: dict[str, dict[str, list[str]]] = raw["ecotypes"]
        self.species = [
            Species(**{k: tuple(v) if isinstance(v, list) else v for k, v in item.items()}) for item in raw["species"]
        ]
        self._index = {}
        for sp in self.species:
            for key in (sp.name, sp.sci, *sp.aliases):
                self._index[key.casefold()] = sp

    def lookup(self, topic: str | None, rng: random.Random) -> Species:
        """The species a topic like "Amur leopard (Panthera pardus orientalis)" names; an unknown
        topic keeps its names with a generic ecotype; no topic: any species."""
        if not topic:
            return rng.choice(self.species)
        common, _, rest = topic.partition("(")
        sci = rest.rstrip(") ").strip()
        for key in (sci, common.strip(), topic.strip()):
            if key and key.casefold() in self._index:
                return self._index[key.casefold()]
        eco = sorted(self.ecotypes)[int(hashlib.sha1(topic.encode()).hexdigest(), 16) % len(self.ecotypes)]
        return Species(name=common.strip() or topic.strip(), sci=sci or common.strip(), eco=eco)

    def facts(self, sp: Species, kind: str) -> list[str]:
        """A species' own facts of one kind, then four ecotype phrases fixed for that species."""
        pool = self.ecotypes[sp.eco][kind]
        pick = random.Random(f"{sp.sci}:{kind}").sample(pool, min(4, len(pool)))
        return list(getattr(sp, kind)) + [p for p in pick if p not in getattr(sp, kind)]


# --- writing examples -------------------------------------------------------------------------
@dataclass
class Draft:
    """A written example: text, spans `(start, end, label)` and relations by span index."""

    text: str
    spans: list[tuple[int, int, str]] = field(default_factory=list)
    relations: list[tuple[int, int, str]] = field(default_factory=list)

    def surface(self, i: int) -> str:
        s, e, _ = self.spans[i]
        return self.text[s:e]


def _species_mention(sp: Species, slot: str, rng: random.Random) -> tuple[str, str]:
    """(article, name) for a species slot: common name mostly, else scientific or alias."""
    if slot == "SCI":
        return "", sp.sci
    if slot == "ALIAS":
        return "the ", rng.choice(sp.aliases)
    r = rng.random()
    if r < 0.2 and sp.sci != sp.name:
        return "", sp.sci
    if r < 0.3 and sp.aliases:
        return "the ", rng.choice(sp.aliases)
    return "the ", sp.name


def _fill(template: str, sp: Species, table: FactTable, rng: random.Random, anchor: bool, draft: Draft) -> None:
    """Append one sentence to `draft`; when `anchor`, link its facts to its `{S}` mention."""
    if draft.text:
        draft.text += " "
    chosen: dict[str, str] = {}
    species_index: int | None = None
    linked: list[tuple[int, str]] = []
    pos = 0
    for match in _SLOT.finditer(template):
        draft.text += template[pos : match.start()]
        slot = match.group(1)
        at_start = match.start() == 0
        if slot in ("S", "SCI", "ALIAS"):
            article, value = _species_mention(sp, slot, rng)
            if slot == "S" and "{SCI}" in template:
                article, value = "the ", sp.name
            if at_start and article:
                article = article.capitalize()
            elif at_start:
                value = value[:1].upper() + value[1:]
            draft.text += article
        else:
            kind = {"H": "habitat", "F": "food", "B": "breeding"}[slot[0]]
            options = [o for o in table.facts(sp, kind) if o not in chosen.values()]
            value = rng.choice(options or table.facts(sp, kind))
            if at_start:
                value = value[:1].upper() + value[1:]
        chosen[slot] = value
        start = len(draft.text)
        draft.text += value
        draft.spans.append((start, len(draft.text), _LABEL_OF[slot[0] if slot[0] in "HFB" else slot]))
        index = len(draft.spans) - 1
        if slot == "S":
            species_index = index
        elif slot[0] in "HFB":
            linked.append((index, _RELATION_OF[slot[0]]))
        pos = match.end()
    draft.text += template[pos:]
    if anchor and species_index is not None:
        draft.relations += [(species_index, tail, label) for tail, label in linked]


def _unambiguous(draft: Draft) -> bool:
    """Every entity's text occurs once (at word boundaries), so grounding by text is exact."""
    from annotators.grounding import find_mention

    return all(len(find_mention(draft.text, draft.surface(i))) == 1 for i in range(len(draft.spans)))


def write_draft(sp: Species, table: FactTable, rng: random.Random) -> Draft:
    """One example about `sp`: a sentence from `TEMPLATES`, sometimes followed by a pronoun sentence."""
    for _ in range(20):
        template = rng.choice(TEMPLATES)
        if ("{ALIAS}" in template and not sp.aliases) or ("{SCI}" in template and sp.sci == sp.name):
            continue
        draft = Draft(text="")
        _fill(template, sp, table, rng, anchor=True, draft=draft)
        if rng.random() < 0.3:
            _fill(rng.choice(FOLLOW_UPS), sp, table, rng, anchor=False, draft=draft)
        if _unambiguous(draft):
            return draft
    draft = Draft(text="")
    _fill("{S} lives in {H}.", sp, table, rng, anchor=True, draft=draft)
    return draft


# --- annotation errors ------------------------------------------------------------------------
def inject_error(draft: Draft, kind: str, labels: list[str], rng: random.Random) -> Draft | None:
    """A copy of `draft` with one annotation error of `kind`, or None if it cannot carry one."""
    spans, relations = list(draft.spans), list(draft.relations)
    if kind == "wrong_label" and spans:
        i = rng.randrange(len(spans))
        others = [lab for lab in labels if lab != spans[i][2]]
        if not others:
            return None
        spans[i] = (spans[i][0], spans[i][1], rng.choice(others))
        relations = [r for r in relations if i not in r[:2]]  # a mislabelled entity loses its relations
    elif kind == "boundary" and spans:
        i = rng.randrange(len(spans))
        start, end, label = spans[i]
        words = list(re.finditer(r"\S+", draft.text[:start]))
        inner = draft.text[start:end]
        if " " in inner and rng.random() < 0.5:
            end = start + inner.rindex(" ")  # drop the last word
        elif words and all(not (words[-1].start() < e and s < start) for s, e, _ in spans):
            start = words[-1].start()  # take in the word before
        elif " " in inner:
            end = start + inner.rindex(" ")
        else:
            return None
        spans[i] = (start, end, label)
    elif kind == "missing_entity" and spans:
        i = rng.randrange(len(spans))
        del spans[i]
        relations = [(h - (h > i), t - (t > i), lab) for h, t, lab in relations if i not in (h, t)]
    elif kind == "invented_entity":
        free = [
            m
            for m in re.finditer(r"[A-Za-z]{5,}", draft.text)
            if all(m.end() <= s or m.start() >= e for s, e, _ in spans) and m.group().lower() not in {"which", "where", "their"}
        ]
        if not free or not labels:
            return None
        m = rng.choice(free)
        spans.append((m.start(), m.end(), rng.choice(labels)))
    elif kind == "wrong_relation" and relations:
        del relations[rng.randrange(len(relations))]
    else:
        return None
    result = Draft(text=draft.text, spans=spans, relations=relations)
    return result if _unambiguous(result) else None


def answer_item(draft: Draft) -> dict[str, Any]:
    """The draft as an LLM would answer it: mentions and relation ends as text."""
    entities, seen = [], set()
    for i in range(len(draft.spans)):
        key = (draft.surface(i), draft.spans[i][2])
        if key not in seen:
            seen.add(key)
            entities.append({"text": key[0], "label": key[1]})
    relations = [{"head": draft.surface(h), "tail": draft.surface(t), "label": lab} for h, t, lab in draft.relations]
    return {"text": draft.text, "entities": entities, "relations": relations}


def draft_to_example(draft: Draft, source: Source) -> Example:
    order = sorted(range(len(draft.spans)), key=lambda i: draft.spans[i][:2])
    new = {old: k for k, old in enumerate(order)}
    return Example(
        text=draft.text,
        entities=[Entity(start=draft.spans[i][0], end=draft.spans[i][1], label=draft.spans[i][2]) for i in order],
        relations=[Relation(head=new[h], tail=new[t], label=lab) for h, t, lab in draft.relations],
        source=source,
    )


def example_to_draft(example: Example) -> Draft:
    return Draft(
        text=example.text,
        spans=[(e.start, e.end, e.label) for e in example.entities],
        relations=[(r.head, r.tail, r.label) for r in example.relations],
    )


# --- the server -------------------------------------------------------------------------------
@dataclass
class MockStats:
    """Request counters (read by tests and the bench)."""

    requests: int = 0
    completions: int = 0
    faults: Counter = field(default_factory=Counter)
    examples: int = 0
    errors: Counter = field(default_factory=Counter)


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
        idx = content.find("JSON schema:")
        if idx >= 0:
            try:
                schema = json.loads(content[idx + len("JSON schema:") :].strip())
            except json.JSONDecodeError:
                schema = None
    if not isinstance(schema, dict):
        return None, None, None
    props = schema.get("properties") or {}
    is_generate = "examples" in props
    item = _dig(props, "examples", "items") if is_generate else schema
    ent = _dig(item, "properties", "entities", "items", "properties", "label", "enum")
    rel = _dig(item, "properties", "relations", "items", "properties", "label", "enum")
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
        self._seen: Counter = Counter()
        self._truth_handle = None
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
        text_match = re.search(r"^Text: (.*)$", prompt, re.MULTILINE)
        if is_generate is False or (is_generate is None and text_match and "Topic:" not in prompt):
            text = text_match.group(1).strip() if text_match else ""
            return json.dumps(self._annotate(text, ent_labels, rel_labels, rng), ensure_ascii=False)
        topic_match = re.search(r"^Topic: (.*)$", prompt, re.MULTILINE)
        n_match = re.search(r"\bWrite (\d+)\b", prompt) or re.search(r"\b(\d+) (?:different )?(?:sentences|examples|texts)\b", prompt)
        n = max(1, min(int(n_match.group(1)) if n_match else 5, 50))
        topic = topic_match.group(1).strip() if topic_match else None
        items = [self._generate_one(topic, ent_labels, rel_labels, body.get("model"), rng) for _ in range(n)]
        return json.dumps({"examples": items}, ensure_ascii=False)

    def _restrict(self, draft: Draft, ent_labels: list[str] | None, rel_labels: list[str] | None) -> Draft:
        """Keep only the labels the request's schema knows (all, when it names none)."""
        keep = [i for i, s in enumerate(draft.spans) if ent_labels is None or s[2] in ent_labels]
        new = {old: k for k, old in enumerate(keep)}
        relations = [
            (new[h], new[t], lab) for h, t, lab in draft.relations if h in new and t in new and (rel_labels is None or lab in rel_labels)
        ]
        return Draft(text=draft.text, spans=[draft.spans[i] for i in keep], relations=relations)

    def _with_errors(self, truth: Draft, labels: list[str], rng: random.Random) -> tuple[Draft, list[str]]:
        if rng.random() >= self.config.error_rate or not self.config.error_kinds:
            return truth, []
        kinds = list(self.config.error_kinds)
        rng.shuffle(kinds)
        for kind in kinds:
            wrong = inject_error(truth, kind, labels, rng)
            if wrong is not None:
                return wrong, [kind]
        return truth, []

    def _generate_one(self, topic: str | None, ent_labels, rel_labels, model: str | None, rng: random.Random) -> dict[str, Any]:
        sp = self.table.lookup(topic, rng)
        truth = self._restrict(write_draft(sp, self.table, rng), ent_labels, rel_labels)
        labels = ent_labels or sorted(set(_LABEL_OF.values()))
        shown, errors = self._with_errors(truth, labels, rng)
        self.stats.examples += 1
        self.stats.errors.update(errors)
        if truth.text not in self.truth:
            record = TruthRecord(example=draft_to_example(truth, Source(model=model, topic=topic, origin="mock-llm")), errors=errors)
            self.truth[truth.text] = record
            if self._truth_handle:
                write_truth_record(self._truth_handle, record)
        item = answer_item(shown)
        if self.config.unknown_label and rng.random() < self.config.unknown_label and item["entities"]:
            item["entities"][0] = {**item["entities"][0], "label": "LOCATION"}
        return item

    def _annotate(self, text: str, ent_labels, rel_labels, rng: random.Random) -> dict[str, Any]:
        record = self.truth.get(text)
        if record is None:
            return {"text": text, "entities": [], "relations": []}
        truth = self._restrict(example_to_draft(record.example), ent_labels, rel_labels)
        shown, _ = self._with_errors(truth, ent_labels or sorted(set(_LABEL_OF.values())), rng)
        return answer_item(shown)


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
