"""The one record every stage reads and writes: a text with char-offset entities and relations."""

from __future__ import annotations

import hashlib
from datetime import datetime
from collections.abc import Iterable
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, model_serializer, model_validator

from distill_ner.data.errors import DistillError

ReviewStatus = Literal["pending", "accepted", "corrected", "rejected", "silver"]  # silver: left LLM-labelled by the review budget, never sent


def make_id(text: str, origin: str = "") -> str:
    """Stable id: a hash of the text and where it came from (same input -> same id, every run)."""
    return hashlib.sha1(f"{origin}\x00{text}".encode()).hexdigest()[:16]


class Entity(BaseModel):
    """A labelled span; `start`/`end` are character offsets into the example's text."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    start: int = Field(ge=0)
    end: int
    label: str
    confidence: float | None = None

    @model_validator(mode="after")
    def _non_empty(self) -> Entity:
        if self.end <= self.start:
            raise ValueError(f"entity [{self.start}, {self.end}) is empty or reversed")
        return self


class Relation(BaseModel):
    """A typed, directed link between two entities, by their index in `Example.entities`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    head: int = Field(ge=0)
    tail: int = Field(ge=0)
    label: str
    confidence: float | None = None


class Source(BaseModel):
    """Where an example came from (LLM, prompt, topic, sample, or the user's file, document and
    offset) and how sure the LLM was."""

    model_config = ConfigDict(extra="forbid")

    model: str | None = None
    prompt_id: str | None = None
    topic: str | None = None
    sample: int | None = None
    confidence: float | None = None
    origin: str | None = None  # "llm" (text the LLM wrote), "corpus" (the user's text), "conll:train.conll", ...
    file: str | None = None  # origin "corpus": the input file
    document: str | None = None  # origin "corpus": the document's id in that file
    offset: int | None = None  # origin "corpus": where the text starts in the document (entity start + offset)


class DiffEntity(BaseModel):
    """An entity a reviewer added or removed: its span in the text, the text itself and its label."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    start: int
    end: int
    text: str
    label: str


class DiffRelation(BaseModel):
    """A relation a reviewer added or removed: the texts of its head and tail entities, and its label."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    head: str
    tail: str
    label: str


class ReviewDiff(BaseModel):
    """LLM vs human (`annotators.label_studio.review_diff`): what a reviewer added and removed,
    or, for a rejected example, only the reject choice (`reason`)."""

    model_config = ConfigDict(extra="forbid")

    entities_added: list[DiffEntity] = Field(default_factory=list)
    entities_removed: list[DiffEntity] = Field(default_factory=list)
    relations_added: list[DiffRelation] = Field(default_factory=list)
    relations_removed: list[DiffRelation] = Field(default_factory=list)
    reason: str | None = None  # rejected: the reject choice

    @property
    def changed(self) -> bool:
        """True when the reviewer added or removed any entity or relation."""
        return bool(self.entities_added or self.entities_removed or self.relations_added or self.relations_removed)


class Review(BaseModel):
    """What a human (or the simulated annotator) said about an example."""

    model_config = ConfigDict(extra="forbid")

    status: ReviewStatus = "pending"
    annotator: str | None = None
    time: datetime | None = None
    diff: ReviewDiff | None = None  # LLM vs human: added/removed entities and relations (a dict validates into it)
    task_id: int | None = None  # Label Studio task
    blind: bool = False  # labelled from scratch, without the LLM's pre-annotation (a blind test text: `split.blind_test`)

    @model_serializer(mode="wrap")
    def _without_default_blind(self, handler: SerializerFunctionWrapHandler) -> dict:
        out = handler(self)
        if not out.get("blind", True):  # the usual case: files and hashes stay as they were
            del out["blind"]
        return out


class Example(BaseModel):
    """A text with entities (char offsets), relations (entity indices), provenance and review."""

    model_config = ConfigDict(extra="forbid")

    id: str = ""
    text: str
    entities: list[Entity] = Field(default_factory=list)
    relations: list[Relation] = Field(default_factory=list)
    source: Source = Field(default_factory=Source)
    review: Review = Field(default_factory=Review)
    words: list[tuple[int, int]] | None = None  # a pre-tokenized file's tokens (char offsets); None: `data.words.tokenize(text)`

    @model_serializer(mode="wrap")
    def _without_default_words(self, handler: SerializerFunctionWrapHandler) -> dict:
        out = handler(self)
        if out.get("words", ()) is None:  # the usual case: files and hashes stay as they were
            del out["words"]
        return out

    @model_validator(mode="after")
    def _check(self) -> Example:
        if not self.id:
            self.id = make_id(self.text, self.source.origin or "")
        n = len(self.text)
        previous = 0
        for s, t in self.words or ():
            if not previous <= s < t <= n:
                raise ValueError(f"example {self.id}: word [{s}, {t}) is empty, out of order or past the end of the text ({n} chars)")
            previous = t
        ordered = sorted(self.entities, key=lambda e: (e.start, e.end))
        for e in ordered:
            if e.end > n:
                raise ValueError(f"example {self.id}: entity [{e.start}, {e.end}) is past the end of the text ({n} chars)")
        for a, b in zip(ordered, ordered[1:]):
            if b.start < a.end:
                raise ValueError(
                    f"example {self.id}: entities {self.text[a.start:a.end]!r} [{a.start}, {a.end}) and "
                    f"{self.text[b.start:b.end]!r} [{b.start}, {b.end}) overlap"
                )
        for r in self.relations:
            if r.head >= len(self.entities) or r.tail >= len(self.entities):
                raise ValueError(f"example {self.id}: relation {r.label} points to a missing entity ({r.head} -> {r.tail})")
            if r.head == r.tail:
                raise ValueError(f"example {self.id}: relation {r.label} links an entity to itself")
        return self

    def span(self, entity: Entity | int) -> str:
        """The text of an entity (or of the entity at that index)."""
        e = self.entities[entity] if isinstance(entity, int) else entity
        return self.text[e.start : e.end]

    def sorted_entities(self) -> Example:
        """A copy with entities in text order (relations re-indexed to match)."""
        order = sorted(range(len(self.entities)), key=lambda i: (self.entities[i].start, self.entities[i].end))
        new_index = {old: new for new, old in enumerate(order)}
        return self.model_copy(
            update={
                "entities": [self.entities[i] for i in order],
                "relations": [r.model_copy(update={"head": new_index[r.head], "tail": new_index[r.tail]}) for r in self.relations],
            }
        )

    def labels(self) -> set[str]:
        """Entity and relation labels used in this example."""
        return {e.label for e in self.entities} | {r.label for r in self.relations}


def example_confidence(example: Example) -> float | None:
    """The LLM's confidence in an example: its own, else the mean of its entities' (the share of
    the LLM's samples that agree); None when it gave one sample."""
    if example.source.confidence is not None:
        return example.source.confidence
    scores = [e.confidence for e in example.entities if e.confidence is not None]
    return sum(scores) / len(scores) if scores else None


def usable(examples: Iterable[Example]) -> list[Example]:
    """The examples a reviewer did not reject: what training, splitting and scoring use."""
    return [e for e in examples if e.review.status != "rejected"]


def check_gold(name: str, examples: Iterable[Example]) -> None:
    """A dev or test split holds only human verdicts: one line naming a silver example otherwise."""
    silver = [e for e in examples if e.review.status == "silver"]
    if silver:
        raise DistillError(
            f"the {name} split holds {len(silver)} silver example(s) (e.g. {silver[0].id}: LLM labels no human reviewed); "
            "dev and test come only from reviewed examples"
        )


def llm_entities(example: Example) -> list[Entity]:
    """The LLM's own entities for an example: the verified ones, with the human's changes undone.

    `review.diff` (written by `annotators.label_studio.review_diff` when a reviewer corrected
    the example) lists `entities_added` and `entities_removed`; without a diff the example's
    entities are the LLM's (accepted as they were, or data brought in from elsewhere).
    """
    diff = example.review.diff or ReviewDiff()
    added = {_key(x) for x in diff.entities_added}
    removed = [Entity(start=x.start, end=x.end, label=x.label) for x in diff.entities_removed]
    return [e for e in example.entities if _key(e) not in added] + removed


def _key(e: Entity | DiffEntity) -> tuple[int, int, str]:
    return (e.start, e.end, e.label)
