"""The mock LLM's truth file: the true annotation of every example it wrote, and the errors it
injected. One JSON object a line: an `Example` plus `"errors"` (and, from the mock's harder world,
`"notes"` on the text errors and the `"shapes"` of the text).

The example is the gold annotation under the mock's one span convention (`annotators.mock_world`).
`errors` names what was wrong with what the mock answered: text errors (`"factually_wrong"`,
`"unusable"`: a careful reviewer rejects the example) and annotation errors (e.g.
`"leading_preposition"`, `"merged_list"`, `"wrong_label"`: a careful reviewer corrects them).

Written by the mock LLM (`annotators.mock_llm`), read by the simulated annotator
(`annotators.simulate`) and the bench, so that they can correct the injected errors.

What a simulated reviewer submits for a truth record is decided here, in `review_example`, for
both the simulated Label Studio annotator and `bench/mock_difficulty.py`. A careful reviewer
rejects wrong texts and corrects the rest to the truth, but like a real one does not apply the
span convention perfectly (`convention_drift`, the chance per entity, default
`CONVENTION_DRIFT`): where the LLM's span differs from the truth only by convention (a leading
"in"/"the", trailing punctuation, a list split or merged) the reviewer sometimes leaves it, and
each reviewer has a habit of their own (`HABITS`: annotator-1 takes in a leading article,
annotator-2 leaves out attached places and trailing details, annotator-3 takes in the
preposition) that shows on some entities. Relations follow the entities they were drawn to.

Public API:
    TruthRecord(example, errors=[], notes=[], shapes=[])
    TEXT_ERRORS                                   the errors that make a reviewer reject the text
    write_truth_record(handle, record)            one line, flushed
    load_truth_records(path) -> dict[str, TruthRecord]   keyed by text (the last record of a text wins)
    load_truth(path) -> dict[str, Example]               the true examples only, keyed by text
    CONVENTION_DRIFT, HABITS, habit_of(annotator) -> str
    review_example(record, llm, annotator, accuracy, convention_drift, rng) -> (decision, Example | None)
    drifted_example(truth, llm, annotator, convention_drift, rng) -> Example
"""

from __future__ import annotations

import hashlib
import itertools
import json
import random
import re
from pathlib import Path
from typing import TextIO

from pydantic import BaseModel, Field

from distill_ner.data.errors import DistillError
from distill_ner.data.example import Entity, Example, Relation

TEXT_ERRORS = ("factually_wrong", "unusable")


class TruthRecord(BaseModel):
    """The true annotation of one mock example and the errors injected into what was answered."""

    example: Example
    errors: list[str] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)
    shapes: list[str] = Field(default_factory=list)

    @property
    def rejected(self) -> bool:
        """The text itself is wrong or unusable: a careful reviewer rejects it."""
        return any(e in TEXT_ERRORS for e in self.errors)


def write_truth_record(handle: TextIO, record: TruthRecord) -> None:
    """Append one record to an open truth file (and flush it, so a reader sees it at once)."""
    line = record.example.model_dump(mode="json", exclude_none=True)
    extra = {k: v for k, v in (("notes", record.notes), ("shapes", record.shapes)) if v}
    handle.write(json.dumps({**line, "errors": record.errors, **extra}, ensure_ascii=False) + "\n")
    handle.flush()


def load_truth_records(path: str | Path) -> dict[str, TruthRecord]:
    """Truth records of a mock truth file, keyed by text (the last record of a text wins)."""
    path = Path(path)
    if not path.exists():
        raise DistillError(f"{path}: mock truth file not found (start the mock with --truth-file {path})")
    records: dict[str, TruthRecord] = {}
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                raw = json.loads(line)
                errors = raw.pop("errors", [])
                notes, shapes = raw.pop("notes", []), raw.pop("shapes", [])
                example = Example.model_validate(raw)
            except (ValueError, TypeError) as err:
                raise DistillError(f"{path}:{number}: not a truth record ({str(err).splitlines()[0]})") from None
            records[example.text] = TruthRecord(example=example, errors=errors, notes=notes, shapes=shapes)
    return records


def load_truth(path: str | Path) -> dict[str, Example]:
    """The true `Example` behind each text the mock wrote, keyed by text."""
    return {text: record.example for text, record in load_truth_records(path).items()}


# --- what a reviewer submits ----------------------------------------------------------------------
CONVENTION_DRIFT = 0.15
"""Default chance per entity that a reviewer keeps the LLM's convention variant, or else applies
their own habit (where one applies). 0: the reviewer submits exactly the truth. At 0.15 the
reviewed gold of `bench/mock_difficulty.py --n 1000` agrees with the truth at 0.949 strict span F1
(overlap 0.998), and a teacher on it scores 0.914 strict, 0.991 overlap: inside issue 14's
0.75-0.92, near its top."""

HABITS = {"annotator-1": "article", "annotator-2": "core", "annotator-3": "preposition"}
"""Each simulated reviewer's own way of drawing boundaries (other names get one by a hash):
`article` takes in a leading "the"/"a"/"an", `preposition` takes in the "in"/"on"/"by" (and article)
before a fact, `core` leaves out a fact's attached place or timing ("lakes" for "lakes of
Xochimilco") and a breeding clause's detail after a comma."""

_LEAD = re.compile(r"^(?:(?:in|on|by|at|of|to|from|across|the|a|an|its|and|or)\s+)+$", re.IGNORECASE)
_TRAIL = ("", ".", ",", ";", ":", ")")
_SEPARATOR = re.compile(r"^(?:,\s*|,?\s+and\s+|,?\s+or\s+)$")
_ARTICLE_BEFORE = re.compile(r"\b(?:the|a|an|The|A|An) $")
_PREPOSITION_BEFORE = re.compile(r"\b(?:in|on|by|across|from|at|In|On|By)(?: (?:the|a|an))? $")
_ATTACHED = re.compile(
    r" (?:of|in|across|along|near|below|above|at|on|off|around|close to|within|with|far from|fed by"
    r"|from|found|caught|gathered|dug|among) "
)
_FACT_LABELS = ("HABITAT", "FEEDING", "BREEDING")


def habit_of(annotator: str) -> str:
    """The boundary habit of a simulated reviewer (`HABITS`; a fixed one by name for others)."""
    if annotator in HABITS:
        return HABITS[annotator]
    kinds = sorted(set(HABITS.values()))
    return kinds[int(hashlib.sha1(annotator.encode()).hexdigest(), 16) % len(kinds)]


def _variant(text: str, truth: tuple[int, int], span: tuple[int, int]) -> bool:
    """`span` differs from `truth` only by convention: leading prepositions or articles, a trailing
    punctuation mark."""
    (ts, te), (s, e) = truth, span
    if (s, e) == (ts, te) or s > ts or e < te:
        return False
    return (s == ts or bool(_LEAD.match(text[s:ts]))) and text[te:e] in _TRAIL


def _habit_span(habit: str, text: str, start: int, end: int, label: str) -> tuple[int, int] | None:
    """Where a reviewer with `habit` draws this entity, or None when the habit does not apply."""
    before = text[:start]
    if habit == "article" and (m := _ARTICLE_BEFORE.search(before)):
        return m.start(), end
    if habit == "preposition" and label in _FACT_LABELS and (m := _PREPOSITION_BEFORE.search(before)):
        return m.start(), end
    if habit == "core" and label in _FACT_LABELS:
        inner = text[start:end]
        cut = inner.find(", ") if label == "BREEDING" else -1
        if cut < 0 and label != "BREEDING":
            found = list(_ATTACHED.finditer(inner))
            cut = found[0].start() if found else -1
        if cut > 0:
            return start, start + cut
    return None


def drifted_example(truth: Example, llm: Example | None, annotator: str, convention_drift: float, rng: random.Random) -> Example:
    """What a careful reviewer submits for `truth`, given the LLM's answer `llm`: the truth, except
    that per entity, with probability `convention_drift`, an LLM span that differs from it only by
    convention is kept (a merged list, a split fact, a leading "in the", a trailing comma), or else,
    with the same probability, the reviewer's habit (`habit_of`) draws its boundary. Relations
    follow their entities (both parts of a split fact, the merged span of a list)."""
    if convention_drift <= 0:
        return truth.model_copy(deep=True)
    text, ents = truth.text, sorted(truth.entities, key=lambda e: (e.start, e.end))
    order = {id(e): k for k, e in enumerate(truth.entities)}
    llm_spans = sorted({(e.start, e.end, e.label) for e in (llm.entities if llm else [])})
    habit = habit_of(annotator)
    spans: list[tuple[int, int, str]] = []
    to_new: dict[int, list[int]] = {}
    i = 0
    while i < len(ents):
        e = ents[i]
        old = order[id(e)]
        last_end = spans[-1][1] if spans else 0
        # a list the LLM merged into one span
        merged = [
            j for s, t, lab in llm_spans for j in range(i + 1, len(ents))
            if (s, lab) == (e.start, e.label) and t == ents[j].end
            and all(ents[k].label == e.label and _SEPARATOR.match(text[ents[k].end : ents[k + 1].start]) for k in range(i, j))
        ]
        if merged and rng.random() < convention_drift:
            j = merged[0]
            spans.append((e.start, ents[j].end, e.label))
            for k in range(i, j + 1):
                to_new[order[id(ents[k])]] = [len(spans) - 1]
            i = j + 1
            continue
        # a fact the LLM split at a comma or "and"
        parts = [x for x in llm_spans if e.start <= x[0] and x[1] <= e.end and x[2] == e.label and x[:2] != (e.start, e.end)]
        split = (
            len(parts) >= 2 and parts[0][0] == e.start and parts[-1][1] == e.end
            and all(_SEPARATOR.match(text[a[1] : b[0]]) for a, b in itertools.pairwise(parts))
        )
        if split and rng.random() < convention_drift:
            to_new[old] = list(range(len(spans), len(spans) + len(parts)))
            spans += parts
            i += 1
            continue
        span: tuple[int, int] = (e.start, e.end)
        variants = [x[:2] for x in llm_spans if x[2] == e.label and _variant(text, span, x[:2])]
        if variants and rng.random() < convention_drift:
            span = variants[0]
        elif rng.random() < convention_drift:
            span = _habit_span(habit, text, e.start, e.end, e.label) or span
        if span[0] < last_end or (i + 1 < len(ents) and span[1] > ents[i + 1].start):
            span = (e.start, e.end)
        spans.append((*span, e.label))
        to_new[old] = [len(spans) - 1]
        i += 1
    relations = {
        (h, t, r.label) for r in truth.relations for h in to_new[r.head] for t in to_new[r.tail] if h != t
    }
    drifted = truth.model_copy(update={
        "entities": [Entity(start=s, end=t, label=lab) for s, t, lab in spans],
        "relations": [Relation(head=h, tail=t, label=lab) for h, t, lab in sorted(relations)],
    })
    return Example.model_validate(drifted.model_dump()).sorted_entities()


def review_example(
    record: TruthRecord, llm: Example | None, annotator: str, accuracy: float, convention_drift: float, rng: random.Random,
    blind: bool = False,
) -> tuple[str, Example | None]:
    """What a simulated reviewer does with one LLM example whose truth is `record`: `("missed",
    llm)` with probability 1 - `accuracy` (the answer goes through as it is), `("rejected", None)`
    for a text the truth marks factually wrong or unusable, else `("reviewed", example)` with the
    truth as `drifted_example` lets this reviewer draw it. The one place the simulated annotator
    and the bench decide this.

    `blind` (a text sent without the LLM's answer, `llm` is None): there is nothing to wave
    through, so every entity is drawn the reviewer's way; a hurried reviewer (1 - `accuracy`)
    labels the text without checking its facts (`("labelled", example)` for a wrong text)."""
    if blind:
        hurried = rng.random() >= accuracy
        if record.rejected and not hurried:
            return "rejected", None
        return ("labelled" if hurried and record.rejected else "reviewed"), drifted_example(record.example, None, annotator, convention_drift, rng)
    if rng.random() >= accuracy:
        return "missed", llm
    if record.rejected:
        return "rejected", None
    return "reviewed", drifted_example(record.example, llm, annotator, convention_drift, rng)
