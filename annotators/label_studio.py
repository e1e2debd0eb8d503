"""Human verification in Label Studio, through `label-studio-sdk` only.

The labeling config is generated from the task spec: `Labels` for the entity types over the
`Text`, `Relations` for the relation types, and a `Choices` field (`verdict`) to reject an example
as factually wrong or unusable; the label descriptions become hints and the project instructions.

Public API (examples are `data.example.Example`; `ls` is a `LabelStudio` from `client`):
    client(conn: Connection) -> LabelStudio                      checks the token
    label_config(spec) -> str
    ensure_project(ls, spec, title=None) -> int                  finds or creates; checks the config
    example_to_task(example, spec, run=None) -> dict             task data + LLM prediction
    push(ls, project_id, examples, spec, run=None, batch_size=500) -> PushResult
    pull(ls, project_id, spec, examples) -> PullResult           verified examples, pending, agreement
    review_status(ls, project_id) -> dict                        done/pending/rejected per annotator
    read_run(run_dir) -> list[Example]; write_verified(run_dir, result) -> Path

Push is idempotent: each task carries its example's stable id (`data.example_id`); ids already
in the project are skipped, so pushing twice, or again after a crash, adds no duplicate, and an
existing task (with whatever an annotator did to it) is never touched. Examples go in least
confident first, so Label Studio's default (sequential) order shows them first.

Pull resolves several annotations of one task with a stated rule (`CONFLICT_RULE`).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar
from xml.etree import ElementTree
from xml.sax.saxutils import escape, quoteattr

import httpx
from label_studio_sdk import LabelStudio
from label_studio_sdk.core.api_error import ApiError
from pydantic import ValidationError
from tenacity import Retrying, retry_if_exception, stop_after_delay, wait_exponential

from annotators.ls_server import Connection
from data.errors import DistillError
from data.example import Entity, Example, Relation, Review
from data.spec import TaskSpec

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
    return (
        "<View>\n"
        '  <Header value="Fix the entities and relations, or reject the example if it is wrong or unusable."/>\n'
        f"  <Relations>\n{relations}\n  </Relations>\n"
        f'  <Labels name="{LABELS}" toName="{TEXT}">\n{labels}\n  </Labels>\n'
        f'  <Text name="{TEXT}" value="$text" granularity="word"/>\n'
        f'  <Choices name="{VERDICT}" toName="{TEXT}" choice="single" showInline="true">\n{choices}\n  </Choices>\n'
        "</View>"
    )


def instructions(spec: TaskSpec) -> str:
    """Project instructions (HTML) from the label descriptions."""
    ents = "".join(f"<li><b>{escape(e.label)}</b>: {escape(e.description)}</li>" for e in spec.entities)
    rels = "".join(
        f"<li><b>{escape(r.label)}</b> ({escape('/'.join(r.head))} &rarr; {escape('/'.join(r.tail))}): {escape(r.description)}</li>"
        for r in spec.relations
    )
    return (
        f"<p>{escape(spec.description)}</p><p>Entities:</p><ul>{ents}</ul><p>Relations:</p><ul>{rels}</ul>"
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


def project_title(spec: TaskSpec) -> str:
    return f"distill {spec.name}"


def ensure_project(ls: LabelStudio, spec: TaskSpec, title: str | None = None) -> int:
    """Find the project with this title (checking its config against the spec) or create it."""
    title = title or project_title(spec)
    projects = call(ls, "listing projects", lambda: list(ls.projects.list(title=title)))
    for project in projects:
        if project.title == title:
            full = call(ls, f"reading project {title!r}", ls.projects.get, id=project.id)
            check_config(spec, full.label_config or "", f"Label Studio project {title!r} (id {project.id})")
            return project.id
    created = call(
        ls, f"creating project {title!r}", ls.projects.create,
        title=title, label_config=label_config(spec), expert_instruction=instructions(spec), show_instruction=True,
        description=f"distill-ner review of {spec.name}: {spec.description}"[:1000],
    )
    return created.id


# --- Example <-> Label Studio ----------------------------------------------------------------
def example_confidence(example: Example) -> float | None:
    """The LLM's confidence in an example: its own, else the mean of its entities'."""
    if example.source.confidence is not None:
        return example.source.confidence
    scores = [e.confidence for e in example.entities if e.confidence is not None]
    return sum(scores) / len(scores) if scores else None


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


def example_to_task(example: Example, spec: TaskSpec, run: str | None = None) -> dict[str, Any]:
    """A Label Studio task: the text, the example id (for idempotency) and the LLM's prediction."""
    check_labels(example, spec)
    confidence = example_confidence(example)
    data = {"text": example.text, "example_id": example.id, "llm": example.source.model, "confidence": confidence}
    if run:
        data["run"] = run
    prediction: dict[str, Any] = {"model_version": example.source.model or "llm", "result": to_result(example)}
    if confidence is not None:
        prediction["score"] = confidence
    return {"data": data, "predictions": [prediction]}


@dataclass
class Judgement:
    """One annotator's verdict on a task, converted back to entities and relations."""

    annotator: str
    time: datetime | None
    rejected: str | None  # the reject choice, if any
    entities: list[Entity]
    relations: list[Relation]
    skipped_relations: int = 0


def from_result(result: list[dict[str, Any]], text: str, spec: TaskSpec, where: str) -> tuple[list[Entity], list[Relation], str | None, int]:
    """Label Studio result items -> (entities in text order, relations, reject choice, unlabelled relations skipped)."""
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
    relations, skipped = [], 0
    for item in rel_items:
        head, tail = item.get("from_id"), item.get("to_id")
        if head not in index or tail not in index:
            raise DistillError(f"{where}: a relation points to a region that is not an entity span")
        if item.get("direction") == "left":
            head, tail = tail, head
        if not item.get("labels"):
            skipped += 1
            continue
        for label in item["labels"]:
            if label not in spec.relation_labels:
                raise DistillError(f"{where}: relation label {label!r} is not in spec {spec.name!r}")
            relations.append(Relation(head=index[head], tail=index[tail], label=label))
    entities = [regions[rid] for rid in order]
    return entities, sorted(set(relations), key=lambda r: (r.head, r.tail, r.label)), rejected, skipped


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


def push(
    ls: LabelStudio, project_id: int, examples: Iterable[Example], spec: TaskSpec, run: str | None = None,
    batch_size: int = 500, retry_seconds: float = RETRY_SECONDS, on_batch: Callable[[int, int], None] | None = None,
) -> PushResult:
    """Import examples as tasks with the LLM's annotation as predictions, in batches, idempotently."""
    examples = order_for_review(examples)
    tasks = [example_to_task(e, spec, run) for e in examples]  # checks every label before any upload
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

    def counts(self) -> dict[str, int]:
        c = Counter(e.review.status for e in self.verified)
        return {"accepted": c["accepted"], "corrected": c["corrected"], "rejected": c["rejected"], "pending": len(self.pending), "not_pushed": len(self.not_pushed)}


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
        ents, rels, rejected, skipped = from_result(ann.get("result") or [], text, spec, where)
        who = ann.get("completed_by")
        who = who.get("email") if isinstance(who, dict) else users.get(who, f"user-{who}")
        out.append(Judgement(who, _time(ann.get("updated_at") or ann.get("created_at")), rejected, ents, rels, skipped))
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

    def span(j: Judgement, e: Entity) -> tuple[int, int, str]:
        return (e.start, e.end, e.label)

    votes = Counter(span(j, e) for j in keepers for e in j.entities)
    n = len(keepers)
    latest_spans = {span(latest, e) for e in latest.entities}
    kept = sorted(s for s, v in votes.items() if 2 * v > n or (2 * v == n and s in latest_spans))
    index = {s: i for i, s in enumerate(kept)}
    rel_votes = Counter(
        (span(j, j.entities[r.head]), span(j, j.entities[r.tail]), r.label) for j in keepers for r in j.relations
    )
    latest_rels = {(span(latest, latest.entities[r.head]), span(latest, latest.entities[r.tail]), r.label) for r in latest.relations}
    relations = [
        Relation(head=index[h], tail=index[t], label=lab)
        for (h, t, lab), v in sorted(rel_votes.items())
        if h in index and t in index and (2 * v > n or (2 * v == n and (h, t, lab) in latest_rels))
    ]
    return Judgement(names, latest_time, None, [Entity(start=s, end=e, label=lab) for s, e, lab in kept], relations)


def review_diff(llm: Example, entities: list[Entity], relations: list[Relation]) -> dict[str, Any]:
    """What the humans changed: entities and relations added or removed, as text and labels."""
    def ents(example_entities: list[Entity]) -> set[tuple[int, int, str]]:
        return {(e.start, e.end, e.label) for e in example_entities}

    def rels(example_entities: list[Entity], example_relations: list[Relation]) -> set[tuple]:
        key = lambda e: (e.start, e.end)  # noqa: E731
        return {(key(example_entities[r.head]), key(example_entities[r.tail]), r.label) for r in example_relations}

    before, after = ents(llm.entities), ents(entities)
    rel_before, rel_after = rels(llm.entities, llm.relations), rels(entities, relations)
    show = lambda s: {"start": s[0], "end": s[1], "text": llm.text[s[0] : s[1]], "label": s[2]}  # noqa: E731
    show_rel = lambda r: {"head": llm.text[r[0][0] : r[0][1]], "tail": llm.text[r[1][0] : r[1][1]], "label": r[2]}  # noqa: E731
    return {
        "entities_added": [show(s) for s in sorted(after - before)],
        "entities_removed": [show(s) for s in sorted(before - after)],
        "relations_added": [show_rel(r) for r in sorted(rel_after - rel_before)],
        "relations_removed": [show_rel(r) for r in sorted(rel_before - rel_after)],
    }


def verified_example(llm: Example, decision: Judgement, task_id: int) -> Example:
    """The human-verified version of an LLM example."""
    if decision.rejected:
        review = Review(status="rejected", annotator=decision.annotator, time=decision.time, task_id=task_id, diff={"reason": decision.rejected})
        return llm.model_copy(update={"review": review})
    diff = review_diff(llm, decision.entities, decision.relations)
    status = "corrected" if any(diff.values()) else "accepted"
    review = Review(status=status, annotator=decision.annotator, time=decision.time, task_id=task_id, diff=diff if status == "corrected" else None)
    try:
        return Example(id=llm.id, text=llm.text, entities=decision.entities, relations=decision.relations, source=llm.source, review=review)
    except ValidationError as err:
        raise DistillError(f"Label Studio task {task_id} (example {llm.id}): {err.errors()[0]['msg'].removeprefix('Value error, ')}") from None


def pull(ls: LabelStudio, project_id: int, spec: TaskSpec, examples: Iterable[Example]) -> PullResult:
    """Turn the project's annotations of these examples into verified examples.

    Tasks not reviewed yet (no submitted annotation; skipped ones count as not reviewed) stay
    pending. Tasks of examples not given here (another run's) are left out.
    """
    from annotators.correctness import agreement

    by_id = {e.id: e for e in examples}
    users = user_names(ls)
    verified, pending, warnings, seen = [], [], [], set()
    per_task: dict[int, list[Judgement]] = {}
    for task in export_tasks(ls, project_id):
        example = by_id.get(task["data"].get("example_id"))
        if example is None or example.id in seen:
            continue
        seen.add(example.id)
        judged = judgements(task, spec, users)
        if not judged:
            pending.append(example)
            continue
        skipped = sum(j.skipped_relations for j in judged)
        if skipped:
            warnings.append(f"task {task['id']} (example {example.id}): {skipped} relation(s) without a label were left out")
        per_task[task["id"]] = judged
        verified.append(verified_example(example, resolve(judged), task["id"]))
    not_pushed = [e for e in by_id.values() if e.id not in seen]
    return PullResult(verified, pending, not_pushed, agreement(per_task), warnings)


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
    from data.formats import read_jsonl

    path = Path(run_dir) / "generated.jsonl"
    if not path.exists():
        raise DistillError(f"{path}: not found (is {run_dir} a run folder?)")
    return read_jsonl(path)


def write_verified(run_dir: str | Path, result: PullResult) -> Path:
    """Write every reviewed example to `verified.jsonl` (atomically) and the counts to `review.json`."""
    from data.formats import write_jsonl

    run_dir = Path(run_dir)
    path = write_jsonl(run_dir / "verified.jsonl", result.verified)
    summary = {**result.counts(), "agreement": result.agreement, "conflict_rule": CONFLICT_RULE, "warnings": result.warnings}
    (run_dir / "review.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    return path
