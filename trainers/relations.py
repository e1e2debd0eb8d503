"""Relation classification data: typed entity markers around each candidate pair, plus "no_relation".

For a head and a tail entity the text is rewritten with typed punctuation markers (Zhou & Chen,
2021), which need no new vocabulary, so a layer-truncated student shares the teacher's tokenizer:
`... @ * species * Amur leopard @ lives in the # ^ habitat ^ temperate forests # ...`.
The classifier reads the pieces of the opening `@` and `#`. Candidate pairs are the ordered
entity pairs whose labels some relation type allows (from the spec, or seen in training data);
every candidate without a gold relation is a `no_relation` example, so the model can say "none".
A pair whose marked span does not fit in `max_length` pieces is not classified (predicted
`no_relation`) and counted in `ReFeatures.skipped`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from data.example import Entity, Example
from trainers.ner import N_SPECIAL, content_positions, with_specials

NO_RELATION = "no_relation"
HEAD_MARK, TAIL_MARK = ("@", "*"), ("#", "^")


def allowed_pairs_from_spec(spec) -> list[tuple[str, str]]:
    """(head label, tail label) pairs that at least one relation type of a `TaskSpec` allows."""
    return sorted({(h, t) for r in spec.relations for h in r.head for t in r.tail})


def allowed_pairs_from_examples(examples: Iterable[Example]) -> list[tuple[str, str]]:
    """(head label, tail label) pairs seen in the examples' relations."""
    return sorted({(e.entities[r.head].label, e.entities[r.tail].label) for e in examples for r in e.relations})


def candidate_pairs(entities: Sequence[Entity], allowed: Iterable[tuple[str, str]]) -> list[tuple[int, int]]:
    """Ordered (head, tail) entity index pairs whose labels are allowed."""
    allowed = set(map(tuple, allowed))
    return [(i, j) for i, a in enumerate(entities) for j, b in enumerate(entities) if i != j and (a.label, b.label) in allowed]


def gold_pair_labels(example: Example) -> dict[tuple[int, int], str]:
    """(head, tail) -> relation label (the first one where a pair has several)."""
    out: dict[tuple[int, int], str] = {}
    for r in example.relations:
        out.setdefault((r.head, r.tail), r.label)
    return out


def mark_pair(text: str, head: Entity, tail: Entity) -> tuple[str, int, int, int]:
    """Text with typed markers around head and tail; char positions of the opening `@` and `#`
    and of the marker that closes the later of the two."""
    pieces, positions, cursor, out_len = [], {}, 0, 0
    for which, e in sorted((("head", head), ("tail", tail)), key=lambda x: x[1].start):
        opener, inner = HEAD_MARK if which == "head" else TAIL_MARK
        kind = e.label.lower().replace("_", " ")
        before = text[cursor : e.start]
        pieces.append(before)
        out_len += len(before)
        positions[which] = out_len
        chunk = f"{opener} {inner} {kind} {inner} {text[e.start : e.end]} {opener}"
        pieces.append(chunk)
        out_len += len(chunk)
        cursor = e.end
    pieces.append(text[cursor:])
    return "".join(pieces), positions["head"], positions["tail"], out_len - 1


@dataclass
class ReFeature:
    """One candidate pair: input ids with specials, positions of the two markers, label id."""

    example: int
    pair: tuple[int, int]
    input_ids: list[int]
    head_pos: int
    tail_pos: int
    label: int = 0


@dataclass
class ReFeatures:
    features: list[ReFeature] = field(default_factory=list)
    skipped: int = 0


def re_features(
    tokenizer,
    examples: Sequence[Example],
    allowed: Iterable[tuple[str, str]],
    relation_labels: Sequence[str],
    max_length: int,
    entities: Sequence[Sequence[Entity]] | None = None,
) -> ReFeatures:
    """A feature per candidate pair of each example (gold entities, or `entities` when given)."""
    allowed = list(allowed)
    index = {label: i for i, label in enumerate(relation_labels)}
    out = ReFeatures()
    size = max_length - N_SPECIAL
    for k, example in enumerate(examples):
        ents = list(entities[k]) if entities is not None else example.entities
        gold = gold_pair_labels(example) if entities is None else {}
        for i, j in candidate_pairs(ents, allowed):
            feature = _pair_feature(tokenizer, example.text, ents[i], ents[j], size)
            if feature is None:
                out.skipped += 1
                continue
            ids, hp, tp = feature
            out.features.append(ReFeature(k, (i, j), ids, hp, tp, index.get(gold.get((i, j), NO_RELATION), 0)))
    return out


def _pair_feature(tokenizer, text: str, head: Entity, tail: Entity, size: int) -> tuple[list[int], int, int] | None:
    marked, hc, tc, close_c = mark_pair(text, head, tail)
    enc = tokenizer(marked, add_special_tokens=False, return_offsets_mapping=True, truncation=False, verbose=False)
    ids, offsets = list(enc["input_ids"]), enc["offset_mapping"]
    hp, tp, close = (next(i for i, (s, _) in enumerate(offsets) if s >= c) for c in (hc, tc, close_c))
    lo = min(hp, tp)
    if close - lo + 1 > size:
        return None
    start = max(0, min(lo, (lo + close) // 2 - size // 2))
    start = min(start, max(0, len(ids) - size))
    window = ids[start : start + size]
    positions = content_positions(tokenizer, len(window))
    return with_specials(tokenizer, window), positions[hp - start], positions[tp - start]
