"""LLM data: generate annotated texts from a task spec, or annotate the user's own texts; ground and dedup.

The unit of work is a `GenerationRequest` (one topic, n examples, one sample), so a Prefect
flow can fan requests out: `plan_requests` -> `run_requests` (any subset, anywhere; the LLM
cache is shared through `cache_dir`) -> `finish_run` writes the run folder. `generate` does all
three for the CLI. A run folder holds `generated.jsonl` (kept examples), `rejected.jsonl` (every
rejection and duplicate with its reason and the raw LLM item) and `generate_summary.json`.
Rerunning the same command repeats no LLM call: answers come from the cache. A run whose share
of rejected examples is above `max_failure_share` (or that keeps nothing) is a failed run.

`annotate` is the same machinery for given text: one request per window of a document
(`data.corpus.windows`), the spec's `annotate` prompt, mentions grounded in the given text (a
mention that cannot be found is dropped and counted, not the whole window), and each example's
provenance (`origin: corpus`, file, document, offset) kept, so every entity maps back to its
document. Its run folder has the same files, so `review push`, `split`, `prune` and `train` take it.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import random
import shutil
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from distill_ner.annotators.grounding import GroundingError, GroundingRules, ground
from distill_ner.annotators.llm import STRUCTURED_MODES as STRUCTURED_ORDER
from distill_ner.annotators.llm import JSONAnswer, LLMClient, LLMConfig, RequestFailed
from distill_ner.data.corpus import Window
from distill_ner.data.dedup import dedup
from distill_ner.data.errors import DistillError
from distill_ner.data.example import Example, Source
from distill_ner.data.formats import atomic_write, write_jsonl
from distill_ner.data.run_layout import RunLayout
from distill_ner.data.spec import TaskSpec

MAX_ENTITIES = 16  # schema bounds per example: a model looping inside a grammar stops there
MAX_RELATIONS = 16
MAX_TEXT_CHARS = 1000


class GenerationRequest(BaseModel):
    """One LLM call to plan: write `n` examples about `topic` (sample `sample`, with `seed`), or,
    with a `window`, annotate that given text (`topic` is then its document)."""

    index: int
    topic: str
    n: int = Field(ge=1)
    sample: int = 0
    seed: int = 0
    negative: bool = False  # texts that name nothing of the spec (the spec's `negative` prompt)
    window: Window | None = None


class Rejection(BaseModel):
    """An example that was asked for and not kept, with a reason code and the raw LLM item."""

    request: int
    topic: str
    reason: str
    detail: str = ""
    raw: Any = None


class RequestOutcome(BaseModel):
    """What one request produced: kept examples (in answer order) and rejections."""

    request: GenerationRequest
    examples: list[Example] = Field(default_factory=list)
    rejected: list[Rejection] = Field(default_factory=list)
    surplus: int = 0
    repaired: dict[str, int] = Field(default_factory=dict)


class BatchResult(BaseModel):
    """Outcomes of a batch of requests and the LLM counters for it."""

    outcomes: list[RequestOutcome]
    stats: dict[str, Any]
    error: str | None = None  # set when the batch stopped early (the outcomes so far are kept)

    def __repr__(self) -> str:
        # short on purpose: asyncio.run() formats the repr of its main task's result on exit, and
        # pydantic's full repr of thousands of examples took longer than the requests themselves
        return f"BatchResult({len(self.outcomes)} outcomes, error={self.error!r})"

    @classmethod
    def merge(cls, batches: list[BatchResult]) -> BatchResult:
        """One result from batches run apart (e.g. mapped Prefect tasks): outcomes in request
        order, counters added, lists joined, the first error kept."""
        stats: dict[str, Any] = {}
        for batch in batches:
            for key, value in batch.stats.items():
                stats[key] = stats.get(key, type(value)()) + value
        outcomes = sorted((o for b in batches for o in b.outcomes), key=lambda o: o.request.index)
        return cls(outcomes=outcomes, stats=stats, error=next((b.error for b in batches if b.error), None))


class GenerateSummary(BaseModel):
    """The closing numbers of a run (also written to `generate_summary.json`)."""

    requested: int
    requests: int
    done_requests: int
    kept: int
    rejected: dict[str, int]
    duplicates: int
    surplus: int
    calls: int
    cache_hits: int
    retries: int
    timeouts: int = 0
    reasks: int
    prompt_tokens: int
    completion_tokens: int
    seconds: float
    k_samples: int
    mean_confidence: float | None
    model: str
    complete: bool
    error: str | None = None
    repaired: dict[str, int] = Field(default_factory=dict)
    failure_share: float = 0.0
    max_failure_share: float = 0.5
    structured_mode: str = "json_schema"
    fallbacks: list[str] = Field(default_factory=list)
    origin: str = "llm"  # "llm": texts the LLM wrote; "corpus": the user's texts, annotated (then `requested` counts windows)
    documents: int | None = None  # corpus: documents read
    split_sentences: int | None = None  # corpus: sentences longer than a window, cut at a space


# --- prompts and schema -------------------------------------------------------------------------
def default_max_tokens(n: int) -> int:
    """The token budget of an answer with `n` annotated examples (when --max-tokens is not set)."""
    return 200 + 400 * n


def item_schema(spec: TaskSpec) -> dict[str, Any]:
    """JSON schema of one annotated text, with the spec's labels as enums and bounds on the
    text's length and the number of entities and relations (grammar servers enforce them)."""

    def label(values: list[str]) -> dict[str, Any]:
        return {"type": "string", "enum": values} if values else {"type": "string"}

    def obj(props: dict[str, Any]) -> dict[str, Any]:
        return {"type": "object", "properties": props, "required": list(props), "additionalProperties": False}

    short = {"type": "string", "maxLength": 200}
    entity = obj({"text": short, "label": label(spec.entity_labels)})
    # a spec without relation types (NER only) allows no relation at all (maxItems 0); an empty
    # label enum would say the same but crashes llama.cpp's grammar compiler
    relation = obj({"head": short, "tail": short, "label": label(spec.relation_labels)})
    return obj(
        {
            "text": {"type": "string", "minLength": 1, "maxLength": MAX_TEXT_CHARS},
            "entities": {"type": "array", "items": entity, "maxItems": MAX_ENTITIES},
            "relations": {"type": "array", "items": relation, "maxItems": MAX_RELATIONS if spec.relations else 0},
        }
    )


def annotate_schema(spec: TaskSpec) -> dict[str, Any]:
    """JSON schema of an `annotate` answer: the item schema without the text (it is given)."""
    schema = item_schema(spec)
    props = {k: v for k, v in schema["properties"].items() if k != "text"}
    return {**schema, "properties": props, "required": list(props)}


def generate_schema(spec: TaskSpec, n: int | None = None) -> dict[str, Any]:
    """JSON schema of a `generate` answer: `{"examples": [item, ...]}`, exactly `n` items when given."""
    examples: dict[str, Any] = {"type": "array", "items": item_schema(spec)}
    if n is not None:
        examples |= {"minItems": n, "maxItems": n}
    return {"type": "object", "properties": {"examples": examples}, "required": ["examples"], "additionalProperties": False}


def prompt_id(spec: TaskSpec, prompt: str = "generate") -> str:
    """A short hash of the templates behind a prompt (a template change gives a new id)."""
    blob = json.dumps([spec.prompts.system, getattr(spec.prompts, prompt)])
    return hashlib.sha1(blob.encode()).hexdigest()[:12]


def chat_messages(spec: TaskSpec, prompt: str, **variables: Any) -> list[dict[str, str]]:
    return [{"role": "system", "content": spec.render("system")}, {"role": "user", "content": spec.render(prompt, **variables)}]


def as_examples(value: Any) -> list[Any] | None:
    """The list of items in a `generate` answer: `{"examples": [...]}` as asked, or what servers
    that ignore `response_format` send instead: a bare list, or a single item."""
    if isinstance(value, dict) and isinstance(value.get("examples"), list):
        return value["examples"]
    if isinstance(value, list):
        return value
    if isinstance(value, dict) and isinstance(value.get("text"), str):
        return [value]
    return None


def _check_examples(value: Any) -> str | None:
    return None if as_examples(value) is not None else "expected a JSON object with an 'examples' list"


def _check_item(value: Any) -> str | None:
    return None if isinstance(value, dict) and isinstance(value.get("entities"), list) else "expected one JSON object with 'entities'"


# --- planning -----------------------------------------------------------------------------------
def plan_requests(spec: TaskSpec, n: int, seed: int = 0, per_call: int | None = None) -> list[GenerationRequest]:
    """Split `n` examples into requests of `per_call` (default `spec.examples_per_call`), cycling
    through the seed topics in an order shuffled by `seed`; every k-th request (k = 1 /
    `spec.negative_share`) asks for texts that name nothing, on the spec's negative topics. The
    plan for a larger `n` extends the plan for a smaller one, so growing a run reuses every cached
    answer."""
    if n < 1:
        raise DistillError(f"--n must be at least 1 (got {n})")
    topics = spec.topic_list
    if not topics:
        raise DistillError(f"spec {spec.name!r}: the seed topic list is empty: add topics to generate from")
    if per_call is not None and per_call < 1:
        raise DistillError(f"--examples-per-call must be at least 1 (got {per_call})")
    random.Random(seed).shuffle(topics)
    per = per_call or spec.examples_per_call
    count = math.ceil(n / per)
    every = round(1 / spec.negative_share) if spec.negative_share else 0
    requests = []
    for i in range(count):
        negative = bool(every) and i % every == every - 1
        if negative:  # the k-th negative request: topic k of the list, a new seed each time round it
            k = i // every
            topic, round_ = spec.negative_topics[k % len(spec.negative_topics)], k // len(spec.negative_topics)
        else:
            topic, round_ = topics[i % len(topics)], i // len(topics)
        requests.append(GenerationRequest(index=i, topic=topic, n=min(per, n - i * per), sample=0, seed=seed + round_, negative=negative))
    return requests


def plan_annotations(windows: list[Window], seed: int = 0) -> list[GenerationRequest]:
    """One request per window of the user's documents (the same windows give the same plan)."""
    return [GenerationRequest(index=i, topic=w.document, n=1, seed=seed, window=w) for i, w in enumerate(windows)]


# --- running ------------------------------------------------------------------------------------
async def run_request(
    request: GenerationRequest, spec: TaskSpec, llm: LLMClient, k_samples: int = 1, rules: GroundingRules | None = None
) -> RequestOutcome:
    """Ask for one request's examples, ground each under `rules`, and (k_samples > 1) score agreement.

    Raises `DistillError` for problems that stop the run (server down, key refused)."""
    if request.window is not None:
        return await annotate_request(request, spec, llm, k_samples, rules)
    outcome = RequestOutcome(request=request)
    rules = rules or GroundingRules()

    def reject(reason: str, detail: str, raw: Any = None, count: int = 1) -> None:
        # one row per example asked for; the raw answer only on the first (not the same text n times)
        outcome.rejected += [Rejection(request=request.index, topic=request.topic, reason=reason, detail=detail, raw=raw if i == 0 else None) for i in range(count)]

    budget = llm.config.max_tokens or default_max_tokens(request.n)
    prompt = "negative" if request.negative else "generate"
    if request.negative:
        rules = rules.model_copy(update={"min_entities": 0})  # asked for texts that name nothing
    messages = chat_messages(spec, prompt, topic=request.topic, n=request.n)
    try:
        answer = await llm.complete_json(messages, generate_schema(spec, request.n), seed=request.seed, check=_check_examples, max_tokens=budget)
    except RequestFailed as err:
        reject(err.reason, err.detail, count=request.n)
        return outcome
    if answer.value is None:
        reject(answer.reason or "malformed_output", answer.error or "", raw=_attempts(answer), count=request.n)
        return outcome
    items = as_examples(answer.value) or []
    outcome.surplus = max(0, len(items) - request.n)
    source = Source(model=llm.config.model, prompt_id=prompt_id(spec, prompt), topic=request.topic, sample=request.sample, origin="llm")
    repairs: Counter[str] = Counter()
    for item in items[: request.n]:
        try:
            outcome.examples.append(ground(item, spec, source=source, rules=rules, repairs=repairs))
        except GroundingError as err:
            reject(err.reason, err.detail, raw=item)
    outcome.repaired = dict(repairs)
    if len(items) < request.n:
        reject("not_returned", f"asked for {request.n} examples, got {len(items)}", count=request.n - len(items))
    if k_samples > 1 and outcome.examples:
        outcome.examples = list(await asyncio.gather(*(score_agreement(e, spec, llm, k_samples, request.seed, rules) for e in outcome.examples)))
    return outcome


ANNOTATE_RULES = {"min_entities": 0, "bad_mentions": "drop"}  # given text may name nothing; one bad mention costs only itself


def annotate_rules(rules: GroundingRules | None = None) -> GroundingRules:
    """The grounding rules for given text: `rules` (default ones) with `ANNOTATE_RULES` where
    `rules` keeps the default of text the LLM writes (a value the user chose stays)."""
    rules = rules or GroundingRules()
    defaults = GroundingRules()
    return rules.model_copy(update={k: v for k, v in ANNOTATE_RULES.items() if getattr(rules, k) == getattr(defaults, k)})


async def annotate_request(
    request: GenerationRequest, spec: TaskSpec, llm: LLMClient, k_samples: int = 1, rules: GroundingRules | None = None
) -> RequestOutcome:
    """Annotate one window of a document with the spec's `annotate` prompt and ground the mentions
    in it; the example keeps the window's provenance (file, document, offset)."""
    window = request.window
    assert window is not None
    outcome = RequestOutcome(request=request)
    rules = annotate_rules(rules)

    def reject(reason: str, detail: str, raw: Any = None) -> None:
        outcome.rejected.append(Rejection(request=request.index, topic=request.topic, reason=reason, detail=detail, raw=raw))

    messages = chat_messages(spec, "annotate", text=window.text)
    budget = llm.config.max_tokens or default_max_tokens(1)
    try:
        answer = await llm.complete_json(messages, annotate_schema(spec), seed=request.seed, check=_check_item, max_tokens=budget)
    except RequestFailed as err:
        reject(err.reason, err.detail, raw={"window": window.model_dump()})
        return outcome
    if answer.value is None:
        reject(answer.reason or "malformed_output", answer.error or "", raw={"window": window.model_dump(), **_attempts(answer)})
        return outcome
    source = Source(
        model=llm.config.model, prompt_id=prompt_id(spec, "annotate"), sample=request.sample, origin="corpus",
        file=window.file, document=window.document, offset=window.offset,
    )
    repairs: Counter[str] = Counter()
    try:
        example = ground({**answer.value, "text": window.text}, spec, source=source, rules=rules, repairs=repairs, written=False)
    except GroundingError as err:
        reject(err.reason, err.detail, raw={"window": window.model_dump(), "answer": answer.value})
        return outcome
    outcome.repaired = dict(repairs)
    outcome.examples = [example]
    if k_samples > 1:
        outcome.examples = [await score_agreement(example, spec, llm, k_samples, request.seed, rules)]
    return outcome


def _attempts(answer: JSONAnswer) -> dict[str, Any]:
    """Each attempt of a failed answer once (its problem and the first 2,000 characters)."""
    return {"attempts": [{"problem": a["problem"], "content": a["content"][:2000]} for a in answer.attempts]}


def _votes(example: Example) -> tuple[set[tuple[int, int, str]], set[tuple[tuple[int, int], tuple[int, int], str]]]:
    spans = {(e.start, e.end, e.label) for e in example.entities}
    rels = {((example.entities[r.head].start, example.entities[r.head].end), (example.entities[r.tail].start, example.entities[r.tail].end), r.label) for r in example.relations}
    return spans, rels


async def score_agreement(example: Example, spec: TaskSpec, llm: LLMClient, k: int, seed: int = 0, rules: GroundingRules | None = None) -> Example:
    """Annotate the example's text `k - 1` more times; each entity's and relation's confidence is
    the share of the k annotations (its own included) that contain it, and the example's is
    their mean (or the share that found nothing, for an example without entities).
    Samples that fail count as absent."""
    messages = chat_messages(spec, "annotate", text=example.text)
    budget = llm.config.max_tokens or default_max_tokens(1)
    # a sample that finds nothing is a vote for nothing, and the text is the example's own
    sample_rules = (rules or GroundingRules()).model_copy(update={"min_entities": 0, "bad_mentions": "drop"})

    async def sample(s: int) -> JSONAnswer | None:
        try:
            return await llm.complete_json(messages, annotate_schema(spec), seed=seed * 1000 + s, check=_check_item, max_tokens=budget)
        except RequestFailed:
            return None

    samples: list[Example] = []
    for answer in await asyncio.gather(*(sample(s) for s in range(1, k))):
        if answer is None or answer.value is None:
            continue
        try:
            samples.append(ground({**answer.value, "text": example.text}, spec, rules=sample_rules, written=False))
        except GroundingError:
            continue
    votes = [_votes(s) for s in samples]
    total = 1 + len(votes)
    entities = [
        e.model_copy(update={"confidence": (1 + sum((e.start, e.end, e.label) in v[0] for v in votes)) / total}) for e in example.entities
    ]
    relations = []
    for r in example.relations:
        h, t = example.entities[r.head], example.entities[r.tail]
        key = ((h.start, h.end), (t.start, t.end), r.label)
        relations.append(r.model_copy(update={"confidence": (1 + sum(key in v[1] for v in votes)) / total}))
    scores = [e.confidence for e in entities] + [r.confidence for r in relations]
    confidence = sum(scores) / len(scores) if scores else (1 + sum(not v[0] for v in votes)) / total
    source = example.source.model_copy(update={"confidence": round(confidence, 4)})
    return example.model_copy(update={"entities": entities, "relations": relations, "source": source})


async def arun_requests(
    requests: list[GenerationRequest],
    spec: TaskSpec,
    config: LLMConfig,
    cache_dir: str | Path | None,
    k_samples: int = 1,
    on_done: Callable[[RequestOutcome], None] | None = None,
    rules: GroundingRules | None = None,
    on_event: Callable[[str], None] | None = None,
) -> BatchResult:
    """Run requests concurrently (up to `config.concurrency` in flight); stops early on a fatal
    error and returns what finished, with `error` set. `on_event` hears the client's events
    (retries, timeouts, re-asks, ...) as they happen."""
    outcomes: list[RequestOutcome] = []
    error = None

    async def one(request: GenerationRequest) -> None:
        outcome = await run_request(request, spec, llm, k_samples, rules)
        outcomes.append(outcome)
        if on_done:
            on_done(outcome)

    async with LLMClient(config, cache_dir, on_event=on_event) as llm:
        tasks = [asyncio.create_task(one(r)) for r in requests]
        if tasks:
            done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            failures = [t.exception() for t in done if t.exception() is not None]
            for failure in failures:
                if not isinstance(failure, DistillError):
                    raise failure
            if failures:
                error = str(failures[0])
        outcomes.sort(key=lambda o: o.request.index)
        stats = asdict(llm.stats)
        stats["structured_mode"] = [llm.mode]  # a list, so that merged batches add up
        return BatchResult(outcomes=outcomes, stats=stats, error=error)


def run_requests(
    requests: list[GenerationRequest],
    spec: TaskSpec,
    config: LLMConfig,
    cache_dir: str | Path | None,
    k_samples: int = 1,
    on_done: Callable[[RequestOutcome], None] | None = None,
    rules: GroundingRules | None = None,
    on_event: Callable[[str], None] | None = None,
) -> BatchResult:
    """Synchronous `arun_requests` (for Prefect tasks and scripts)."""
    return asyncio.run(arun_requests(requests, spec, config, cache_dir, k_samples, on_done, rules, on_event))


# --- finishing a run ----------------------------------------------------------------------------
FAILED_DIR = "last_failure"


def top_reasons(rejected: list[Rejection], limit: int = 3) -> str:
    """The most common rejection reasons with an example detail, in one line."""
    counts = Counter(r.reason for r in rejected)
    detail = {r.reason: r.detail for r in reversed(rejected) if r.detail}
    parts = [f"{reason} {count}" + (f" ({detail[reason][:120]})" if reason in detail else "") for reason, count in counts.most_common(limit)]
    return "; ".join(parts) or "nothing returned"


def finish_run(
    out_dir: str | Path,
    requests: list[GenerationRequest],
    batch: BatchResult,
    config: LLMConfig,
    seconds: float,
    k_samples: int = 1,
    dedup_threshold: float = 0.9,
    max_failure_share: float = 0.5,
    corpus: dict[str, Any] | None = None,
) -> GenerateSummary:
    """Dedup the kept examples and write `generated.jsonl`, `rejected.jsonl` and the summary.

    A failed run (a fatal error, no example kept, or more than `max_failure_share` of the asked
    examples rejected) leaves the run folder's earlier outputs as they were: its own go to
    `OUT/last_failure/` for a look, and `DistillError` says why in one line.
    """
    out = Path(out_dir)
    examples = [e for o in batch.outcomes for e in o.examples]
    rejected = [r for o in batch.outcomes for r in o.rejected]
    kept, duplicates = dedup(examples, threshold=dedup_threshold)
    topic_of = {e.id: e.source.topic for e in examples}
    rows = [r.model_dump(mode="json") for r in rejected]
    rows += [
        {"request": None, "topic": topic_of.get(e.id), "reason": "duplicate", "detail": why, "raw": json.loads(e.model_dump_json())}
        for e, why in duplicates
    ]
    confidences = [e.source.confidence for e in kept if e.source.confidence is not None]
    stats = batch.stats
    requested = sum(r.n for r in requests)
    repaired: Counter[str] = Counter()
    for outcome in batch.outcomes:
        repaired.update(outcome.repaired)
    modes = stats.get("structured_mode") or [config.structured]
    summary = GenerateSummary(
        requested=requested,
        requests=len(requests),
        done_requests=len(batch.outcomes),
        kept=len(kept),
        rejected=dict(Counter(r.reason for r in rejected).most_common()),
        duplicates=len(duplicates),
        surplus=sum(o.surplus for o in batch.outcomes),
        calls=stats.get("calls", 0),
        cache_hits=stats.get("cache_hits", 0),
        retries=stats.get("retries", 0),
        timeouts=stats.get("timeouts", 0),
        reasks=stats.get("reasks", 0),
        prompt_tokens=stats.get("prompt_tokens", 0),
        completion_tokens=stats.get("completion_tokens", 0),
        seconds=round(seconds, 3),
        k_samples=k_samples,
        mean_confidence=round(sum(confidences) / len(confidences), 4) if confidences else None,
        model=config.model,
        complete=batch.error is None,
        error=batch.error,
        repaired=dict(repaired),
        failure_share=round(len(rejected) / requested, 4) if requested else 0.0,
        max_failure_share=max_failure_share,
        structured_mode=min(modes, key=STRUCTURED_ORDER.index),
        fallbacks=list(dict.fromkeys(stats.get("fallback_notes", []))),
        **(corpus or {}),
    )
    too_many = summary.failure_share > max_failure_share
    if batch.error or not kept or too_many:
        _write_outputs(out / FAILED_DIR, kept, rows, summary)
        where = f"its outputs are in {out / FAILED_DIR}; the earlier outputs in {out} are untouched"
        if batch.error:
            raise DistillError(
                f"{batch.error}; {summary.done_requests} of {summary.requests} requests finished ({where}); "
                "rerun the same command to continue: finished calls are cached"
            )
        if not kept:
            raise DistillError(f"no example kept of {summary.requested} asked: {top_reasons(rejected)} ({where})")
        raise DistillError(
            f"{len(rejected)} of {summary.requested} asked were rejected ({summary.failure_share:.0%}, above the allowed "
            f"{max_failure_share:.0%}, --max-failure-share): {top_reasons(rejected)} ({where})"
        )
    _write_outputs(out, kept, rows, summary)
    shutil.rmtree(out / FAILED_DIR, ignore_errors=True)
    return summary


def _write_outputs(folder: Path, kept: list[Example], rejected_rows: list[dict[str, Any]], summary: GenerateSummary) -> None:
    """Each file atomically; the summary last, so it is there only when the examples are."""
    try:
        layout = RunLayout(folder)
        write_jsonl(layout.generated, kept)
        atomic_write(layout.rejected, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rejected_rows))
        atomic_write(layout.generate_summary, summary.model_dump_json(indent=2) + "\n")
    except OSError as err:
        raise DistillError(f"{folder}: cannot write the outputs ({err.strerror}); choose another --out") from None


def _check_run_settings(k_samples: int, max_failure_share: float) -> None:
    if k_samples < 1:
        raise DistillError(f"--k-samples must be at least 1 (got {k_samples})")
    if not 0 <= max_failure_share <= 1:
        raise DistillError(f"--max-failure-share must be between 0 and 1 (got {max_failure_share})")


def generate(
    spec: TaskSpec,
    n: int,
    out_dir: str | Path,
    config: LLMConfig,
    seed: int = 0,
    k_samples: int = 1,
    cache_dir: str | Path | None = None,
    dedup_threshold: float = 0.9,
    on_done: Callable[[RequestOutcome], None] | None = None,
    rules: GroundingRules | None = None,
    max_failure_share: float = 0.5,
    examples_per_call: int | None = None,
    on_event: Callable[[str], None] | None = None,
) -> GenerateSummary:
    """Generate `n` examples into `out_dir` (LLM cache in `out_dir/llm_cache` unless `cache_dir`).

    On a fatal error (server unreachable, key refused), when nothing is kept or when more than
    `max_failure_share` of the examples are rejected, `DistillError` says how far it got and why,
    and the earlier outputs stay; rerunning continues from the cache.
    """
    _check_run_settings(k_samples, max_failure_share)
    out = Path(out_dir)
    requests = plan_requests(spec, n, seed, examples_per_call)
    started = time.perf_counter()
    batch = run_requests(requests, spec, config, cache_dir or RunLayout(out).llm_cache, k_samples, on_done, rules, on_event)
    return finish_run(out, requests, batch, config, time.perf_counter() - started, k_samples, dedup_threshold, max_failure_share)


def annotate(
    spec: TaskSpec,
    windows: list[Window],
    out_dir: str | Path,
    config: LLMConfig,
    seed: int = 0,
    k_samples: int = 1,
    cache_dir: str | Path | None = None,
    dedup_threshold: float = 1.0,
    on_done: Callable[[RequestOutcome], None] | None = None,
    rules: GroundingRules | None = None,
    max_failure_share: float = 0.5,
    on_event: Callable[[str], None] | None = None,
    documents: int | None = None,
    split_sentences: int | None = None,
) -> GenerateSummary:
    """Annotate the user's text, one request per window, into `out_dir` (the same files as
    `generate`; exact duplicate texts dropped unless `dedup_threshold` < 1 asks for near ones too).
    Failures behave as in `generate`: earlier outputs stay, and the rerun continues from the cache."""
    _check_run_settings(k_samples, max_failure_share)
    if not windows:
        raise DistillError("no text to annotate")
    out = Path(out_dir)
    requests = plan_annotations(windows, seed)
    started = time.perf_counter()
    batch = run_requests(requests, spec, config, cache_dir or RunLayout(out).llm_cache, k_samples, on_done, rules, on_event)
    corpus = {"origin": "corpus", "documents": documents, "split_sentences": split_sentences}
    return finish_run(out, requests, batch, config, time.perf_counter() - started, k_samples, dedup_threshold, max_failure_share, corpus)


__all__ = [
    "BatchResult",
    "GenerateSummary",
    "GenerationRequest",
    "Rejection",
    "RequestOutcome",
    "annotate",
    "annotate_request",
    "annotate_schema",
    "arun_requests",
    "as_examples",
    "default_max_tokens",
    "finish_run",
    "generate",
    "generate_schema",
    "item_schema",
    "plan_annotations",
    "plan_requests",
    "run_request",
    "run_requests",
    "score_agreement",
    "top_reasons",
]
