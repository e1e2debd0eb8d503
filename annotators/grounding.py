"""Turn an LLM answer (mentions as text) into an `Example` with character offsets.

Every occurrence of a mention is an entity; overlapping candidates are resolved by keeping the
longest; a relation links the closest pair of occurrences of its head and tail. Anything that
cannot be grounded raises `GroundingError` with a short reason code (counted by the caller).
`GroundingRules` holds the rules a user may tune (entities required, entity size, label case,
copies of the prompt's few-shot texts); repairs are counted in a `Counter` the caller passes.
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from distill_ner.data.example import Entity, Example, Relation, Source
from distill_ner.data.spec import TaskSpec

_STRIP = " \t\r\n.,;:!?\"`“”()[]{}"  # not apostrophes: "'alalā", "Rüppell's"


class GroundingError(ValueError):
    """An LLM item that cannot become an `Example`; `reason` is a short code, e.g. `mention_not_found`."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class GroundingRules(BaseModel):
    """Rules beyond "every mention occurs in the text", each counted under its own reason."""

    model_config = ConfigDict(extra="forbid")

    min_entities: int = Field(default=1, ge=0, description="fewer entities: rejected as no_entities")
    max_entity_share: float = Field(default=0.9, gt=0, le=1, description="an entity over this share of the text: rejected as entity_too_long")
    max_entity_words: int = Field(default=32, ge=1, description="an entity of more words: rejected as entity_too_long (breeding facts run to 30 words)")
    label_case: Literal["fix", "reject"] = Field(default="fix", description="a label right but for its case: fixed (counted) or rejected")
    few_shot_similarity: float = Field(default=0.85, gt=0, le=1, description="a text this similar to a few-shot text: rejected as copied_few_shot")
    bad_mentions: Literal["reject", "drop"] = Field(
        default="reject",
        description="a mention or relation that cannot be grounded: the whole answer rejected (text the LLM wrote), or that one dropped and counted as `dropped_<reason>` (text the user gave)",
    )


@dataclass(frozen=True)
class _Span:
    start: int
    end: int
    label: str
    order: int  # position of the mention in the LLM's list (ties: earlier wins)


def _is_word(ch: str) -> bool:
    return ch.isalnum() or ch == "_"


def _at_boundary(text: str, start: int, end: int) -> bool:
    """A match must not cut a word: no letter/digit joins it on either side."""
    left_ok = start == 0 or not (_is_word(text[start - 1]) and _is_word(text[start]))
    right_ok = end == len(text) or not (_is_word(text[end - 1]) and _is_word(text[end]))
    return left_ok and right_ok


def _find_all(text: str, needle: str) -> list[tuple[int, int]]:
    hits, start = [], text.find(needle)
    while start >= 0:
        hits.append((start, start + len(needle)))
        start = text.find(needle, start + 1)
    return hits


def find_mention(text: str, mention: str) -> list[tuple[int, int]]:
    """All (start, end) occurrences of `mention` in `text` that respect word boundaries.

    Tries the mention stripped of surrounding punctuation (an entity does not start or end
    with a bracket or full stop), in both Unicode normal forms, then as written, then
    case-insensitively with any run of whitespace between words.
    """
    stripped = mention.strip(_STRIP)
    variants = [stripped, unicodedata.normalize("NFC", stripped), unicodedata.normalize("NFD", stripped), mention]
    for variant in dict.fromkeys(v for v in variants if v):
        hits = [h for h in _find_all(text, variant) if _at_boundary(text, *h)]
        if hits:
            return hits
    words = unicodedata.normalize("NFC", stripped).split()
    if not words:
        return []
    pattern = re.compile(r"\s+".join(re.escape(w) for w in words), re.IGNORECASE)
    return [(m.start(), m.end()) for m in pattern.finditer(text) if _at_boundary(text, m.start(), m.end())]


def _resolve_overlaps(spans: list[_Span]) -> list[_Span]:
    """Keep the longest of overlapping spans (then the earlier-listed), in text order."""
    kept: list[_Span] = []
    for span in sorted(spans, key=lambda s: (-(s.end - s.start), s.order, s.start)):
        if all(span.end <= k.start or span.start >= k.end for k in kept):
            kept.append(span)
    return sorted(kept, key=lambda s: s.start)


def copies_few_shot(text: str, spec: TaskSpec, threshold: float) -> str | None:
    """The spec's few-shot text that `text` copies (similarity >= `threshold`, case and spacing
    ignored), or None."""
    norm = " ".join(text.casefold().split())
    for shot in spec.few_shot:
        other = " ".join(shot.text.casefold().split())
        matcher = difflib.SequenceMatcher(None, norm, other, autojunk=False)
        if matcher.real_quick_ratio() >= threshold and matcher.quick_ratio() >= threshold and matcher.ratio() >= threshold:
            return shot.text
    return None


def _label(value: str, known: list[str], rules: GroundingRules, repairs: Counter[str] | None) -> str | None:
    """`value` if it is a known label; the known label it matches but for case when the rules fix
    case (counted as a `label_case` repair); else None."""
    if value in known:
        return value
    if rules.label_case == "fix":
        match = next((k for k in known if k.casefold() == value.strip().casefold()), None)
        if match is not None:
            if repairs is not None:
                repairs["label_case"] += 1
            return match
    return None


def ground(
    item: dict[str, Any],
    spec: TaskSpec,
    source: Source | None = None,
    rules: GroundingRules | None = None,
    repairs: Counter[str] | None = None,
    written: bool = True,
) -> Example:
    """Ground one LLM item `{"text", "entities": [{"text", "label"}], "relations": [{"head", "tail", "label"}]}`.

    Raises `GroundingError` for: `invalid_item`, `empty_text`, `copied_few_shot`,
    `unknown_label`, `conflicting_labels`, `mention_not_found`, `entity_too_long`,
    `no_entities`, `unknown_relation`, `relation_mention_missing`, `relation_not_allowed`.
    Repairs made under `rules` (a label's case) are added to `repairs`, and so are the mentions
    and relations dropped under `rules.bad_mentions == "drop"` (as `dropped_<reason>`). `written`:
    the LLM wrote the text (checked for copies of the few-shot texts); False for a given text.
    """
    rules = rules or GroundingRules()
    if not isinstance(item, dict):
        raise GroundingError("invalid_item", f"expected an object, got {type(item).__name__}")
    text = item.get("text")
    if not isinstance(text, str):
        raise GroundingError("invalid_item", "the item has no string 'text'")
    if not text.strip():
        raise GroundingError("empty_text", "the text is empty")
    if written and spec.few_shot:
        copied = copies_few_shot(text, spec, rules.few_shot_similarity)
        if copied is not None:
            raise GroundingError("copied_few_shot", f"the text copies the prompt's example {copied[:80]!r}")
    mentions = item.get("entities") or []
    relations = item.get("relations") or []
    if not isinstance(mentions, list) or not isinstance(relations, list):
        raise GroundingError("invalid_item", "'entities' and 'relations' must be lists")

    by_text: dict[str, str] = {}
    spans: list[_Span] = []
    for order, mention in enumerate(mentions):
        try:
            spans += _mention_spans(text, mention, order, spec, rules, repairs, by_text)
        except GroundingError as err:
            if rules.bad_mentions == "reject" or err.reason == "invalid_item":
                raise
            _count(repairs, f"dropped_{err.reason}")

    kept = []
    for span in _resolve_overlaps(spans):
        try:
            _check_size(text, span, rules)
            kept.append(span)
        except GroundingError as err:
            if rules.bad_mentions == "reject":
                raise
            _count(repairs, f"dropped_{err.reason}")
    if len(kept) < rules.min_entities:
        raise GroundingError("no_entities", f"{len(kept)} entities (at least {rules.min_entities} required)")
    entities = [Entity(start=s.start, end=s.end, label=s.label) for s in kept]
    example_relations = _ground_relations(text, relations, kept, spec, rules, repairs)
    return Example(text=text, entities=entities, relations=example_relations, source=source or Source(origin="llm"))


def _count(repairs: Counter[str] | None, reason: str) -> None:
    if repairs is not None:
        repairs[reason] += 1


def _mention_spans(
    text: str, mention: Any, order: int, spec: TaskSpec, rules: GroundingRules, repairs: Counter[str] | None, by_text: dict[str, str]
) -> list[_Span]:
    """Every occurrence of one listed mention, as spans (none for a mention listed twice)."""
    if not isinstance(mention, dict) or not isinstance(mention.get("text"), str) or not isinstance(mention.get("label"), str):
        raise GroundingError("invalid_item", f"entity {order} needs string 'text' and 'label'")
    surface, label = mention["text"], _label(mention["label"], spec.entity_labels, rules, repairs)
    if label is None:
        raise GroundingError("unknown_label", f"entity {surface!r} has label {mention['label']!r} (known: {', '.join(spec.entity_labels)})")
    key = surface.strip(_STRIP).casefold()
    if key in by_text:
        if by_text[key] != label:
            raise GroundingError("conflicting_labels", f"{surface!r} is labelled both {by_text[key]} and {label}")
        return []  # the same mention listed twice: its occurrences are already in
    hits = find_mention(text, surface)
    if not hits:
        raise GroundingError("mention_not_found", f"{surface!r} ({label}) does not occur in the text")
    by_text[key] = label
    return [_Span(s, e, label, order) for s, e in hits]


def _check_size(text: str, span: _Span, rules: GroundingRules) -> None:
    """An entity is a name or a phrase, not the whole text or a sentence of it."""
    surface = text[span.start : span.end]
    words = len(surface.split())
    share = len(surface.strip()) / max(1, len(text.strip()))
    if words > 1 and (share > rules.max_entity_share or words > rules.max_entity_words):
        raise GroundingError(
            "entity_too_long", f"{span.label} {surface[:80]!r} is {words} words, {share:.0%} of the text (at most {rules.max_entity_words} words, {rules.max_entity_share:.0%})"
        )


def _ground_relations(
    text: str, relations: list[Any], kept: list[_Span], spec: TaskSpec, rules: GroundingRules, repairs: Counter[str] | None
) -> list[Relation]:
    out: dict[tuple[int, int, str], Relation] = {}
    for i, rel in enumerate(relations):
        try:
            h, t, label = _ground_relation(text, i, rel, kept, spec, rules, repairs)
        except GroundingError as err:
            if rules.bad_mentions == "reject" or err.reason == "invalid_item":
                raise
            _count(repairs, f"dropped_{err.reason}")
            continue
        out[(h, t, label)] = Relation(head=h, tail=t, label=label)
    return list(out.values())


def _ground_relation(
    text: str, i: int, rel: Any, kept: list[_Span], spec: TaskSpec, rules: GroundingRules, repairs: Counter[str] | None
) -> tuple[int, int, str]:
    """(head index, tail index, label) of one listed relation: the closest allowed pair of occurrences."""
    if not isinstance(rel, dict) or not all(isinstance(rel.get(k), str) for k in ("head", "tail", "label")):
        raise GroundingError("invalid_item", f"relation {i} needs string 'head', 'tail' and 'label'")
    label = _label(rel["label"], spec.relation_labels, rules, repairs)
    if label is None:
        raise GroundingError("unknown_relation", f"relation label {rel['label']!r} (known: {', '.join(spec.relation_labels)})")
    heads = _occurrences(text, rel["head"], kept)
    tails = _occurrences(text, rel["tail"], kept)
    if not heads or not tails:
        missing = rel["head"] if not heads else rel["tail"]
        raise GroundingError("relation_mention_missing", f"{label}: {missing!r} is not one of the entities")
    pairs = [(h, t) for h in heads for t in tails if h != t and spec.allows(label, kept[h].label, kept[t].label)]
    if not pairs:
        raise GroundingError(
            "relation_not_allowed",
            f"{label} from {rel['head']!r} ({kept[heads[0]].label}) to {rel['tail']!r} ({kept[tails[0]].label})",
        )
    h, t = min(pairs, key=lambda p: (abs(kept[p[0]].start - kept[p[1]].start), p))
    return h, t, label


def _occurrences(text: str, mention: str, kept: list[_Span]) -> list[int]:
    """Indices of kept entities whose span is an occurrence of `mention`."""
    hits = set(find_mention(text, mention))
    return [i for i, s in enumerate(kept) if (s.start, s.end) in hits]
