"""A simulated annotator for demos and CI: reviews Label Studio tasks through the same REST API
(`POST /api/tasks/<id>/annotations/`) that a person's browser uses.

With the truth the mock LLM recorded for each text, it reviews as a careful human would, with
probability `accuracy` per task (otherwise it submits the prediction as is, like a hurried human:
drift, wrong labels and factually wrong texts slip through): it rejects examples the truth marks
as factually wrong or unusable (errors `"factually_wrong"`, `"unusable"`), and corrects the rest
to the truth, which is the gold under the mock's one span convention (no leading "in"/"on"/"by"
or article, list items apart, full names, right labels and relations; `annotators.mock_world`),
except for the convention drift of a real reviewer: with probability `convention_drift` per
entity it leaves an LLM span that differs only by convention, or draws the boundary its own way
(`annotators.truth.review_example`, the same decision the bench makes). It accepts texts it has
no truth for. A blind task (`data.blind`: a test text sent without the LLM's answer) it labels
from scratch, every boundary its own way, and a hurried reviewer does not check the text's facts.

Several annotators are real Label Studio users (`<name>@distill.local`, created on first use in
the admin's organization). The community edition gives API tokens only to users who log in, so
the admin's token posts each annotation with `completed_by=<that user's id>`, which Label Studio
records as the annotator, exactly as if that user had submitted it.

Public API:
    load_truth(path) -> dict[str, TruthRecord]                       keyed by text
    annotator_ids(ls, names) -> dict[str, int]
    simulate_review(ls, project_id, truth, accuracy=0.9, annotators=("annotator-1",),
                    per_task=1, seconds_per_task=0.0, seed=0, limit=None,
                    convention_drift=0.0) -> SimulateResult
"""

from __future__ import annotations

import hashlib
import random
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from label_studio_sdk import LabelStudio

from distill_ner.annotators.label_studio import (
    LABELS,
    REJECT_UNUSABLE,
    REJECT_WRONG,
    TEXT,
    VERDICT,
    call,
    create,
    to_result,
)
from distill_ner.annotators.truth import TruthRecord, load_truth_records, review_example
from distill_ner.data.errors import DistillError
from distill_ner.data.example import Entity, Example

DOMAIN = "distill.local"


def load_truth(path: str | Path) -> dict[str, TruthRecord]:
    """The mock LLM's truth records (true example + injected errors), keyed by text."""
    return load_truth_records(path)


@dataclass
class SimulateResult:
    annotations: int = 0
    tasks: int = 0
    decisions: Counter = field(default_factory=Counter)  # corrected / accepted / rejected / labelled (blind) / no_truth
    per_annotator: Counter = field(default_factory=Counter)


def annotator_ids(ls: LabelStudio, names: Sequence[str]) -> dict[str, int]:
    """Label Studio user ids for these annotator names, creating the users that are missing."""
    emails = {name: name if "@" in name else f"{name}@{DOMAIN}" for name in names}
    users = call(ls, "listing users", lambda: {u.email: u.id for u in ls.users.list()})
    ids = {}
    for name, email in emails.items():
        if email not in users:
            find = lambda email=email: next((u for u in ls.users.list() if u.email == email), None)
            user = create(ls, f"creating user {email}", ls.users.create, find, username=email.split("@")[0], email=email)
            users[email] = user.id
        ids[name] = users[email]
    return ids


def _get(obj: Any, key: str) -> Any:
    return obj.get(key) if isinstance(obj, dict) else getattr(obj, key, None)


def _decide(
    text: str, prediction: list[dict], truth: dict[str, TruthRecord], accuracy: float, rng: random.Random,
    annotator: str = "annotator-1", convention_drift: float = 0.0, blind: bool = False,
) -> tuple[str, list[dict]]:
    """(decision, annotation result) of one simulated reviewer on one task (`review_example`;
    `blind`: a task without the LLM's prediction, labelled from scratch)."""
    record = truth.get(text)
    if record is None:
        return "no_truth", prediction
    decision, example = review_example(record, _predicted(text, prediction), annotator, accuracy, convention_drift, rng, blind=blind)
    if blind and example is not None:
        return "labelled", to_result(example)
    if decision == "missed":
        return "accepted", prediction  # a miss: the prediction goes through unchanged
    if decision == "rejected":
        choice = REJECT_WRONG if "factually_wrong" in record.errors else REJECT_UNUSABLE
        return "rejected", [{"from_name": VERDICT, "to_name": TEXT, "type": "choices", "value": {"choices": [choice]}}]
    corrected = to_result(example)
    same = _spans(corrected) == _spans(prediction)
    return ("accepted" if same else "corrected"), corrected


def _predicted(text: str, prediction: list[dict]) -> Example | None:
    """The entities of a Label Studio prediction as an example (None if it has none or they overlap)."""
    try:
        entities = [Entity(start=i["value"]["start"], end=i["value"]["end"], label=i["value"]["labels"][0]) for i in prediction if i.get("from_name") == LABELS]
        return Example(text=text, entities=entities) if entities else None
    except (KeyError, IndexError, ValueError):
        return None


def _spans(result: list[dict]) -> tuple[set, set]:
    ids = {i["id"]: (i["value"]["start"], i["value"]["end"], i["value"]["labels"][0]) for i in result if i.get("from_name") == LABELS}
    rels = {(ids.get(i["from_id"]), ids.get(i["to_id"]), tuple(i.get("labels") or ())) for i in result if i.get("type") == "relation"}
    return set(ids.values()), rels


def _saved(ls: LabelStudio, task_id: int, user_id: int) -> Any:
    """The submitted (not cancelled) annotation of this user on this task, if there is one."""
    anns = ls.annotations.list(id=task_id)
    return next((a for a in anns if _get(a, "completed_by") == user_id and not _get(a, "was_cancelled")), None)


def simulate_review(
    ls: LabelStudio, project_id: int, truth: dict[str, TruthRecord], accuracy: float = 0.9,
    annotators: Sequence[str] = ("annotator-1",), per_task: int = 1, seconds_per_task: float = 0.0, seed: int = 0,
    limit: int | None = None, convention_drift: float = 0.0,
) -> SimulateResult:
    """Review the project's tasks that still need annotations, as `per_task` of `annotators` each.

    `convention_drift`: the chance per entity that a reviewer leaves an LLM convention variant or
    draws the boundary its own way (`annotators.truth.review_example`; 0: exactly the truth; the
    run config's `review.convention_drift` passes `annotators.truth.CONVENTION_DRIFT` by default).

    `seconds_per_task` paces the review (sleeps that long per annotation, recorded as lead time).
    Deterministic for a seed: each decision depends on the seed, the annotator and the text only
    (not the task id), so the same texts get the same decisions in any project. Tasks an annotator
    already did are not redone, and an annotation is retried only after checking it was not saved.
    """
    if not 0.0 <= accuracy <= 1.0:
        raise DistillError(f"simulated annotator accuracy must be between 0 and 1, not {accuracy}")
    if not 0.0 <= convention_drift <= 1.0:
        raise DistillError(f"simulated annotator convention drift must be between 0 and 1, not {convention_drift}")
    if not annotators or not 1 <= per_task <= len(annotators):
        raise DistillError(f"annotations per task ({per_task}) must be between 1 and the number of annotators ({len(annotators)})")
    ids = annotator_ids(ls, annotators)
    names_by_id = {v: k for k, v in ids.items()}
    tasks = call(ls, f"listing tasks of project {project_id}", lambda: list(ls.tasks.list(project=project_id, fields="all", page_size=500)))
    result = SimulateResult()
    for n, task in enumerate(sorted(tasks, key=lambda t: t.id)):
        if limit is not None and result.tasks >= limit:
            break
        done_by = {names_by_id.get(_get(a, "completed_by")) for a in (task.annotations or []) if not _get(a, "was_cancelled")}
        submitted = sum(1 for a in (task.annotations or []) if not _get(a, "was_cancelled"))
        if submitted >= per_task:
            continue
        predictions = task.predictions or []
        prediction = list(_get(predictions[0], "result") or []) if predictions else []
        text = (task.data or {}).get("text", "")
        rotation = [annotators[(n + k) % len(annotators)] for k in range(len(annotators))]
        todo = [a for a in rotation if a not in done_by][: per_task - submitted]
        for name in todo:
            digest = hashlib.sha1(f"{seed}\x00{name}\x00{text}".encode()).digest()
            blind = bool((task.data or {}).get("blind"))
            decision, annotation = _decide(text, prediction, truth, accuracy, random.Random(digest), name, convention_drift, blind)
            if seconds_per_task:
                time.sleep(seconds_per_task)
            create(
                ls, f"annotating task {task.id}", ls.annotations.create, lambda task_id=task.id, user=ids[name]: _saved(ls, task_id, user),
                id=task.id, result=annotation, completed_by=ids[name],
                parent_prediction=_get(predictions[0], "id") if predictions else None, lead_time=seconds_per_task or None,
            )
            result.annotations += 1
            result.decisions[decision] += 1
            result.per_annotator[name] += 1
        result.tasks += 1
    return result
