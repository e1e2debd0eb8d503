"""Human verification in Label Studio, through `label-studio-sdk` only.

The labeling config is generated from the task spec: `Labels` for the entity types over the
`Text`, `Relations` for the relation types, and a `Choices` field (`verdict`) to reject an example
as factually wrong or unusable; the label descriptions become hints and the project instructions.

Public API (examples are `data.example.Example`; `ls` is a `LabelStudio` from `client`):
    client(conn: Connection) -> LabelStudio                      checks the token
    label_config(spec) -> str
    create(ls, what, fn, find, **kwargs) -> T                    a create retried only after `find()` saw nothing
    project_title(spec, run) -> str                              the run's own project: 'distill <spec> <run>'
    ensure_project(ls, spec, title) -> int                       finds or creates (push only); checks the config
    find_project(ls, spec, title) -> int                         finds (never creates); checks the config
    example_to_task(example, spec, run=None) -> dict             task data + LLM prediction
    push(ls, project_id, examples, spec, run=None, batch_size=500) -> PushResult
    pull(ls, project_id, spec, examples, run=None) -> PullResult verified examples, pending, problems, agreement
    review_status(ls, project_id) -> dict                        done/pending/rejected per annotator
    read_run(run_dir) -> list[Example]; write_verified(run_dir, result, allow_fewer=False) -> Path

Each run has its own project by default (`project_title`): example ids are a hash of the text,
so in a shared project a run over texts another run already pushed would create no task and
pull that run's verdicts as its own. A project shared on purpose still works; pull then warns
how many verdicts come from tasks another run pushed (tasks carry `data.run`).

Push is idempotent: each task carries its example's stable id (`data.example_id`); ids already
in the project are skipped, so pushing twice, or again after a crash, adds no duplicate, and an
existing task (with whatever an annotator did to it) is never touched. Examples go in least
confident first, so Label Studio's default (sequential) order shows them first.

Pull resolves several annotations of one task with a stated rule (`CONFLICT_RULE`), and checks
each relation against the spec's head and tail labels: one drawn backwards (the arrow follows the
annotator's clicks) is turned round and counted; one the spec allows in neither direction, or
one without a type, keeps its task pending and is reported.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from collections import Counter
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from html import unescape
from pathlib import Path
from typing import Any, TypeVar
from xml.etree import ElementTree
from xml.sax.saxutils import escape, quoteattr

import httpx
from label_studio_sdk import LabelStudio
from label_studio_sdk.core.api_error import ApiError
from pydantic import ValidationError
from tenacity import Retrying, retry_if_exception, stop_after_delay, wait_exponential

from distill_ner.annotators.correctness import Judgement, agreement
from distill_ner.annotators.ls_server import Connection
from distill_ner.data.errors import DistillError, validation_message
from distill_ner.data.example import DiffEntity, DiffRelation, Entity, Example, Relation, Review, ReviewDiff, example_confidence
from distill_ner.data.run_layout import RunLayout
from distill_ner.data.spec import TaskSpec

LABELS = "label"
TEXT = "text"
VERDICT = "verdict"
REJECT_WRONG = "Reject: factually wrong"
REJECT_UNUSABLE = "Reject: unusable"
REJECT_CHOICES = (REJECT_WRONG, REJECT_UNUSABLE)
CONFLICT_RULE = (
    "Several annotators: the example is rejected unless a strict majority keeps it; among those "
    "who keep it, an entity (span + label) or relation is kept when a strict majority marked it, "
    "and on a tie when the latest annotation has it."
)
RETRY_SECONDS = 60.0
_COLORS = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#46f0f0", "#f032e6", "#bcf60c"]
T = TypeVar("T")


# --- connection and retries ---------------------------------------------------------------
def _transient(err: BaseException) -> bool:
    if isinstance(err, ApiError):
        return err.status_code is None or err.status_code >= 500
    return isinstance(err, (httpx.TransportError, ConnectionError))


def call(ls: LabelStudio, what: str, fn: Callable[..., T], *args: Any, retry_seconds: float = RETRY_SECONDS, **kwargs: Any) -> T:
    """Call the SDK, retrying while the server is down or restarting; then a one-line error."""
    try:
        for attempt in Retrying(
            retry=retry_if_exception(_transient), stop=stop_after_delay(retry_seconds), wait=wait_exponential(0.5, max=5), reraise=True
        ):
            with attempt:
                return fn(*args, **kwargs)
    except (ApiError, httpx.TransportError, ConnectionError) as err:
        raise _error(ls, what, err, retry_seconds) from None
    raise AssertionError("unreachable")


def create(ls: LabelStudio, what: str, fn: Callable[..., T], find: Callable[[], T | None], retry_seconds: float = RETRY_SECONDS, **kwargs: Any) -> T:
    """Create something once: after a transient failure (the server may have saved it before the
    connection died), `find()` looks for it before each retry, and what it finds is returned."""
    tried = False

    def attempt() -> T:
        nonlocal tried
        if tried:
            found = find()
            if found is not None:
                return found
        tried = True
        return fn(**kwargs)

    return call(ls, what, attempt, retry_seconds=retry_seconds)


def _error(ls: LabelStudio, what: str, err: BaseException, retry_seconds: float) -> DistillError:
    """A one-line error for a failed SDK call."""
    url = ls._client_wrapper.get_base_url()
    if isinstance(err, ApiError):
        if err.status_code in (401, 403):
            return DistillError(f"Label Studio at {url} refused the API token ({what}): check LABEL_STUDIO_API_KEY or the token file")
        if err.status_code == 404:
            return DistillError(f"Label Studio at {url}: not found ({what})")
        if not _transient(err):
            return DistillError(f"Label Studio at {url} failed ({what}): HTTP {err.status_code} {str(err.body)[:200]}")
    return DistillError(
        f"Label Studio at {url} is not answering ({what}, {type(err).__name__}) after {retry_seconds:.0f} s of retries: "
        "start it (`distill label-studio up`) and rerun; finished work is not repeated"
    )


def client(conn: Connection, timeout: float = 120.0, retry_seconds: float = 10.0) -> LabelStudio:
    """An SDK client for this connection; fails now (one line) if the server is down or the token is wrong."""
    ls = LabelStudio(base_url=conn.url, api_key=conn.token, timeout=timeout)
    call(ls, "checking the API token", ls.users.whoami, retry_seconds=retry_seconds)
    return ls


# --- labeling config ----------------------------------------------------------------------
def label_config(spec: TaskSpec) -> str:
    """The Label Studio labeling config for a spec (entities, relations, reject choices)."""
    labels = "\n".join(
        f"    <Label value={quoteattr(e.label)} background={quoteattr(_COLORS[i % len(_COLORS)])} hint={quoteattr(e.description)}/>"
        for i, e in enumerate(spec.entities)
    )
    relations = "\n".join(f"    <Relation value={quoteattr(r.label)} hint={quoteattr(r.description)}/>" for r in spec.relations)
    choices = "\n".join(f"    <Choice value={quoteattr(c)}/>" for c in REJECT_CHOICES)
    fix = "the entities and relations" if spec.relations else "the entities"
    # an NER-only spec gets no (empty) <Relations> block, and a header that asks for no relations;
    # a project made with the empty block before still passes `check_config`
    block = f"  <Relations>\n{relations}\n  </Relations>\n" if spec.relations else ""
    return (
        "<View>\n"
        f'  <Header value="Fix {fix}, or reject the example if it is wrong or unusable."/>\n'
        f"{block}"
        f'  <Labels name="{LABELS}" toName="{TEXT}">\n{labels}\n  </Labels>\n'
        f'  <Text name="{TEXT}" value="$text" granularity="word"/>\n'
        f'  <Choices name="{VERDICT}" toName="{TEXT}" choice="single" showInline="true">\n{choices}\n  </Choices>\n'
        "</View>"
    )


def instructions(spec: TaskSpec) -> str:
    """Project instructions (HTML) from the label descriptions and the spec's guidelines."""
    ents = "".join(f"<li><b>{escape(e.label)}</b>: {escape(e.description)}</li>" for e in spec.entities)
    rels = "".join(
        f"<li><b>{escape(r.label)}</b> ({escape('/'.join(r.head))} &rarr; {escape('/'.join(r.tail))}): {escape(r.description)}</li>"
        for r in spec.relations
    )
    rels = f"<p>Relations:</p><ul>{rels}</ul>" if spec.relations else ""  # NER only: no empty list
    rules = "".join(f"<li>{escape(rule)}</li>" for rule in spec.guidelines)
    rules = f"<p>Guidelines:</p><ul>{rules}</ul>" if rules else ""
    return (
        f"<p>{escape(spec.description)}</p><p>Entities:</p><ul>{ents}</ul>{rels}{rules}"
        "<p>The LLM's annotation is pre-filled: submit it as is if it is right, fix it if not, or pick a "
        "<i>Reject</i> choice if the sentence is factually wrong or unusable.</p>"
    )


def _config_labels(config: str) -> tuple[set[str], set[str], set[str]]:
    root = ElementTree.fromstring(config)
    ents = {el.get("value") for tag in root.iter("Labels") if tag.get("name") == LABELS for el in tag.iter("Label")}
    rels = {el.get("value") for el in root.iter("Relation")}
    choices = {el.get("value") for tag in root.iter("Choices") if tag.get("name") == VERDICT for el in tag.iter("Choice")}
    return ents, rels, choices


def check_config(spec: TaskSpec, config: str, where: str) -> None:
    """Raise if a project's labeling config no longer matches the spec."""
    try:
        ents, rels, choices = _config_labels(config)
    except ElementTree.ParseError as err:
        raise DistillError(f"{where}: the labeling config is not valid XML ({err})") from None
    problems = []
    if ents != set(spec.entity_labels):
        problems.append(f"entity labels {sorted(ents)} != spec {spec.entity_labels}")
    if rels != set(spec.relation_labels):
        problems.append(f"relation labels {sorted(rels)} != spec {spec.relation_labels}")
    if choices != set(REJECT_CHOICES):
        problems.append(f"the {VERDICT!r} choices are {sorted(choices)}")
    if problems:
        raise DistillError(
            f"{where}: the labeling config no longer matches spec {spec.name!r} ({'; '.join(problems)}): "
            "use another project title (--project) or fix the spec"
        )


TITLE_MAX = 50  # Label Studio's limit on project titles


def project_title(spec: TaskSpec, run: str) -> str:
    """The run's own project title, `distill <spec> <run>`; a longer one than Label Studio allows
    is cut and ends in a hash of the whole, so that it stays unique."""
    title = f"distill {spec.name} {run}"
    if len(title) <= TITLE_MAX:
        return title
    digest = hashlib.sha1(title.encode()).hexdigest()[:8]
    return f"{title[: TITLE_MAX - len(digest) - 1].rstrip()} {digest}"


def _find_title(ls: LabelStudio, title: str) -> Any:
    """The project with exactly this title, or None."""
    projects = call(ls, "listing projects", lambda: list(ls.projects.list(title=title)))
    return next((p for p in projects if p.title == title), None)


def _checked(ls: LabelStudio, spec: TaskSpec, project: Any) -> Any:
    """The project, read in full, once its labeling config is checked against the spec."""
    full = call(ls, f"reading project {project.title!r}", ls.projects.get, id=project.id)
    check_config(spec, full.label_config or "", f"Label Studio project {project.title!r} (id {project.id})")
    return full


def find_project(ls: LabelStudio, spec: TaskSpec, title: str) -> int:
    """The project with this title (its config checked against the spec); never creates one."""
    project = _find_title(ls, title)
    if project is not None:
        return _checked(ls, spec, project).id
    titles = sorted(call(ls, "listing projects", lambda: [p.title for p in ls.projects.list()]))
    shown = ", ".join(repr(t) for t in titles[:10]) + (f" and {len(titles) - 10} more" if len(titles) > 10 else "")
    raise DistillError(
        f"no Label Studio project {title!r} (projects: {shown or 'none'}): check --project/--run, or push the run first (distill review push)"
    )


def ensure_project(ls: LabelStudio, spec: TaskSpec, title: str) -> int:
    """Find the project with this title (checking its config against the spec) or create it; for push only."""
    project = _find_title(ls, title)
    if project is not None:
        full = _checked(ls, spec, project)
        if unescape(full.expert_instruction or "") != unescape(instructions(spec)):  # edited guidelines reach the annotators (the server re-escapes quotes)
            call(ls, f"updating the instructions of project {title!r}", ls.projects.update, id=full.id, expert_instruction=instructions(spec), show_instruction=True)
        return full.id
    created = create(
        ls, f"creating project {title!r}", ls.projects.create, lambda: _find_title(ls, title),
        title=title, label_config=label_config(spec), expert_instruction=instructions(spec), show_instruction=True,
        description=f"distill-ner review of {spec.name}: {spec.description}"[:1000],
    )
    return created.id


# --- Example <-> Label Studio ----------------------------------------------------------------
def to_result(example: Example) -> list[dict[str, Any]]:
    """Entities and relations as Label Studio result items (region ids `e0`, `e1`, ...)."""
    items: list[dict[str, Any]] = []
    for i, e in enumerate(example.entities):
        item = {
            "id": f"e{i}", "from_name": LABELS, "to_name": TEXT, "type": "labels",
            "value": {"start": e.start, "end": e.end, "text": example.text[e.start : e.end], "labels": [e.label]},
        }
        if e.confidence is not None:
            item["score"] = e.confidence
        items.append(item)
    for r in example.relations:
        items.append({"type": "relation", "from_id": f"e{r.head}", "to_id": f"e{r.tail}", "direction": "right", "labels": [r.label]})
    return items


def check_labels(example: Example, spec: TaskSpec) -> None:
    """Raise if an example uses a label the spec (and so the labeling config) does not know."""
    for e in example.entities:
        if e.label not in spec.entity_labels:
            raise DistillError(f"example {example.id}: entity label {e.label!r} is not in spec {spec.name!r} ({', '.join(spec.entity_labels)})")
    for r in example.relations:
        if r.label not in spec.relation_labels:
            raise DistillError(f"example {example.id}: relation label {r.label!r} is not in spec {spec.name!r}")


def example_to_task(example: Example, spec: TaskSpec, run: str | None = None, blind: bool = False) -> dict[str, Any]:
    """A Label Studio task: the text, the example id (for idempotency) and the LLM's prediction;
    `blind`: no prediction, no confidence (people label the text from scratch: a blind test text)."""
    check_labels(example, spec)
    confidence = None if blind else example_confidence(example)
    data = {"text": example.text, "example_id": example.id, "llm": example.source.model, "confidence": confidence, "origin": example.source.origin}
    if example.source.document is not None:  # your text: where it is in your file (a column to filter and sort on)
        data |= {"document": example.source.document, "offset": example.source.offset}
    if run:
        data["run"] = run
    if blind:
        return {"data": {**data, "blind": True}}
    prediction: dict[str, Any] = {"model_version": example.source.model or "llm", "result": to_result(example)}
    if confidence is not None:
        prediction["score"] = confidence
    return {"data": data, "predictions": [prediction]}


@dataclass
class Parsed:
    """One annotation's result: entities in text order, relations (checked against the spec), reject choice."""

    entities: list[Entity]
    relations: list[Relation]
    rejected: str | None
    flipped: int = 0  # drawn backwards, allowed by the spec the other way round: turned round
    problems: list[str] = field(default_factory=list)  # allowed in neither direction, or without a type


def _check_relation(label: str, head: Entity, tail: Entity, spec: TaskSpec, show: Callable[[Entity], str]) -> tuple[bool, str | None]:
    """(flip it?, problem) for a relation `label` drawn from `head` to `tail`."""
    rule = next(r for r in spec.relations if r.label == label)
    if head.label in rule.head and tail.label in rule.tail:
        return False, None
    if tail.label in rule.head and head.label in rule.tail:
        return True, None
    allowed = f"{'/'.join(rule.head)} -> {'/'.join(rule.tail)}"
    return False, f"relation {label} {show(head)} -> {show(tail)} is not allowed by spec {spec.name!r} ({label}: {allowed})"


def from_result(result: list[dict[str, Any]], text: str, spec: TaskSpec, where: str) -> Parsed:
    """Label Studio result items -> entities, relations and reject choice; relations are checked
    against the spec (backwards ones turned round, the others reported as problems)."""
    regions: dict[str, Entity] = {}
    rejected, rel_items = None, []
    for item in result:
        kind = item.get("type")
        if kind == "labels":
            value = item["value"]
            labels = value.get("labels") or []
            if len(labels) != 1:
                raise DistillError(f"{where}: span {value.get('text')!r} has {len(labels)} labels; give it exactly one")
            if labels[0] not in spec.entity_labels:
                raise DistillError(f"{where}: label {labels[0]!r} is not in spec {spec.name!r} ({', '.join(spec.entity_labels)})")
            try:
                regions[item["id"]] = Entity(start=int(value["start"]), end=int(value["end"]), label=labels[0])
            except (ValidationError, KeyError) as err:
                raise DistillError(f"{where}: bad span {value!r} ({err})") from None
        elif kind == "relation":
            rel_items.append(item)
        elif kind == "choices" and item.get("from_name") == VERDICT:
            chosen = item["value"].get("choices") or []
            rejected = chosen[0] if chosen else None
    order = sorted(regions, key=lambda rid: (regions[rid].start, regions[rid].end))
    index = {rid: i for i, rid in enumerate(order)}
    show = lambda e: f"{text[e.start : e.end]!r} ({e.label})"  # noqa: E731
    out = Parsed([regions[rid] for rid in order], [], rejected)
    for item in rel_items:
        head, tail = item.get("from_id"), item.get("to_id")
        if head not in index or tail not in index:
            raise DistillError(f"{where}: a relation points to a region that is not an entity span")
        if item.get("direction") == "left":
            head, tail = tail, head
        if not item.get("labels"):
            out.problems.append(f"relation {show(regions[head])} -> {show(regions[tail])} has no type")
            continue
        for label in item["labels"]:
            if label not in spec.relation_labels:
                raise DistillError(f"{where}: relation label {label!r} is not in spec {spec.name!r}")
            flip, problem = _check_relation(label, regions[head], regions[tail], spec, show)
            if problem:
                out.problems.append(problem)
                continue
            h, t = (tail, head) if flip else (head, tail)
            out.flipped += flip
            out.relations.append(Relation(head=index[h], tail=index[t], label=label))
    out.relations = sorted(set(out.relations), key=lambda r: (r.head, r.tail, r.label))
    return out


# --- push ---------------------------------------------------------------------------------
@dataclass
class PushResult:
    project_id: int
    created: int = 0
    skipped: int = 0  # already in the project (never touched)
    task_ids: list[int] = field(default_factory=list)


def existing_example_ids(ls: LabelStudio, project_id: int) -> dict[str, int]:
    """example_id -> task id of every task in the project."""
    def fetch() -> dict[str, int]:
        pages = ls.tasks.list(project=project_id, fields="task_only", include="id,data", page_size=5000)
        return {t.data.get("example_id"): t.id for t in pages if t.data and t.data.get("example_id")}

    return call(ls, f"listing tasks of project {project_id}", fetch)


def order_for_review(examples: Iterable[Example]) -> list[Example]:
    """Least confident first; examples without a confidence go last (stable by id)."""
    def key(e: Example) -> tuple[int, float, str]:
        c = example_confidence(e)
        return (c is None, c if c is not None else 0.0, e.id)

    return sorted(examples, key=key)


def budget_size(budget: float | None, n: int) -> int:
    """How many of `n` examples a review budget sends: a share (<= 1) or a count (> 1); None: all."""
    if budget is None:
        return n
    if budget <= 0:
        raise DistillError(f"review budget {budget}: give a share of the examples (0 < share <= 1) or a count (> 1)")
    return min(n, round(budget * n) if budget <= 1 else int(budget))


def triage(examples: Iterable[Example], budget: float | None, blind: Collection[str] = ()) -> tuple[list[Example], list[Example]]:
    """(the examples a human should review within `budget`, the rest): least confident first
    (`order_for_review`); the `blind` ids (a blind test split) are always sent, first and outside
    the budget. The rest stay as the LLM labelled them ("silver"): never in a dev or test split,
    used only where noise is tolerated (the student's transfer set)."""
    examples = list(examples)
    ordered = order_for_review(e for e in examples if e.id not in blind)
    n = budget_size(budget, len(ordered))
    return [e for e in examples if e.id in blind] + ordered[:n], ordered[n:]


def push(
    ls: LabelStudio, project_id: int, examples: Iterable[Example], spec: TaskSpec, run: str | None = None,
    batch_size: int = 500, retry_seconds: float = RETRY_SECONDS, on_batch: Callable[[int, int], None] | None = None,
    blind: Collection[str] = (),
) -> PushResult:
    """Import examples as tasks with the LLM's annotation as predictions, in batches, idempotently;
    the examples whose ids are in `blind` go without it, to be labelled from scratch."""
    examples = order_for_review(examples)
    tasks = [example_to_task(e, spec, run, blind=e.id in blind) for e in examples]  # checks every label before any upload
    seen = set(existing_example_ids(ls, project_id))
    todo = []
    for task in tasks:
        if task["data"]["example_id"] not in seen:
            seen.add(task["data"]["example_id"])
            todo.append(task)
    result = PushResult(project_id, skipped=len(tasks) - len(todo))
    for start in range(0, len(todo), batch_size):
        batch = todo[start : start + batch_size]
        result.task_ids += _import_batch(ls, project_id, batch, retry_seconds)
        result.created = len(result.task_ids)
        if on_batch:
            on_batch(min(start + batch_size, len(todo)), len(todo))
    return result


def _import_batch(ls: LabelStudio, project_id: int, batch: list[dict], retry_seconds: float) -> list[int]:
    """Import one batch; a retry first drops the tasks that the failed attempt did import."""
    deadline = time.monotonic() + retry_seconds
    attempt = 0
    while True:
        attempt += 1
        try:
            if attempt > 1:
                existing = existing_example_ids(ls, project_id)
                done = [existing[t["data"]["example_id"]] for t in batch if t["data"]["example_id"] in existing]
                batch = [t for t in batch if t["data"]["example_id"] not in existing]
                if not batch:
                    return done
            else:
                done = []
            response = ls.projects.import_tasks(id=project_id, request=batch, return_task_ids=True)
            return done + list(response.task_ids or [])
        except (ApiError, httpx.TransportError, ConnectionError) as err:
            if not _transient(err) or time.monotonic() > deadline:
                raise _error(ls, f"importing tasks into project {project_id}", err, retry_seconds) from None
            time.sleep(min(5.0, 0.5 * 2 ** (attempt - 1)))


# --- pull ---------------------------------------------------------------------------------
@dataclass
class PullResult:
    verified: list[Example]  # accepted, corrected or rejected, with annotator, time, diff
    pending: list[Example]  # pushed, not reviewed yet
    not_pushed: list[Example]  # in the run but not in the project
    agreement: dict[str, Any]
    warnings: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # one line per relation that keeps its task pending
    relations_flipped: int = 0  # drawn backwards, turned round by the spec

    def counts(self) -> dict[str, int]:
        c = Counter(e.review.status for e in self.verified)
        return {
            "accepted": c["accepted"], "corrected": c["corrected"], "rejected": c["rejected"], "pending": len(self.pending),
            "not_pushed": len(self.not_pushed), "relations_flipped": self.relations_flipped,
            **({"blind": blind} if (blind := sum(e.review.blind for e in self.verified)) else {}),
        }


def export_tasks(ls: LabelStudio, project_id: int) -> list[dict[str, Any]]:
    """Every task of the project with its annotations (Label Studio's JSON export)."""
    def fetch() -> list[dict[str, Any]]:
        return json.loads(b"".join(ls.projects.exports.download_sync(id=project_id, export_type="JSON", download_all_tasks=True)))

    return call(ls, f"exporting project {project_id}", fetch)


def user_names(ls: LabelStudio) -> dict[int, str]:
    """Label Studio user id -> email (or username)."""
    return call(ls, "listing users", lambda: {u.id: u.email or u.username for u in ls.users.list()})


def _time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


def judgements(task: dict[str, Any], spec: TaskSpec, users: dict[int, str]) -> list[Judgement]:
    """The submitted (not skipped) annotations of an exported task, oldest first."""
    out = []
    text = task["data"].get("text", "")
    for ann in task.get("annotations") or []:
        if ann.get("was_cancelled"):
            continue
        where = f"Label Studio task {task['id']} (example {task['data'].get('example_id')}), annotation {ann.get('id')}"
        parsed = from_result(ann.get("result") or [], text, spec, where)
        who = ann.get("completed_by")
        who = who.get("email") if isinstance(who, dict) else users.get(who, f"user-{who}")
        when = _time(ann.get("updated_at") or ann.get("created_at"))
        out.append(Judgement(who, when, parsed.rejected, parsed.entities, parsed.relations, parsed.flipped, parsed.problems))
    return sorted(out, key=lambda j: (j.time is None, j.time))


def resolve(judged: list[Judgement]) -> Judgement:
    """Merge several annotators' judgements of one task by `CONFLICT_RULE`."""
    if len(judged) == 1:
        return judged[0]
    keepers = [j for j in judged if not j.rejected]
    names = ", ".join(sorted({j.annotator for j in judged}))
    latest_time = max((j.time for j in judged if j.time), default=None)
    if 2 * len(keepers) <= len(judged):
        reason = Counter(j.rejected for j in judged if j.rejected).most_common(1)[0][0]
        return Judgement(names, latest_time, reason, [], [])
    latest = keepers[-1]

    def span(e: Entity) -> tuple[int, int, str]:
        return (e.start, e.end, e.label)

    votes = Counter(span(e) for j in keepers for e in j.entities)
    n = len(keepers)
    latest_spans = {span(e) for e in latest.entities}
    kept = sorted(s for s, v in votes.items() if 2 * v > n or (2 * v == n and s in latest_spans))
    index = {s: i for i, s in enumerate(kept)}
    rel_votes = Counter(
        (span(j.entities[r.head]), span(j.entities[r.tail]), r.label) for j in keepers for r in j.relations
    )
    latest_rels = {(span(latest.entities[r.head]), span(latest.entities[r.tail]), r.label) for r in latest.relations}
    relations = [
        Relation(head=index[h], tail=index[t], label=lab)
        for (h, t, lab), v in sorted(rel_votes.items())
        if h in index and t in index and (2 * v > n or (2 * v == n and (h, t, lab) in latest_rels))
    ]
    return Judgement(names, latest_time, None, [Entity(start=s, end=e, label=lab) for s, e, lab in kept], relations)


def review_diff(llm: Example, entities: list[Entity], relations: list[Relation]) -> ReviewDiff:
    """What the humans changed: entities and relations added or removed, as text and labels."""
    def ents(example_entities: list[Entity]) -> set[tuple[int, int, str]]:
        return {(e.start, e.end, e.label) for e in example_entities}

    def rels(example_entities: list[Entity], example_relations: list[Relation]) -> set[tuple]:
        key = lambda e: (e.start, e.end)  # noqa: E731
        return {(key(example_entities[r.head]), key(example_entities[r.tail]), r.label) for r in example_relations}

    before, after = ents(llm.entities), ents(entities)
    rel_before, rel_after = rels(llm.entities, llm.relations), rels(entities, relations)
    show = lambda s: DiffEntity(start=s[0], end=s[1], text=llm.text[s[0] : s[1]], label=s[2])  # noqa: E731
    show_rel = lambda r: DiffRelation(head=llm.text[r[0][0] : r[0][1]], tail=llm.text[r[1][0] : r[1][1]], label=r[2])  # noqa: E731
    return ReviewDiff(
        entities_added=[show(s) for s in sorted(after - before)],
        entities_removed=[show(s) for s in sorted(before - after)],
        relations_added=[show_rel(r) for r in sorted(rel_after - rel_before)],
        relations_removed=[show_rel(r) for r in sorted(rel_before - rel_after)],
    )


def verified_example(llm: Example, decision: Judgement, task_id: int, blind: bool = False) -> Example:
    """The human-verified version of an LLM example (`blind`: labelled without the LLM's answer)."""
    if decision.rejected:
        review = Review(status="rejected", annotator=decision.annotator, time=decision.time, task_id=task_id, diff=ReviewDiff(reason=decision.rejected), blind=blind)
        return llm.model_copy(update={"review": review})
    diff = review_diff(llm, decision.entities, decision.relations)
    status = "corrected" if diff.changed else "accepted"
    review = Review(status=status, annotator=decision.annotator, time=decision.time, task_id=task_id, diff=diff if status == "corrected" else None, blind=blind)
    try:
        return Example(id=llm.id, text=llm.text, entities=decision.entities, relations=decision.relations, source=llm.source, review=review, words=llm.words)
    except ValidationError as err:
        raise DistillError(f"Label Studio task {task_id} (example {llm.id}): {validation_message(err)}") from None


def _snippet(text: str, n: int = 40) -> str:
    return repr(text if len(text) <= n else text[: n - 3] + "...")


def pull(ls: LabelStudio, project_id: int, spec: TaskSpec, examples: Iterable[Example], run: str | None = None) -> PullResult:
    """Turn the project's annotations of these examples into verified examples.

    Tasks not reviewed yet (no submitted annotation; skipped ones count as not reviewed) stay
    pending, and so do tasks with a relation the spec does not allow (reported in `problems`).
    Tasks of examples not given here (another run's) are left out. With `run`, a warning counts
    the verdicts that come from tasks another run pushed (a project shared with --project).
    """
    by_id = {e.id: e for e in examples}
    users = user_names(ls)
    result = PullResult([], [], [], {})
    seen: set[str] = set()
    others: Counter = Counter()
    per_task: dict[int, list[Judgement]] = {}
    for task in export_tasks(ls, project_id):
        example = by_id.get(task["data"].get("example_id"))
        if example is None or example.id in seen:
            continue
        seen.add(example.id)
        judged = judgements(task, spec, users)
        problems = [p for j in judged if not j.rejected for p in j.problems]  # a rejected example's relations do not matter
        if problems:
            result.problems += [f"task {task['id']} {_snippet(example.text)}: {p}; fix it in Label Studio and pull again" for p in problems]
        if not judged or problems:
            result.pending.append(example)
            continue
        result.relations_flipped += sum(j.flipped for j in judged)
        if run is not None and task["data"].get("run") != run:
            others[task["data"].get("run") or "unknown"] += 1
        per_task[task["id"]] = judged
        result.verified.append(verified_example(example, resolve(judged), task["id"], blind=bool(task["data"].get("blind"))))
    result.not_pushed = [e for e in by_id.values() if e.id not in seen]
    result.agreement = agreement(per_task)
    if others:
        names = ", ".join(f"{name!r} ({n})" for name, n in others.most_common(3))
        result.warnings.append(
            f"{sum(others.values())} of {len(result.verified)} verdicts come from tasks pushed by another run ({names}): "
            "they were reviewed for that run, not this one"
        )
    return result


def review_status(ls: LabelStudio, project_id: int) -> dict[str, Any]:
    """Tasks done, pending and rejected, overall and per annotator (skips counted apart)."""
    users = user_names(ls)
    total, done, rejected = 0, 0, 0
    per: dict[str, Counter] = {}
    for task in export_tasks(ls, project_id):
        total += 1
        anns = task.get("annotations") or []
        submitted = [a for a in anns if not a.get("was_cancelled")]
        done += bool(submitted)
        rejected += bool(submitted) and all(_is_reject(a) for a in submitted)
        for a in anns:
            who = a.get("completed_by")
            who = who.get("email") if isinstance(who, dict) else users.get(who, f"user-{who}")
            c = per.setdefault(who, Counter())
            c["skipped" if a.get("was_cancelled") else ("rejected" if _is_reject(a) else "done")] += 1
    return {
        "project_id": project_id, "tasks": total, "done": done, "pending": total - done, "rejected": rejected,
        "annotators": {name: {"done": c["done"], "rejected": c["rejected"], "skipped": c["skipped"]} for name, c in sorted(per.items())},
    }


def _is_reject(annotation: dict[str, Any]) -> bool:
    return any(i.get("type") == "choices" and i.get("from_name") == VERDICT and i["value"].get("choices") for i in annotation.get("result") or [])


# --- run folders ----------------------------------------------------------------------------
def read_run(run_dir: str | Path) -> list[Example]:
    """The LLM's examples of a run (`generated.jsonl`)."""
    from distill_ner.data.formats import read_jsonl

    path = RunLayout(run_dir).generated
    if not path.exists():
        raise DistillError(f"{path}: not found (is {run_dir} a run folder?)")
    return read_jsonl(path)


def write_verified(run_dir: str | Path, result: PullResult, allow_fewer: bool = False) -> Path:
    """Write every reviewed example to `verified.jsonl`, the run's examples never pushed (left out
    by a review budget) to `silver.jsonl` with review status "silver", and the counts to
    `review.json` (each atomically).

    Refuses to replace a `verified.jsonl` that holds more examples than this pull has, unless `allow_fewer`.
    """
    from distill_ner.data.formats import write_jsonl

    run_dir = Path(run_dir)
    path = RunLayout(run_dir).verified
    summary = {
        **result.counts(), "agreement": result.agreement, "conflict_rule": CONFLICT_RULE,
        "warnings": result.warnings, "problems": result.problems,
    }
    where = path
    try:
        held = sum(1 for line in path.open(encoding="utf-8") if line.strip()) if path.exists() else 0
        if held > len(result.verified) and not allow_fewer:
            raise DistillError(
                f"{path} holds {held} verified examples and this pull has {len(result.verified)}: "
                "left as it was (pass --allow-fewer to replace it)"
            )
        write_jsonl(path, result.verified)
        where = RunLayout(run_dir).silver
        write_jsonl(where, [e.model_copy(update={"review": Review(status="silver")}) for e in result.not_pushed])
        where = RunLayout(run_dir).review_summary
        tmp = run_dir / ".review.json.tmp"
        tmp.write_text(json.dumps(summary, indent=2, default=str) + "\n")
        os.replace(tmp, where)
    except OSError as err:
        with contextlib.suppress(OSError):
            (run_dir / ".review.json.tmp").unlink(missing_ok=True)
        raise DistillError(f"{where}: cannot write it ({err.strerror or err}); make the run folder writable and pull again") from None
    return path
