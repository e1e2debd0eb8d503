"""Relation candidates on the NER encoder's word pieces, plus "no_relation".

Relations are classified from the same forward pass as the entities (one encoder pass per
sentence for both tasks): for an ordered (head, tail) entity pair the relation head reads the
max-pooled word pieces of the head span, of the tail span and of the context between them, and
embeddings of the two entity labels (the span-pair classifier of SpERT, Eberts & Ulges 2020).
One forward per sentence, not one per pair as with entity-marker inputs, is what makes the
student fast on CPU.

Candidate pairs are the ordered entity pairs whose labels some relation type allows (from the
spec, or seen in training data); every candidate without a gold relation is a `no_relation`
example, so the model can say "none". A pair is read in the first window that holds both
entities; a pair that no window holds (entities farther apart than `max_length` pieces) is not
classified (predicted `no_relation`) and counted in `Pairs.skipped`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from distill_ner.data.example import Entity, Example
from distill_ner.trainers.ner import N_SPECIAL, Encoded, NerFeature

NO_RELATION = "no_relation"


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


def entity_pieces(offsets: Sequence[tuple[int, int]], entity: Entity) -> tuple[int, int] | None:
    """[first, last + 1) of the word pieces that overlap the entity's characters (None: none do)."""
    inside = [i for i, (s, t) in enumerate(offsets) if t > s and s < entity.end and t > entity.start]
    return (inside[0], inside[-1] + 1) if inside else None


@dataclass
class Pair:
    """One candidate pair, located in one NER window: spans are [start, end) positions in the
    window's input ids (special tokens included)."""

    feature: int  # index of the window (NerFeature) that holds both entities
    example: int
    pair: tuple[int, int]  # (head, tail) entity indices in the example
    head: tuple[int, int]
    tail: tuple[int, int]
    labels: tuple[int, int]  # entity label ids of head and tail
    label: int = 0  # relation label id (0 = no_relation)


@dataclass
class Pairs:
    pairs: list[Pair] = field(default_factory=list)
    skipped: int = 0

    def by_feature(self) -> dict[int, list[int]]:
        """Window index -> indices of its pairs."""
        out: dict[int, list[int]] = {}
        for k, p in enumerate(self.pairs):
            out.setdefault(p.feature, []).append(k)
        return out


def relation_pairs(
    features: Sequence[NerFeature],
    encoded: Sequence[Encoded],
    examples: Sequence[Example],
    entity_labels: Sequence[str],
    allowed: Iterable[tuple[str, str]],
    relation_labels: Sequence[str],
    entities: Sequence[Sequence[Entity]] | None = None,
) -> Pairs:
    """Candidate pairs of each example (gold entities and labels, or `entities` unlabelled)."""
    allowed = list(allowed)
    label_id = {label: i for i, label in enumerate(entity_labels)}
    relation_id = {label: i for i, label in enumerate(relation_labels)}
    windows: dict[int, list[int]] = {}
    for k, f in enumerate(features):
        windows.setdefault(f.example, []).append(k)
    out = Pairs()
    for x, example in enumerate(examples):
        ents = list(entities[x]) if entities is not None else example.entities
        gold = gold_pair_labels(example) if entities is None else {}
        spans = [entity_pieces(encoded[x].offsets, e) for e in ents]
        for i, j in candidate_pairs(ents, allowed):
            found = _window_of(features, windows.get(x, []), spans[i], spans[j])
            if found is None:
                out.skipped += 1
                continue
            k, shift = found
            out.pairs.append(
                Pair(
                    feature=k,
                    example=x,
                    pair=(i, j),
                    head=(spans[i][0] + shift, spans[i][1] + shift),
                    tail=(spans[j][0] + shift, spans[j][1] + shift),
                    labels=(label_id[ents[i].label], label_id[ents[j].label]),
                    label=relation_id.get(gold.get((i, j), NO_RELATION), 0),
                )
            )
    return out


def _window_of(features: Sequence[NerFeature], window_ids: list[int], a: tuple[int, int] | None, b: tuple[int, int] | None) -> tuple[int, int] | None:
    """(window index, piece -> position shift) of the first window holding both spans."""
    if a is None or b is None:
        return None
    lo, hi = min(a[0], b[0]), max(a[1], b[1])
    for k in window_ids:
        f = features[k]
        if f.first_token <= lo and hi <= f.first_token + len(f.input_ids) - N_SPECIAL:
            return k, 1 - f.first_token  # content pieces start after [CLS]
    return None
