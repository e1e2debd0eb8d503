"""The mock LLM's world: its fact table, the shapes of the texts it writes, the one span convention
of their gold annotation, the factual errors in its texts and the annotation errors in its answers.

Texts come in many shapes (`SHAPES`): the reference paper's paragraph ("The Axolotl or Ambystoma
mexicanum live in the lakes of Xochimilco; they feed on ...; and they breed by <a long clause>"),
long multi-clause sentences, lists joined by commas and "and", scientific names in parentheses or
after "or", aliases, pronoun sentences ("Its diet consists of ..."), numbers and measurements,
breeding facts of 10-30 words, sentences with no fact, negations ("does not live in ...") and
distractors (a predator that is a SPECIES mention with no relation, a zoo that is not a habitat).

Facts are composed from parts (`FactTable.compose`, `Writer.breeding`), so that most habitat, food
and breeding phrases of a test split never occur in its training split, as with a real LLM: a
base phrase of the species' own or its ecotype's table, an optional modifier ("seasonally
flooded", "high-altitude", "ripe", "schooling") and an optional attachment (a region of the
species, "below 1,500 metres", "along the Pacific coast", "from the forest floor"); a breeding
clause joins one or two base clauses, sometimes a timing ("in early spring") and a detail. The
base alone decides whether a fact is true of the species (a factually wrong text has a base of
another ecotype).

The gold annotation follows ONE convention (`convention_problems` checks it):
  - a span never starts with a preposition or an article ("in", "on", "by", "the", ...) and never
    ends with punctuation: "the lakes of Xochimilco" is HABITAT "lakes of Xochimilco";
  - a fact's modifiers and attachments belong to it: "the seasonally flooded peat swamp forests
    of Aceh" is HABITAT "seasonally flooded peat swamp forests of Aceh", "ripe figs from the forest
    floor" is one FEEDING; an attached place, depth or source is never an entity of its own;
  - every item of a list is its own entity; a phrase with an inner "and" that names one fact
    ("the rainforests of Malaysia and Sumatra") is one entity, and so is a breeding clause however
    many verbs, timings and details it has ("breed by nesting in tree cavities and laying two
    eggs in early spring, after a long courtship ...": one BREEDING, without the "by");
  - common names, scientific names and aliases are separate SPECIES entities;
  - negated facts, places that are not habitats (zoos, museums, markets), threats and numbers are
    not entities; other species named as predators are SPECIES without relations;
  - every habitat, food and breeding fact about the subject is related (live_in, feed_on,
    breed_by) to the first mention of the subject species in the text, across sentences too.

Errors: a text may be factually wrong (a habitat, food, breeding fact or scientific name of
another kind of species; `factually_wrong`, a careful reviewer rejects it) or unusable (cut off
mid-sentence; `unusable`). An answer may carry annotation errors of the kinds in `ERROR_KINDS`:
span convention drift (`leading_preposition`, `trailing_punctuation`, `split_list`,
`merged_list`), `boundary`, `partial_name`, `wrong_label`, `missing_entity`, `invented_entity`
(most often a negated fact, a non-habitat place or a predator), `missing_relation`,
`wrong_relation` (linked to the wrong species) and `reversed_relation` (head and tail swapped,
which grounding rejects as an LLM's unusable answer).
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from distill_ner.annotators.truth import TEXT_ERRORS  # noqa: F401  (the text errors: a careful reviewer rejects the text)
from distill_ner.data.example import Entity, Example, Relation, Source

FACTS_PATH = Path(__file__).with_name("mock_facts.yaml")
ERROR_KINDS = (
    "wrong_label", "boundary", "missing_entity", "invented_entity", "wrong_relation",
    "leading_preposition", "trailing_punctuation", "split_list", "merged_list", "partial_name",
    "missing_relation", "reversed_relation",
)
# How often each kind is drawn for an example with annotation errors (drift is the commonest).
ERROR_WEIGHTS = {
    "leading_preposition": 3.0, "boundary": 2.0, "missing_entity": 2.0, "invented_entity": 2.0,
    "merged_list": 1.5, "split_list": 1.5, "partial_name": 1.5, "wrong_label": 1.5,
    "missing_relation": 1.5, "trailing_punctuation": 1.0, "wrong_relation": 1.0, "reversed_relation": 0.3,
}
FACT_KINDS = ("habitat", "food", "breeding", "name")  # what a factually wrong text gets wrong
LEAD_WORDS = ("in", "on", "by", "at", "of", "to", "from", "across", "the", "a", "an", "its", "and", "or")
_RELATION_OF = {"HABITAT": "live_in", "FEEDING": "feed_on", "BREEDING": "breed_by"}
_CONFUSED = {"HABITAT": ["FEEDING", "SPECIES"], "FEEDING": ["SPECIES", "HABITAT"], "BREEDING": ["FEEDING", "HABITAT"], "SPECIES": ["FEEDING", "HABITAT"]}

# Shapes of a first sentence and their weights, then those of the sentences that may follow it.
MAIN_SHAPES = {
    "paper": 0.16, "long_clause": 0.10, "list_habitat": 0.09, "list_food": 0.08, "sci_paren": 0.09, "sci_or": 0.06,
    "alias": 0.10, "breeding_long": 0.10, "measure": 0.04, "no_fact": 0.05, "negation": 0.07, "predator": 0.05, "not_habitat": 0.05,
}
FOLLOW_SHAPES = {"pronoun": 0.45, "measure": 0.1, "negation": 0.12, "predator": 0.12, "not_habitat": 0.11, "no_fact": 0.1}
SHAPES = tuple(dict.fromkeys([*MAIN_SHAPES, *FOLLOW_SHAPES]))
# Words that place a breeding clause in time (such a clause gets no second timing).
TIME_WORDS = re.compile(r"\b(spring|summer|autumn|winter|year|years|season|seasons|night|month|months|rains|rainy|dry|wet|monsoon|March|June|October|December)\b")


# --- the fact table ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Species:
    name: str
    sci: str
    eco: str
    aliases: tuple[str, ...] = ()
    habitat: tuple[str, ...] = ()
    food: tuple[str, ...] = ()
    breeding: tuple[str, ...] = ()


class FactTable:
    """Species, per-ecotype habitat, food and breeding phrases, and the distractor lists of `mock_facts.yaml`."""

    def __init__(self, path: Path = FACTS_PATH) -> None:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        self.ecotypes: dict[str, dict[str, list[str]]] = raw["ecotypes"]
        self.species = [
            Species(**{k: tuple(v) if isinstance(v, list) else v for k, v in item.items()}) for item in raw["species"]
        ]
        self.predators: list[str] = raw.get("predators", [])
        self.not_habitats: list[str] = raw.get("not_habitats", [])
        self.breeding_details: list[str] = raw.get("breeding_details", [])
        self.statuses: list[str] = raw.get("statuses", ["endangered"])
        self.threats: list[str] = raw.get("threats", ["habitat loss"])
        self.realm_of = {eco: realm for realm, ecos in raw.get("realms", {}).items() for eco in ecos}
        self.habitat_modifiers: dict[str, list[str]] = raw.get("habitat_modifiers", {})
        self.habitat_places: dict[str, list[str]] = raw.get("habitat_places", {})
        self.food_modifiers: dict[str, list[str]] = raw.get("food_modifiers", {})
        self.food_attachments: dict[str, list[str]] = raw.get("food_attachments", {})
        self.plant_words = set(raw.get("plant_words", []))
        self.breeding_timing: list[str] = raw.get("breeding_timing", [])
        self.water_words = set(raw.get("water_words", []))
        self.bare_foods = set(raw.get("bare_foods", []))
        self.clashes: list[set[str]] = [set(group) for group in raw.get("clashes", [])]
        self._base_eco: dict[tuple[str, str], str] = {}
        for eco, table in self.ecotypes.items():
            for kind, phrases in table.items():
                for phrase in phrases:
                    self._base_eco.setdefault((kind, phrase), eco)
        self._index = {}
        for sp in self.species:
            for key in (sp.name, sp.sci, *sp.aliases):
                self._index[key.casefold()] = sp

    def lookup(self, topic: str | None, rng: random.Random) -> Species:
        """The species a topic like "Amur leopard (Panthera pardus orientalis)" names; an unknown
        topic keeps its names with a generic ecotype; no topic: any species."""
        if not topic:
            return rng.choice(self.species)
        common, _, rest = topic.partition("(")
        sci = rest.rstrip(") ").strip()
        for key in (sci, common.strip(), topic.strip()):
            if key and key.casefold() in self._index:
                return self._index[key.casefold()]
        eco = sorted(self.ecotypes)[int(hashlib.sha1(topic.encode()).hexdigest(), 16) % len(self.ecotypes)]
        name = common.strip() or topic.strip()
        return Species(name=name[:1].lower() + name[1:] if name[1:2].islower() else name, sci=sci or name, eco=eco)

    def facts(self, sp: Species, kind: str) -> list[str]:
        """A species' own facts of one kind, then five ecotype phrases fixed for that species."""
        pool = self.ecotypes[sp.eco][kind]
        pick = random.Random(f"{sp.sci}:{kind}").sample(pool, min(5, len(pool)))
        return list(getattr(sp, kind)) + [p for p in pick if p not in getattr(sp, kind)]

    def foreign(self, sp: Species, kind: str, rng: random.Random) -> str:
        """A fact of `kind` that is false for `sp`: from an ecotype far from its own (or another
        species' scientific name, for kind "name")."""
        if kind == "name":
            return rng.choice([o.sci for o in self.species if o.eco != sp.eco and o.sci != sp.sci])
        own = set(self.ecotypes[sp.eco][kind]) | set(getattr(sp, kind))
        others = sorted({p for eco, table in self.ecotypes.items() if eco != sp.eco for p in table[kind]} - own)
        return rng.choice(others)

    def regions(self, sp: Species) -> list[str]:
        """The places a species' own habitat facts name: "the Russian Far East" of "temperate
        forests of the Russian Far East", "the Himalayas" (attached to composed habitats)."""
        out = []
        for phrase in sp.habitat:
            words = phrase.split()
            m = re.search(r"\b(?:of|in|on|off) ((?:the )?(?:[a-z-]+ )?[A-Z][^,]*)$", phrase)
            if words[0] == "the" and len(words) > 1 and any(w[:1].isupper() for w in words[1:3]):
                out.append(phrase)  # "the Himalayas", "the northern Gulf of California"
            elif m and len(m.group(1).split()) <= 6:
                out.append(m.group(1))
        return list(dict.fromkeys(out))

    def compose(self, sp: Species, kind: str, base: str, rng: random.Random) -> str:
        """A habitat or food phrase built on `base`: an optional modifier ("seasonally flooded",
        "ripe") after its article, and an optional attachment (a region of `sp`, "below 1,500
        metres", "from the forest floor"), both fitting the realm of the base's ecotype. Proper
        names ("Lake Titicaca") take neither; a base with its own place ("... of Aceh") takes no
        second one. The base alone decides whether the fact is true (`foreign`)."""
        if kind not in ("habitat", "food"):
            return base
        realm = self.realm_of.get(self._base_eco.get((kind, base), sp.eco), "land")
        article, rest = _article(base)
        words = set(re.findall(r"[\w,-]+", rest.casefold()))
        if kind == "habitat" and realm != "land" and not words & self.water_words:
            realm = "land"
        if kind == "habitat":
            modifiers, places, p_mod, p_place = self.habitat_modifiers.get(realm, []), self.habitat_places.get(realm, []), 0.6, 0.5
        else:
            kind_of_food = "plant" if words & self.plant_words else "animal"
            modifiers, places, p_mod, p_place = self.food_modifiers.get(kind_of_food, []), self.food_attachments.get(realm, []), 0.6, 0.3
        modifier = ""
        if rest[:1].islower() and not (kind == "food" and words & self.bare_foods) and rng.random() < p_mod:
            options = [m for m in modifiers if self._fits(m, words)]
            modifier = rng.choice(options) + " " if options else ""
        words |= set(modifier.casefold().split())
        attachment = ""
        proper = any(w[:1].isupper() for w in rest.split())
        if not proper and not re.search(r"\b(of|in|on|off|near|along|from|under)\b", rest) and rng.random() < p_place:
            own = self.regions(sp) if kind == "habitat" else []
            places = [p for p in places if self._fits(p, words)]
            if own and rng.random() < 0.6:
                attachment = f" {rng.choice(['of', 'of', 'in', 'across'])} {rng.choice(own)}"
            elif places:
                attachment = " " + rng.choice(places)
        return f"{article}{modifier}{rest}{attachment}"

    def _fits(self, part: str, words: set[str]) -> bool:
        """A modifier or attachment goes with a phrase of `words`: it repeats none of them and
        none clashes with them ("lowland" and "alpine", "tropical" and "in the tropics")."""
        mine = set(part.casefold().split())
        if mine & words:
            return False
        return not any({w.casefold() for w in group} & mine and {w.casefold() for w in group} & words for group in self.clashes)

    def timing(self, clause: str, rng: random.Random) -> str:
        """An ending that places a breeding clause in time (" in early spring"), or "" when the
        clause already names a time."""
        if not self.breeding_timing or TIME_WORDS.search(clause):
            return ""
        return " " + rng.choice(self.breeding_timing)


def gerund(phrase: str) -> str:
    """ "lays eggs in ponds" -> "laying eggs in ponds" (the verb of a breeding fact after "by")."""
    first, _, rest = phrase.partition(" ")
    irregular = {"is": "being", "has": "having", "can": "being able to", "digs": "digging", "dies": "dying"}
    if first in irregular:
        word = irregular[first]
    elif first.endswith("ies"):
        word = first[:-3] + "ying"
    elif first.endswith(("ches", "shes", "sses", "xes")) or (first.endswith("es") and len(first) > 4 and first[-3] not in "aeiou"):
        word = first[:-2] + "ing"  # "reaches" -> "reaching", "gives" -> "giving"
    elif first.endswith("s"):
        word = first[:-1] + "ing"
    else:
        word = first + "ing"
    return f"{word} {rest}".strip()


# --- drafts: a text and its spans -----------------------------------------------------------------
@dataclass
class Draft:
    """A written example: text, spans `(start, end, label)`, relations by span index, and what the
    error injection needs to know: per span the start of the words a sloppy annotator takes in
    (`lead`), list groups, and decoys (phrases with no entity that an LLM would still label)."""

    text: str = ""
    spans: list[tuple[int, int, str]] = field(default_factory=list)
    relations: list[tuple[int, int, str]] = field(default_factory=list)
    lead: list[int | None] = field(default_factory=list)
    group: list[int | None] = field(default_factory=list)
    trail: list[bool] = field(default_factory=list)
    decoys: list[tuple[int, int, str]] = field(default_factory=list)
    shapes: list[str] = field(default_factory=list)
    subject: int | None = None

    def surface(self, i: int) -> str:
        s, e, _ = self.spans[i]
        return self.text[s:e]

    def copy(self) -> Draft:
        return copy.deepcopy(self)

    def add(self, span: tuple[int, int, str], lead: int | None = None, group: int | None = None) -> int:
        self.spans.append(span)
        self.lead.append(lead)
        self.group.append(group)
        self.trail.append(False)
        return len(self.spans) - 1

    def delete(self, i: int) -> None:
        for name in ("spans", "lead", "group", "trail"):
            del getattr(self, name)[i]
        self.relations = [(h - (h > i), t - (t > i), lab) for h, t, lab in self.relations if i not in (h, t)]
        if self.subject is not None:
            self.subject = None if self.subject == i else self.subject - (self.subject > i)

    def _meta_ok(self) -> bool:
        return len(self.spans) == len(self.lead) == len(self.group) == len(self.trail)


def _article(value: str) -> tuple[str, str]:
    for art in ("the ", "a ", "an "):
        if value.startswith(art):
            return value[: len(art)], value[len(art) :]
    return "", value


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:]


class Writer:
    """Writes one example about `sp` sentence by sentence, recording spans, relations and decoys."""

    def __init__(self, sp: Species, table: FactTable, rng: random.Random, poison: str | None = None) -> None:
        self.sp, self.table, self.rng, self.d = sp, table, rng, Draft()
        self.used: set[str] = set()
        self.poison = poison
        self.poisoned: str | None = None
        self.plural = False
        self._groups = 0

    # pieces
    def say(self, s: str) -> None:
        if not self.d.text and s:
            s = _cap(s)
        self.d.text += s

    def start_sentence(self) -> None:
        if self.d.text:
            self.d.text += " "

    def entity(self, value: str, label: str, lead: str = "", group: int | None = None) -> int:
        """Append `lead` + `value` as an entity of `label`; a leading article of `value` stays outside."""
        article, value = _article(value) if label != "BREEDING" else ("", value)
        before = lead + article
        at_start = not self.d.text or self.d.text.endswith(". ")
        if at_start:
            before, value = (_cap(before), value) if before else ("", _cap(value))
        lead_start = len(self.d.text) if before.strip() else None
        preposition = re.search(r"\b(in|on|by|across|of)\s$", self.d.text)
        if preposition and lead_start is not None or preposition and not before:
            lead_start = preposition.start()
        self.d.text += before
        start = len(self.d.text)
        self.d.text += value
        return self.d.add((start, len(self.d.text), label), lead_start, group)

    def relate(self, tail: int) -> None:
        label = _RELATION_OF.get(self.d.spans[tail][2])
        if self.d.subject is not None and label:
            self.d.relations.append((self.d.subject, tail, label))

    def decoy(self, value: str, label: str, lead: str = "") -> None:
        article, value = _article(value)
        self.d.text += lead + article
        start = len(self.d.text)
        self.d.text += value
        self.d.decoys.append((start, len(self.d.text), label))

    # species mentions
    def species(self, which: str = "name", lead: str = "the ", title: bool = False) -> int:
        sp = self.sp
        if which == "sci":
            value, lead = sp.sci, ""
            if self.poison == "name" and self.poisoned is None:
                value = self.table.foreign(sp, "name", self.rng)
                self.poisoned = f"name: {value!r} is not the scientific name of the {sp.name}"
        elif which == "alias":
            value = self.rng.choice(sp.aliases)
        else:
            value = sp.name
        if title:
            value = " ".join(_cap(w) for w in value.split())
        i = self.entity(value, "SPECIES", lead)
        if self.d.subject is None:
            self.d.subject = i
        return i

    def other_species(self) -> str:
        options = [p for p in self.table.predators if p not in self.used]
        value = self.rng.choice(options or self.table.predators)
        self.used.add(value)
        return value

    # facts
    def base(self, kind: str) -> str:
        """A base phrase of `kind` for the subject (one of another ecotype where the text is to
        be factually wrong about `kind`), not used before in this text if there is one left."""
        if self.poison == kind and self.poisoned is None and self.rng.random() < 0.6:
            value = self.table.foreign(self.sp, kind, self.rng)
            self.poisoned = f"{kind}: {value!r} is not true of the {self.sp.name}"
            self.used.add(value)
            return value
        options = [o for o in self.table.facts(self.sp, kind) if o not in self.used]
        value = self.rng.choice(options or self.table.facts(self.sp, kind))
        self.used.add(value)
        return value

    def fact(self, kind: str) -> str:
        """A composed habitat or food phrase (`FactTable.compose`) on a new base."""
        return self.table.compose(self.sp, kind, self.base(kind), self.rng)

    def facts(self, kind: str, label: str, n: int, lead: str = "", first: str | None = None) -> list[int]:
        """A list of `n` facts joined by commas and "and", each its own entity related to the subject."""
        values = []
        if first and first not in self.used:
            self.used.add(first)
            values.append(self.table.compose(self.sp, kind, first, self.rng))
        while len(values) < n:
            fresh = len(self.used)
            value = self.fact(kind)
            if value in values or len(self.used) == fresh:  # no new base left
                break
            values.append(value)
        group = None
        if len(values) > 1:
            group = self._groups
            self._groups += 1
        out = []
        for k, value in enumerate(values):
            if k:
                self.d.text += " and " if k == len(values) - 1 else ", "
            out.append(self.entity(value, label, lead if k == 0 else "", group))
            self.relate(out[-1])
        return out

    def breeding(self, lead: str = "", by: bool = False, long: bool = False) -> int:
        """One BREEDING clause, built from parts: a base clause, sometimes a second one joined by
        "and" ("nests in tree cavities and lays two eggs"), sometimes a timing ("in early
        spring"), and for `long` a detail ("after a long courtship ..."); after "by" every verb
        is a gerund. However long, the clause is one entity."""
        rng = self.rng
        parts = [self.base("breeding")]
        if rng.random() < 0.35:
            fresh = len(self.used)
            second = self.base("breeding")
            if len(self.used) > fresh and " and " not in parts[0] + second and second.split()[0] != parts[0].split()[0]:
                parts.append(second)
        if by:
            parts = [gerund(p) for p in parts]
        value = " and ".join(parts)
        timing = self.table.timing(value, rng) if rng.random() < 0.4 else ""
        value += timing
        details = [d for d in self.table.breeding_details if not (timing and TIME_WORDS.search(d))]
        if long and details and len(value.split()) < 16:
            detail = rng.choice(details)
            value = f"{value}, {detail}" if detail.startswith(("although ", "and ")) else f"{value} {detail}"
        i = self.entity(value, "BREEDING", lead)
        self.relate(i)
        return i

    def pronoun(self) -> str:
        return "they" if self.plural else "it"

    def n(self, low: int, high: int, step: int = 1) -> str:
        value = self.rng.randrange(low, high, step)
        return f"{value:,}"


# --- the shapes ---------------------------------------------------------------------------------
def _shape_paper(w: Writer) -> None:
    rng, sp = w.rng, w.sp
    w.plural = True
    title = rng.random() < 0.6
    w.species("name", "the " if rng.random() < 0.7 else "", title=title)
    if sp.sci != sp.name:
        w.say(" or ")
        w.species("sci")
    if sp.aliases and rng.random() < 0.2:
        w.say(" (also called the ")
        w.species("alias", "")
        w.say(")")
    w.say(" live in ")
    first = sp.habitat[0] if sp.habitat and rng.random() < 0.5 else None
    w.facts("habitat", "HABITAT", rng.choice([1, 1, 2, 2, 3]), first=first)
    parts = rng.sample(["food", "breeding"], k=rng.choice([1, 2, 2, 2]))
    for k, part in enumerate(parts):
        last = k == len(parts) - 1
        sep = rng.choice(["; ", ". ", ", "]) if not last or len(parts) == 1 else rng.choice(["; and ", ", and ", ". "])
        w.say(sep)
        subject = "They" if sep.startswith(".") else "they"
        if part == "food":
            w.say(f"{subject} feed on ")
            w.facts("food", "FEEDING", rng.choice([1, 2, 2, 3]))
        else:
            w.say(f"{subject} breed by ")
            w.breeding(by=True, long=rng.random() < 0.7)
    w.say(".")


def _shape_long_clause(w: Writer) -> None:
    rng = w.rng
    form = rng.randrange(3)
    if form == 0:
        w.say("Although its numbers have fallen sharply over the last " + w.n(20, 90, 10) + " years, the ")
        w.species("name", "")
        w.say(" still lives in ")
        w.facts("habitat", "HABITAT", rng.choice([1, 2]))
        w.say(", where it feeds on ")
        w.facts("food", "FEEDING", rng.choice([1, 2]))
        w.say(" and ")
        w.breeding(long=rng.random() < 0.4)
        w.say(".")
    elif form == 1:
        w.say("In ")
        w.facts("habitat", "HABITAT", 1)
        w.say(", where the dry season can last for months, the ")
        w.species("name", "")
        w.say(" survives on ")
        w.facts("food", "FEEDING", rng.choice([1, 2]))
        w.say(", and when the rains return it ")
        w.breeding(long=rng.random() < 0.5)
        w.say(".")
    else:
        w.say("Field studies carried out over several seasons have shown that the ")
        w.species("name", "")
        w.say(" ")
        w.breeding(long=rng.random() < 0.5)
        w.say(", that it depends on ")
        w.facts("habitat", "HABITAT", 1)
        w.say(" and that it rarely eats anything but ")
        w.facts("food", "FEEDING", 1)
        w.say(".")


def _shape_list_habitat(w: Writer) -> None:
    rng = w.rng
    w.say("The ")
    w.species("name", "")
    w.say(rng.choice([" is found in ", " ranges across ", " occurs in ", " can be seen in "]))
    w.facts("habitat", "HABITAT", rng.choice([2, 3, 3, 4]))
    w.say(rng.choice([".", ", although it is rare everywhere.", ", usually below " + w.n(500, 3000, 100) + " metres."]))


def _shape_list_food(w: Writer) -> None:
    rng = w.rng
    if rng.random() < 0.5:
        w.say("The diet of the ")
        w.species("name", "")
        w.say(" consists of ")
    else:
        w.say("The ")
        w.species("name", "")
        w.say(rng.choice([" feeds on ", " mainly eats ", " preys on "]))
    w.facts("food", "FEEDING", rng.choice([2, 3, 3, 4]))
    w.say(rng.choice([".", ", depending on the season.", ", which it finds mostly at night."]))


def _shape_sci_paren(w: Writer) -> None:
    rng = w.rng
    w.say("The ")
    w.species("name", "")
    w.say(" (")
    w.species("sci")
    w.say(") ")
    if rng.random() < 0.5:
        w.say(rng.choice(["inhabits ", "lives in "]))
        w.facts("habitat", "HABITAT", rng.choice([1, 2]))
    else:
        w.breeding(long=rng.random() < 0.5)
    w.say(".")


def _shape_sci_or(w: Writer) -> None:
    rng = w.rng
    w.species("sci")
    w.say(", or the ")
    w.species("name", "")
    w.say(", ")
    if rng.random() < 0.5:
        w.say("feeds mainly on ")
        w.facts("food", "FEEDING", rng.choice([1, 2]))
    else:
        w.say("is found only in ")
        w.facts("habitat", "HABITAT", 1)
    w.say(".")


def _shape_alias(w: Writer) -> None:
    rng = w.rng
    if not w.sp.aliases:
        return _shape_sci_paren(w)
    if rng.random() < 0.5:
        w.say("The ")
        w.species("name", "")
        w.say(", also known as the ")
        w.species("alias", "")
        w.say(", lives in ")
        w.facts("habitat", "HABITAT", rng.choice([1, 2]))
    else:
        w.say("Locally called the ")
        w.species("alias", "")
        w.say(", the ")
        w.species("name", "")
        w.say(" ")
        w.breeding(long=rng.random() < 0.5)
    w.say(".")


def _shape_breeding_long(w: Writer) -> None:
    rng = w.rng
    w.say(rng.choice(["The ", "During the breeding season, the ", "In the wild, the "]))
    w.species("name", "")
    w.say(" ")
    w.breeding(long=True)
    w.say(".")


def _shape_measure(w: Writer) -> None:
    rng = w.rng
    form = rng.randrange(3) if w.d.subject is not None else rng.randrange(1, 3)
    if form == 0:
        w.say(f"Adults measure {w.n(5, 40)} to {w.n(41, 120)} centimetres in length and can weigh up to {w.n(100, 900, 50)} grams.")
    elif form == 1:
        w.say("An adult ")
        w.species("name", "")
        w.say(f" can live for more than {w.n(10, 60)} years and reach {w.n(2, 9)}.{w.n(0, 9)} kilograms.")
    else:
        w.say(f"Fewer than {w.n(50, 5000, 50)} mature individuals remain in ")
        if w.d.subject is None:
            w.facts("habitat", "HABITAT", 1)
            w.say(", and the ")
            w.species("name", "")
            w.say(" is still declining.")
        else:
            w.facts("habitat", "HABITAT", 1)
            w.say(".")


def _shape_no_fact(w: Writer) -> None:
    rng = w.rng
    threats = rng.sample(w.table.threats, 2)
    if w.d.subject is None:
        w.say("The ")
        w.species("name", "")
        w.say(f" is listed as {rng.choice(w.table.statuses)} on the IUCN Red List, mainly because of {threats[0]} and {threats[1]}.")
    else:
        w.say(f"{_cap(w.pronoun())} {'are' if w.plural else 'is'} listed as {rng.choice(w.table.statuses)}, and {threats[0]} remains the main threat.")


def _shape_negation(w: Writer) -> None:
    rng = w.rng
    if w.d.subject is None:
        w.say("Unlike many of its relatives, the ")
        w.species("name", "")
        w.say(" does not live in ")
    else:
        w.say(f"Contrary to popular belief, {w.pronoun()} {'do' if w.plural else 'does'} not live in ")
    w.decoy(w.table.compose(w.sp, "habitat", w.table.foreign(w.sp, "habitat", rng), rng), "HABITAT")
    if rng.random() < 0.5:
        w.say(f"; {w.pronoun()} {'are' if w.plural else 'is'} found only in ")
        w.facts("habitat", "HABITAT", 1)
    else:
        w.say(f", and {w.pronoun()} never {'feed' if w.plural else 'feeds'} on ")
        w.decoy(w.table.compose(w.sp, "food", w.table.foreign(w.sp, "food", rng), rng), "FEEDING")
    w.say(".")


def _shape_predator(w: Writer) -> None:
    rng = w.rng
    if w.d.subject is None:
        w.say("The young of the ")
        w.species("name", "")
        w.say(" are often eaten by ")
    else:
        w.say(rng.choice(["Its main predators are ", "Predators include ", "Its young are taken by "]))
    w.entity(w.other_species(), "SPECIES", "the ")
    w.d.decoys.append((*w.d.spans[-1][:2], "FEEDING"))
    if rng.random() < 0.6:
        w.say(" and ")
        w.entity(w.other_species(), "SPECIES", "the ")
        w.d.decoys.append((*w.d.spans[-1][:2], "FEEDING"))
    w.say(".")


def _shape_not_habitat(w: Writer) -> None:
    rng = w.rng
    place = rng.choice(w.table.not_habitats)
    if w.d.subject is None:
        w.say(rng.choice(["Specimens of the ", "Captive groups of the "]))
        w.species("name", "")
        w.say(" are kept in ")
    else:
        w.say(rng.choice(["Captive populations are kept in ", "Small numbers are still sold in ", "Specimens were first studied in "]))
    w.decoy(place, "HABITAT")
    w.say(rng.choice([".", f" since {rng.randrange(1850, 2015)}."]))


def _shape_pronoun(w: Writer) -> None:
    rng = w.rng
    p = w.pronoun()
    form = rng.randrange(5)
    if form == 0:
        w.say(rng.choice(["Its diet consists of ", "Its diet includes ", "Their diet consists of " if w.plural else "Its food is mostly "]))
        w.facts("food", "FEEDING", rng.choice([1, 2, 3]))
    elif form == 1:
        w.say(f"{_cap(p)} breed{'' if w.plural else 's'} by ")
        w.breeding(by=True, long=rng.random() < 0.5)
    elif form == 2:
        w.say(f"{_cap(p)} {'are' if w.plural else 'is'} also found in ")
        w.facts("habitat", "HABITAT", rng.choice([1, 2]))
    elif form == 3:
        w.say("Its preferred habitat is ")
        w.facts("habitat", "HABITAT", 1)
    else:
        w.say("The species ")
        w.breeding(long=rng.random() < 0.5)
    w.say(".")


SHAPE_WRITERS = {
    "paper": _shape_paper, "long_clause": _shape_long_clause, "list_habitat": _shape_list_habitat, "list_food": _shape_list_food,
    "sci_paren": _shape_sci_paren, "sci_or": _shape_sci_or, "alias": _shape_alias, "breeding_long": _shape_breeding_long,
    "measure": _shape_measure, "no_fact": _shape_no_fact, "negation": _shape_negation, "predator": _shape_predator,
    "not_habitat": _shape_not_habitat, "pronoun": _shape_pronoun,
}


# --- checks -----------------------------------------------------------------------------------
def _unambiguous(draft: Draft) -> bool:
    """Every entity's text occurs once (at word boundaries), so grounding by text is exact, and no
    two spans overlap."""
    from distill_ner.annotators.grounding import find_mention

    spans = sorted(draft.spans)
    if any(a[1] > b[0] for a, b in itertools.pairwise(spans)):
        return False
    folded = [draft.surface(i).casefold() for i in range(len(draft.spans))]
    if len(set(folded)) < len(folded):  # grounding takes a mention case-insensitively once
        return False
    return all(len(find_mention(draft.text, draft.surface(i))) == 1 for i in range(len(draft.spans)))


def _sized(draft: Draft) -> bool:
    """No entity is longer than grounding allows (32 words, 80% of the text)."""
    for s, e, _ in draft.spans:
        words = len(draft.text[s:e].split())
        if words > 1 and (words > 32 or (e - s) / max(1, len(draft.text.strip())) > 0.8):
            return False
    return True


def convention_problems(example: Example) -> list[str]:
    """Where an annotation breaks the one span convention (empty for the mock's gold)."""
    problems = []
    for e in example.entities:
        surface = example.text[e.start : e.end]
        first = surface.split()[0].casefold() if surface.split() else ""
        if first in LEAD_WORDS:
            problems.append(f"{surface!r} starts with {first!r}")
        if surface != surface.strip() or surface[-1:] in ".,;:!?)(\"'":
            problems.append(f"{surface!r} has leading or trailing space or punctuation")
    return problems


# --- writing examples -------------------------------------------------------------------------
@dataclass
class Written:
    """One written example: its gold draft, the text errors it carries and notes on them."""

    draft: Draft
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _pick(weights: dict[str, float], rng: random.Random) -> str:
    names = list(weights)
    return rng.choices(names, weights=[weights[n] for n in names])[0]


def write_example(sp: Species, table: FactTable, rng: random.Random, factual_error_rate: float = 0.25, unusable_rate: float = 0.02) -> Written:
    """One example about `sp` in one of `MAIN_SHAPES`, sometimes followed by one or two other
    sentences; factually wrong or cut off at the given rates."""
    wrong = rng.random() < factual_error_rate
    cut = rng.random() < unusable_rate
    for _ in range(40):
        poison = rng.choice(FACT_KINDS) if wrong else None
        if poison == "name" and sp.sci == sp.name:
            poison = "habitat"
        w = Writer(sp, table, rng, poison)
        main = _pick(MAIN_SHAPES, rng)
        if main == "alias" and not sp.aliases:
            main = "sci_paren"
        if main in ("sci_paren", "sci_or") and sp.sci == sp.name:
            main = "list_habitat"
        if poison == "name" and main not in ("paper", "sci_paren", "sci_or"):
            main = rng.choice(["paper", "sci_paren", "sci_or"])
        w.d.shapes.append(main)
        SHAPE_WRITERS[main](w)
        follow = rng.choices([0, 1, 2], weights=[0.45, 0.4, 0.15])[0]
        for _k in range(follow):
            if w.d.subject is None:
                break
            shape = _pick(FOLLOW_SHAPES, rng)
            w.start_sentence()
            w.d.shapes.append(shape)
            SHAPE_WRITERS[shape](w)
        draft = w.d
        if w.d.subject is None or (wrong and w.poisoned is None) or not _unambiguous(draft) or not _sized(draft):
            continue
        errors, notes = [], []
        if wrong:
            errors.append("factually_wrong")
            notes.append(w.poisoned or "")
        if cut:
            cut_draft = _cut(draft, rng)
            if cut_draft is not None:
                draft = cut_draft
                errors.append("unusable")
                notes.append("unusable: the text stops in mid-sentence")
        return Written(draft, errors, notes)
    w = Writer(sp, table, rng)
    w.say("The ")
    w.species("name", "")
    w.say(" lives in ")
    w.facts("habitat", "HABITAT", 1)
    w.say(".")
    w.d.shapes.append("list_habitat")
    return Written(w.d)


OFF_TOPIC_SENTENCES = (
    "The {group} met on {day} to discuss {thing}, and the vote was postponed until {month}.",
    "{Thing} rose by {pct} percent in {month}, the largest change since the {group} began keeping records.",
    "Passengers were told that the {time} service would leave from platform {num} because of {thing}.",
    "After {num} minutes the home side scored twice, and the {group} celebrated late into the evening.",
    "The new version fixes {num} bugs in {thing} and needs a restart of every office computer.",
    "Forecasters expect {weather} on {day}, with temperatures near {num} degrees in the afternoon.",
    "Stir the {food} for {num} minutes, then add the {food2} and let the pot rest before serving.",
    "The {group} approved a budget of {num} million for {thing} after a long debate on {day}.",
    "Students sat the exam on {day}, and the results on {thing} will be posted in {month}.",
    "Staff will move to the third floor in {month}, and the {group} will plan the new desks.",
    "The museum opened its new wing on {day} with an exhibition on {thing} and {num} paintings.",
    "The mechanic replaced the brakes and the {thing} and said the car was ready by {time}.",
)
OFF_TOPIC_SLOTS = {
    "group": ["committee", "board", "city council", "steering group", "supporters' club", "project team"],
    "day": ["Tuesday", "Monday", "Friday", "the first Thursday", "Saturday morning"],
    "month": ["March", "June", "October", "December", "the spring"],
    "thing": ["parking fees", "the new timetable", "printer drivers", "school meals", "energy prices", "the roof repairs", "signal failures"],
    "pct": ["four", "2.5", "twelve", "seven"],
    "time": ["7:15", "noon", "half past six", "18:40"],
    "num": ["three", "14", "forty", "250", "nine"],
    "weather": ["heavy rain", "light snow", "strong winds", "a dry spell"],
    "food": ["onions", "rice", "tomato sauce", "lentils"],
    "food2": ["garlic", "stock", "cream", "herbs"],
}


def write_off_topic(rng: random.Random) -> Written:
    """A text that names no species and no fact of one (the answer to the spec's `negative` prompt):
    one or two sentences of a meeting, prices, a timetable, the weather, ..."""
    sentences = []
    for template in rng.sample(OFF_TOPIC_SENTENCES, rng.choice((1, 1, 2))):
        values = {k: rng.choice(v) for k, v in OFF_TOPIC_SLOTS.items()}
        sentences.append(template.format(**values, Thing=_cap(values["thing"])))
    draft = Draft(text=" ".join(sentences), shapes=["off_topic"])
    return Written(draft=draft, errors=[], notes=[])


def _cut(draft: Draft, rng: random.Random) -> Draft | None:
    """The text cut off after a word in its second half (an unusable, truncated text)."""
    words = [m.end() for m in re.finditer(r"\w+", draft.text) if m.end() > len(draft.text) // 2 and m.end() < len(draft.text) - 2]
    if not words:
        return None
    at = rng.choice(words)
    cut = draft.copy()
    cut.text = draft.text[:at]
    for i in reversed(range(len(cut.spans))):
        if cut.spans[i][1] > at:
            cut.delete(i)
    cut.decoys = [d for d in cut.decoys if d[1] <= at]
    return cut if cut.spans and cut.subject is not None else None


# --- annotation errors ------------------------------------------------------------------------
def inject_error(draft: Draft, kind: str, labels: list[str], rng: random.Random) -> Draft | None:
    """A copy of `draft` with one annotation error of `kind`, or None if it cannot carry one."""
    d = draft.copy()
    text = d.text
    idx = list(range(len(d.spans)))
    if kind == "wrong_label" and idx:
        i = rng.choice(idx)
        options = [lab for lab in _CONFUSED.get(d.spans[i][2], labels) if lab in labels and lab != d.spans[i][2]]
        if not options:
            return None
        d.spans[i] = (d.spans[i][0], d.spans[i][1], rng.choice(options))
        d.relations = [r for r in d.relations if i not in r[:2]]  # a mislabelled entity loses its relations
    elif kind == "boundary" and idx:
        i = rng.choice(idx)
        start, end, label = d.spans[i]
        inner = text[start:end]
        before = list(re.finditer(r"\w[\w'-]*", text[:start]))
        if " " in inner and (label == "BREEDING" or rng.random() < 0.6):
            cuts = [m.start() for m in re.finditer(r"[ ,]+", inner)]
            keep = rng.choice(cuts[len(cuts) // 2 :]) if label == "BREEDING" else cuts[-1]
            end = start + keep
        elif before and d.lead[i] is None and text[before[-1].end() : start] == " " and all(not (s < before[-1].end() and before[-1].start() < e) for s, e, _ in d.spans):
            start = before[-1].start()
        else:
            return None
        d.spans[i] = (start, end, label)
    elif kind == "missing_entity" and len(idx) > 1:
        d.delete(rng.choice(idx))
    elif kind == "invented_entity":
        decoys = [x for x in d.decoys if x[2] in labels and all(x[1] <= s or x[0] >= e or (x[0], x[1]) == (s, e) for s, e, _ in d.spans)]
        if decoys and rng.random() < 0.85:
            s, e, label = rng.choice(decoys)
            same = [i for i in idx if d.spans[i][:2] == (s, e)]
            if same:  # a predator taken for food
                d.spans[same[0]] = (s, e, label)
                i = same[0]
            else:
                i = d.add((s, e, label))
            if label in _RELATION_OF and d.subject is not None and d.subject != i and rng.random() < 0.7:
                d.relations.append((d.subject, i, _RELATION_OF[label]))
        else:
            free = [
                m for m in re.finditer(r"[A-Za-z]{6,}", text)
                if all(m.end() <= s or m.start() >= e for s, e, _ in d.spans) and m.group().lower() not in {"which", "where", "their", "species", "although"}
            ]
            if not free or not labels:
                return None
            m = rng.choice(free)
            d.add((m.start(), m.end(), rng.choice(labels)))
    elif kind == "wrong_relation" and d.relations:
        k = rng.randrange(len(d.relations))
        h, t, lab = d.relations[k]
        others = [i for i in idx if d.spans[i][2] == "SPECIES" and i != h]
        if not others:
            return None
        d.relations[k] = (rng.choice(others), t, lab)
    elif kind == "leading_preposition":
        leads = [i for i in idx if d.lead[i] is not None]
        if not leads:
            return None
        i = rng.choice(leads)
        d.spans[i] = (d.lead[i], d.spans[i][1], d.spans[i][2])
    elif kind == "trailing_punctuation":
        ends = [i for i in idx if text[d.spans[i][1] : d.spans[i][1] + 1] in (",", ".", ";", ")")]
        if not ends:
            return None
        d.trail[rng.choice(ends)] = True
    elif kind == "split_list":
        cands = []
        for i in idx:
            s, e, label = d.spans[i]
            if label == "SPECIES":
                continue
            for m in re.finditer(r",? and |, ", text[s:e]):
                if m.start() > 2 and e - (s + m.end()) > 2:
                    cands.append((i, s + m.start(), s + m.end()))
        if not cands:
            return None
        i, cut_at, resume = rng.choice(cands)
        s, e, label = d.spans[i]
        d.spans[i] = (s, cut_at, label)
        j = d.add((resume, e, label))
        d.relations += [(h, j, lab) for h, t, lab in d.relations if t == i]
    elif kind == "merged_list":
        groups = sorted({g for g in d.group if g is not None})
        groups = [g for g in groups if sum(1 for x in d.group if x == g) > 1]
        if not groups:
            return None
        g = rng.choice(groups)
        members = sorted((i for i in idx if d.group[i] == g), key=lambda i: d.spans[i][0])
        first = members[0]
        d.spans[first] = (d.spans[first][0], d.spans[members[-1]][1], d.spans[first][2])
        d.group[first] = None
        for i in reversed(members[1:]):
            d.delete(i)
    elif kind == "partial_name":
        names = [i for i in idx if d.spans[i][2] == "SPECIES" and " " in d.surface(i)]
        if not names:
            return None
        i = rng.choice(names)
        s, e, label = d.spans[i]
        words = list(re.finditer(r"\S+", text[s:e]))
        keep = words[0] if text[s:e][:1].isupper() and len(words) == 2 and rng.random() < 0.7 else words[-1]
        d.spans[i] = (s + keep.start(), s + keep.end(), label)
    elif kind == "missing_relation" and d.relations:
        del d.relations[rng.randrange(len(d.relations))]
    elif kind == "reversed_relation" and d.relations:
        k = rng.randrange(len(d.relations))
        h, t, lab = d.relations[k]
        d.relations[k] = (t, h, lab)
    else:
        return None
    return d if d.spans and _unambiguous(d) and _sized(d) else None


def with_errors(truth: Draft, labels: list[str], kinds: tuple[str, ...], rate: float, max_errors: int, rng: random.Random) -> tuple[Draft, list[str]]:
    """What the LLM answers for `truth`: with probability `rate`, one to `max_errors` annotation
    errors of `kinds` (drawn by `ERROR_WEIGHTS`)."""
    if rng.random() >= rate or not kinds:
        return truth, []
    count = 1
    while count < max_errors and rng.random() < 0.35:
        count += 1
    shown, done = truth, []
    weights = {k: ERROR_WEIGHTS.get(k, 1.0) for k in kinds}
    for _ in range(count):
        tried = dict(weights)
        while tried:
            kind = _pick(tried, rng)
            wrong = inject_error(shown, kind, labels, rng)
            if wrong is not None and (sorted(wrong.spans), wrong.relations, wrong.trail) != (sorted(truth.spans), truth.relations, truth.trail):
                shown = wrong  # (an error that undoes an earlier one does not count)
                done.append(kind)
                weights.pop(kind, None)
                break
            del tried[kind]
    return shown, done


def answer_item(draft: Draft) -> dict[str, Any]:
    """The draft as an LLM would answer it: mentions and relation ends as text."""
    entities, seen = [], set()
    for i in range(len(draft.spans)):
        surface = draft.surface(i)
        if draft.trail and draft.trail[i]:
            surface += draft.text[draft.spans[i][1]]
        key = (surface, draft.spans[i][2])
        if key not in seen:
            seen.add(key)
            entities.append({"text": key[0], "label": key[1]})
    relations = [{"head": draft.surface(h), "tail": draft.surface(t), "label": lab} for h, t, lab in draft.relations]
    return {"text": draft.text, "entities": entities, "relations": relations}


def restrict(draft: Draft, ent_labels: list[str] | None, rel_labels: list[str] | None) -> Draft:
    """Keep only the labels a request's schema knows (all, when it names none)."""
    d = draft.copy()
    for i in reversed(range(len(d.spans))):
        if ent_labels is not None and d.spans[i][2] not in ent_labels:
            d.delete(i)
    if rel_labels is not None:
        d.relations = [r for r in d.relations if r[2] in rel_labels]
    if ent_labels is not None:
        d.decoys = [x for x in d.decoys if x[2] in ent_labels]
    return d


def draft_to_example(draft: Draft, source: Source) -> Example:
    order = sorted(range(len(draft.spans)), key=lambda i: draft.spans[i][:2])
    new = {old: k for k, old in enumerate(order)}
    return Example(
        text=draft.text,
        entities=[Entity(start=draft.spans[i][0], end=draft.spans[i][1], label=draft.spans[i][2]) for i in order],
        relations=[Relation(head=new[h], tail=new[t], label=lab) for h, t, lab in draft.relations],
        source=source,
    )


def example_to_draft(example: Example) -> Draft:
    d = Draft(text=example.text)
    for e in example.entities:
        d.add((e.start, e.end, e.label))
    d.relations = [(r.head, r.tail, r.label) for r in example.relations]
    return d
