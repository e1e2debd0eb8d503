"""A gazetteer: known phrases found in any text, with relations to the nearest head mention.

The mock LLM answers the `annotate` prompt for texts it did not write with one of these: built
from its fact table (`Gazetteer.from_table`: species common and scientific names, aliases and
predators as SPECIES; ecotype and species habitat, food and breeding base phrases as HABITAT,
FEEDING, BREEDING), or in replay mode from the gold's own entity surfaces
(`Gazetteer.from_examples`).

Matching is case-aware: a phrase matches as written, with its first letter capitalized (a
sentence start), and a name also in title case ("Amur Leopard"); "Lake Titicaca" never matches
"lake titicaca" (gold surfaces may also lose a sentence-initial capital: "Aspirin", "aspirin"). Matches respect word boundaries; of overlapping matches the longest wins (then
the earlier). A match may grow by the phrase parts it was listed with (`before`: modifiers such
as "seasonally flooded"; `after`: attachments such as "below 1,500 metres", a timing or a
detail of a breeding clause; `places`: " of/in/across" + a capitalized place), and two
`join`-label matches joined by " and " become one ("nests in tree cavities and lays two eggs").
A tail entity (`relate`: tail label -> (head label, relation label)) is related to the nearest
head mention in the same sentence (the fewest characters between them; a tie goes to the one before).

Public API:
    Gazetteer(phrases, relate=None, before=None, after=None, places=(), join=(), title=(), lower_first=False)
    Gazetteer.from_table(table) -> Gazetteer
    Gazetteer.from_examples(examples) -> Gazetteer
    Gazetteer.annotate(text, ent_labels=None, rel_labels=None) -> Example
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping

from distill_ner.annotators.mock_world import FactTable, gerund
from distill_ner.data.example import Entity, Example, Relation, Source
from distill_ner.data.words import tokenize

_SENTENCE_END = re.compile(r"[.!?;]\s+|\n")
_PLACE = re.compile(r" (?:of|in|across|off|on) (?:the )?[A-Z][\w'-]*(?: (?:[A-Z][\w'-]*|of|de|del|la))*")
_PLURAL_VERBS = {"is": "are", "has": "have", "does": "do"}


def _word(ch: str) -> bool:
    return ch.isalnum() or ch == "_"


def _ends_word(text: str, end: int) -> bool:
    return end == len(text) or not (_word(text[end - 1]) and _word(text[end]))


def _variants(phrase: str, title: bool, lower_first: bool) -> list[str]:
    """How a phrase may be written: as is, sentence-initial, (names) in title case, and (with
    `lower_first`, for surfaces seen at a sentence start) "Aspirin" as "aspirin"."""
    out = [phrase, phrase[:1].upper() + phrase[1:]]
    if title:
        out.append(" ".join(w[:1].upper() + w[1:] for w in phrase.split(" ")))
    first = phrase.split(" ")[0]
    if lower_first and len(first) > 1 and first[0].isupper() and first[1:].islower():
        out.append(phrase[:1].lower() + phrase[1:])
    return list(dict.fromkeys(out))


def _strip_article(phrase: str) -> str:
    for article in ("the ", "a ", "an "):
        if phrase.startswith(article):
            return phrase[len(article) :]
    return phrase


def _plural(clause: str) -> str:
    """ "lays eggs" -> "lay eggs" (a breeding clause after a plural subject)."""
    first, _, rest = clause.partition(" ")
    if first in _PLURAL_VERBS:
        verb = _PLURAL_VERBS[first]
    elif first.endswith("ies"):
        verb = first[:-3] + "y"
    elif first.endswith(("ches", "shes", "sses", "xes")):
        verb = first[:-2]
    elif first.endswith("s") and not first.endswith("ss"):
        verb = first[:-1]
    else:
        verb = first
    return f"{verb} {rest}".strip()


class Gazetteer:
    """Phrases (surface -> label) and how to relate what it finds (tail label -> (head label, relation))."""

    def __init__(
        self,
        phrases: Mapping[str, str],
        relate: Mapping[str, tuple[str, str]] | None = None,
        before: Mapping[str, Iterable[str]] | None = None,
        after: Mapping[str, Iterable[str]] | None = None,
        places: Iterable[str] = (),
        join: Iterable[str] = (),
        title: Iterable[str] = (),
        lower_first: bool = False,
    ) -> None:
        self.relate = dict(relate or {})
        self.before = {label: sorted(set(items), key=len, reverse=True) for label, items in (before or {}).items()}
        self.after = {label: sorted(set(items), key=len, reverse=True) for label, items in (after or {}).items()}
        self.places, self.join, title = set(places), set(join), set(title)
        self._by_first: dict[str, list[tuple[str, str]]] = defaultdict(list)
        seen: set[str] = set()
        for phrase, label in phrases.items():
            phrase = phrase.strip()
            if len(phrase) < 2 or not any(_word(c) for c in phrase):
                continue
            for variant in _variants(phrase, label in title, lower_first):
                tokens = tokenize(variant)
                if variant in seen or not tokens:
                    continue
                seen.add(variant)
                self._by_first[variant[tokens[0][0] : tokens[0][1]].casefold()].append((variant, label))
        for items in self._by_first.values():
            items.sort(key=lambda item: -len(item[0]))

    def __len__(self) -> int:
        return sum(len(items) for items in self._by_first.values())

    @property
    def labels(self) -> set[str]:
        return {label for items in self._by_first.values() for _, label in items}

    @classmethod
    def from_table(cls, table: FactTable) -> Gazetteer:
        """The mock's fact table as a gazetteer of the species world (labels SPECIES, HABITAT,
        FEEDING, BREEDING; relations live_in, feed_on, breed_by)."""
        phrases: dict[str, str] = {}
        for sp in table.species:
            for name in (sp.name, *sp.aliases):
                phrases.setdefault(name, "SPECIES")
                phrases.setdefault(name + ("es" if name.endswith(("s", "x", "ch", "sh")) else "s"), "SPECIES")
            phrases.setdefault(sp.sci, "SPECIES")
        for name in table.predators:
            phrases.setdefault(name, "SPECIES")
        kinds = (("habitat", "HABITAT"), ("food", "FEEDING"), ("breeding", "BREEDING"))
        for kind, label in kinds:
            pool = [p for eco in table.ecotypes.values() for p in eco.get(kind, [])] + [p for sp in table.species for p in getattr(sp, kind)]
            for phrase in pool:
                if label == "BREEDING":
                    for form in (phrase, gerund(phrase), _plural(phrase)):
                        phrases.setdefault(form, label)
                else:
                    phrases.setdefault(_strip_article(phrase), label)
        regions = [r for sp in table.species for r in table.regions(sp)]
        places = [p for items in table.habitat_places.values() for p in items]
        return cls(
            phrases,
            relate={"HABITAT": ("SPECIES", "live_in"), "FEEDING": ("SPECIES", "feed_on"), "BREEDING": ("SPECIES", "breed_by")},
            before={
                "HABITAT": [m for items in table.habitat_modifiers.values() for m in items],
                "FEEDING": [m for items in table.food_modifiers.values() for m in items],
            },
            after={
                "HABITAT": places + [f"{p} {r}" for r in regions for p in ("of", "in", "across")],
                "FEEDING": [a for items in table.food_attachments.values() for a in items],
                "BREEDING": table.breeding_timing + table.breeding_details + [", " + d for d in table.breeding_details],
            },
            places=["HABITAT"],
            join=["BREEDING"],
            title=["SPECIES"],
        )

    @classmethod
    def from_examples(cls, examples: Iterable[Example]) -> Gazetteer:
        """A gazetteer of the entity surfaces of annotated examples (each surface with its
        commonest label), relating each tail label to its commonest head label and relation."""
        labels: dict[str, Counter] = defaultdict(Counter)
        pairs: dict[str, Counter] = defaultdict(Counter)
        for ex in examples:
            for e in ex.entities:
                labels[ex.span(e)][e.label] += 1
            for r in ex.relations:
                pairs[ex.entities[r.tail].label][(ex.entities[r.head].label, r.label)] += 1
        phrases = {surface: counts.most_common(1)[0][0] for surface, counts in labels.items()}
        relate = {tail: counts.most_common(1)[0][0] for tail, counts in pairs.items()}
        return cls(phrases, relate=relate, lower_first=True)

    # --- matching ---------------------------------------------------------------------
    def _matches(self, text: str, labels: set[str] | None) -> list[tuple[int, int, str]]:
        found = []
        for start, end in tokenize(text):
            for variant, label in self._by_first.get(text[start:end].casefold(), ()):
                if (labels is None or label in labels) and text.startswith(variant, start) and _ends_word(text, start + len(variant)):
                    found.append((start, start + len(variant), label))
        kept: list[tuple[int, int, str]] = []
        for s, e, label in sorted(found, key=lambda m: (m[0] - m[1], m[0])):
            if all(e <= ks or s >= ke for ks, ke, _ in kept):
                kept.append((s, e, label))
        return sorted(kept)

    def _grow(self, text: str, spans: list[tuple[int, int, str]]) -> list[tuple[int, int, str]]:
        """Spans grown by their modifiers, attachments and places (never into a neighbour), and
        `join` spans joined by " and "."""
        out: list[tuple[int, int, str]] = []
        for k, (s, e, label) in enumerate(spans):
            floor = out[-1][1] if out else 0
            ceiling = spans[k + 1][0] if k + 1 < len(spans) else len(text)
            for modifier in self.before.get(label, ()):
                at = s - len(modifier) - 1
                if at >= floor and text.startswith(modifier + " ", at) and (at == 0 or not _word(text[at - 1])):
                    s = at
                    break
            for _ in range(3):
                grown = e
                for tail in self.after.get(label, ()):
                    piece = tail if tail.startswith(", ") else " " + tail
                    if text.startswith(piece, e) and e + len(piece) <= ceiling and _ends_word(text, e + len(piece)):
                        grown = e + len(piece)
                        break
                if grown == e and label in self.places and (m := _PLACE.match(text, e)) and m.end() <= ceiling:
                    grown = m.end()
                if grown == e:
                    break
                e = grown
            if out and label in self.join and out[-1][2] == label and text[out[-1][1] : s] == " and ":
                s = out.pop()[0]
            out.append((s, e, label))
        return out

    def annotate(self, text: str, ent_labels: Iterable[str] | None = None, rel_labels: Iterable[str] | None = None) -> Example:
        """The phrases found in `text` (only of `ent_labels`, when given) and their relations
        (only of `rel_labels`, when given), as an `Example` with origin "gazetteer"."""
        labels = None if ent_labels is None else set(ent_labels)
        allowed = None if rel_labels is None else set(rel_labels)
        spans = self._grow(text, self._matches(text, labels))
        ends = [0] + [m.end() for m in _SENTENCE_END.finditer(text)]
        sentence = [sum(1 for x in ends[1:] if x <= s) for s, _, _ in spans]
        relations = []
        for t, (s, _, label) in enumerate(spans):
            head_label, rel = self.relate.get(label, (None, None))
            if head_label is None or (allowed is not None and rel not in allowed):
                continue
            heads = [h for h, x in enumerate(spans) if x[2] == head_label and h != t and sentence[h] == sentence[t]]
            if heads:
                h = min(heads, key=lambda h: (max(spans[h][0] - spans[t][1], s - spans[h][1]), spans[h][0] > s))
                relations.append(Relation(head=h, tail=t, label=rel))
        return Example(
            text=text,
            entities=[Entity(start=s, end=e, label=label) for s, e, label in spans],
            relations=relations,
            source=Source(origin="gazetteer"),
        )
