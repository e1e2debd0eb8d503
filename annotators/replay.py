"""Replay mode of the mock LLM: it answers the `annotate` prompt from a gold file, with errors.

`distill mock-llm --replay GOLD` (JSONL, CoNLL or DocBin, read by `data.formats.read_examples`)
makes the mock an LLM that knows the gold: for an annotate request whose text is a gold text, or
lies inside one (a window of a long gold document), or contains gold texts (a window of several
gold sentences), the answer is that gold in the text's offsets (`ReplayGold.lookup`) passed
through `ReplayErrors`; any other text is answered by a gazetteer of the gold's own entity
surfaces (`annotators.gazetteer`). Each request draws its own errors from its own random
generator (the mock seeds it from the request, which holds the sample's seed), so k samples
disagree exactly where errors fall.

The error model (`ReplayErrors`), per distinct mention (an answer names each surface once; the
client grounds every occurrence): `drift` moves one boundary by one word in or out (inside the
text, never onto another entity), `missed` leaves the mention out (and its relations),
`mislabelled` gives it another label of the request's schema (its relations go), and with
chance `invented` per text a new mention is made of one or two words that are no entity.
Relations follow their entities. The kinds drawn are named as the mock world names them
(`boundary`, `missing_entity`, `wrong_label`, `invented_entity`).

At the default rates the replayed LLM (k=1, answers grounded as the pipeline grounds them)
scores strict span F1 0.821 (P 0.819, R 0.824; seeds 1-3: 0.813-0.820) against the gold on the
first 500 sentences of bc5cdr dev (1,069 gold entities; without errors 0.997, the rest is
grounding by surface):

    python -m distill_ner.annotators.replay ../shared/data/real-ner/bc5cdr/dev.conll --n 500

Through the server and `distill annotate`'s code, on windows of eight of those sentences (106
windows, each answered from the gold it contains), the answers score 0.809 (P 0.858, R 0.766)
against the truth records.

The mock writes a truth record (`annotators.truth.TruthRecord`, the gold in the text's offsets,
origin "replay", and the error kinds of the first answer) for each text it answers from the
gold, so the simulated reviewer corrects the answers to the gold; `replay_truth` builds the
same records for a list of texts without a server.

Public API:
    ReplayErrors(drift=0.08, missed=0.07, mislabelled=0.04, invented=0.15)
    load_gold(path) -> list[Example]                          one-line DistillError on failure
    ReplayGold(examples); ReplayGold.load(path); .lookup(text) -> Example | None; .gazetteer
    replay_answer(example, ent_labels, rel_labels, errors, rng, with_text=True) -> (answer, kinds)
    replay_truth(gold, texts) -> dict[str, TruthRecord]
    replay_f1(gold, n=500, errors=None, seed=0) -> dict
"""

from __future__ import annotations

import argparse
import bisect
import random
import re
from collections.abc import Iterable, Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from distill_ner.annotators.gazetteer import Gazetteer
from distill_ner.annotators.truth import TruthRecord
from distill_ner.data.errors import DistillError
from distill_ner.data.example import Entity, Example, Relation, Source
from distill_ner.data.formats import read_examples
from distill_ner.data.metrics import prf
from distill_ner.data.words import tokenize

ORIGIN = "replay"
KINDS = {"drift": "boundary", "missed": "missing_entity", "mislabelled": "wrong_label", "invented": "invented_entity"}
MIN_WORDS = 4  # a text contains gold texts when at least one of them has this many words
_PREFIX = 12
_WORD = re.compile(r"[A-Za-z][\w'-]{3,}")
_STOP = {
    "that", "this", "with", "from", "were", "which", "have", "been", "than", "there", "their", "these", "those",
    "also", "into", "after", "before", "when", "while", "where", "such", "other", "both", "each", "only", "more",
    "most", "some", "during", "between", "about", "because", "although", "however", "they", "them", "then",
}


class ReplayErrors(BaseModel):
    """Error rates of replayed answers: per distinct mention (`drift`, `missed`, `mislabelled`,
    at most one each) and per text (`invented`)."""

    model_config = ConfigDict(extra="forbid")

    drift: float = Field(default=0.08, ge=0, le=1, description="a boundary moved by one word in or out")
    missed: float = Field(default=0.07, ge=0, le=1, description="the mention left out, with its relations")
    mislabelled: float = Field(default=0.04, ge=0, le=1, description="another label of the request's schema")
    invented: float = Field(default=0.15, ge=0, le=1, description="chance per text of a new mention on words that are no entity")

    @model_validator(mode="after")
    def _one_error_per_mention(self) -> ReplayErrors:
        if self.drift + self.missed + self.mislabelled > 1:
            raise ValueError(f"drift + missed + mislabelled is {self.drift + self.missed + self.mislabelled:g}; at most 1 (one error per mention)")
        return self


def load_gold(path: str | Path) -> list[Example]:
    """The examples of a gold file (JSONL, CoNLL or DocBin by suffix); any failure is one line."""
    path = Path(path)
    if not path.exists():
        raise DistillError(f"{path}: replay gold file not found")
    try:
        examples = read_examples(path)
    except DistillError as err:
        raise DistillError(f"replay gold: {err}") from None
    except Exception as err:  # noqa: BLE001  (a DocBin or file the readers cannot parse: one line, no traceback)
        first = (str(err).splitlines() or [type(err).__name__])[0]
        raise DistillError(f"{path}: cannot read it as replay gold ({type(err).__name__}: {first[:200]})") from None
    if not examples:
        raise DistillError(f"{path}: the replay gold file has no examples")
    return examples


def _starts_word(text: str, start: int) -> bool:
    return start == 0 or not (text[start - 1].isalnum() and text[start].isalnum())


def _ends_word(text: str, end: int) -> bool:
    return end >= len(text) or not (text[end - 1].isalnum() and text[end].isalnum())


def _shifted(gold: Example, offset: int, lo: int = 0, hi: int | None = None) -> tuple[list[Entity], list[tuple[int, int, str]]]:
    """The gold's entities inside [lo, hi) moved by `offset`, and its relations between them (by
    index into that list)."""
    hi = len(gold.text) if hi is None else hi
    keep = [i for i, e in enumerate(gold.entities) if e.start >= lo and e.end <= hi]
    index = {old: new for new, old in enumerate(keep)}
    entities = [gold.entities[i].model_copy(update={"start": gold.entities[i].start + offset, "end": gold.entities[i].end + offset}) for i in keep]
    relations = [(index[r.head], index[r.tail], r.label) for r in gold.relations if r.head in index and r.tail in index]
    return entities, relations


def _replayed(text: str, parts: list[tuple[Example, int, int, int]]) -> Example:
    """An example of `text` made of gold parts (gold, offset, lo, hi)."""
    entities: list[Entity] = []
    relations: list[Relation] = []
    for gold, offset, lo, hi in parts:
        ents, rels = _shifted(gold, offset, lo, hi)
        base = len(entities)
        entities += ents
        relations += [Relation(head=h + base, tail=t + base, label=lab) for h, t, lab in rels]
    return Example(text=text, entities=entities, relations=relations, source=Source(origin=ORIGIN)).sorted_entities()


class ReplayGold:
    """Gold examples indexed by text, for exact, inside and containing look-ups."""

    def __init__(self, examples: Iterable[Example]) -> None:
        self.examples = list(examples)
        self._exact: dict[str, Example] = {}
        for ex in self.examples:
            self._exact.setdefault(ex.text, ex)
            self._exact.setdefault(ex.text.strip(), ex)
        self._by_prefix: dict[str, list[Example]] = {}
        self._short: dict[str, Example] = {}
        for ex in self._unique():
            core = ex.text
            if len(core) >= _PREFIX:
                self._by_prefix.setdefault(core[:_PREFIX], []).append(ex)
            elif core:
                self._short.setdefault(core, ex)
        self._short_lengths = sorted({len(t) for t in self._short})
        self._by_length = sorted(self._unique(), key=lambda ex: len(ex.text))
        self._lengths = [len(ex.text) for ex in self._by_length]

    def _unique(self) -> list[Example]:
        seen: dict[str, Example] = {}
        for ex in self.examples:
            if ex.text.strip() and ex.text == ex.text.strip():
                seen.setdefault(ex.text, ex)
        return list(seen.values())

    @classmethod
    def load(cls, path: str | Path) -> ReplayGold:
        """The gold of a file (`load_gold`)."""
        return cls(load_gold(path))

    def __len__(self) -> int:
        return len(self.examples)

    @cached_property
    def gazetteer(self) -> Gazetteer:
        """A gazetteer of the gold's own entity surfaces (for texts the gold does not hold)."""
        return Gazetteer.from_examples(self.examples)

    def lookup(self, text: str) -> Example | None:
        """The gold of `text` in its offsets (origin "replay"): a gold text itself; a piece of one
        gold text (its entities inside the piece); or a text that contains gold texts (at word
        boundaries, at least one of `MIN_WORDS` words; the union of their entities). None
        when the gold does not hold the text."""
        if not text.strip():
            return None
        gold = self._exact.get(text)
        if gold is not None:
            return _replayed(text, [(gold, 0, 0, len(gold.text))])
        core = text.strip()
        lead = len(text) - len(text.lstrip())
        gold = self._exact.get(core)
        if gold is not None:
            offset = lead - gold.text.find(core)
            return _replayed(text, [(gold, offset, 0, len(gold.text))])
        contained = self._contained(text)
        if contained:
            return _replayed(text, [(g, at, 0, len(g.text)) for g, at in contained])
        for gold in self._by_length[bisect.bisect_right(self._lengths, len(core)) :]:
            at = gold.text.find(core)
            while at >= 0 and not (_starts_word(gold.text, at) and _ends_word(gold.text, at + len(core))):
                at = gold.text.find(core, at + 1)
            if at >= 0:
                return _replayed(text, [(gold, lead - at, at, at + len(core))])
        return None

    def _contained(self, text: str) -> list[tuple[Example, int]]:
        """Gold texts inside `text` (start at a word, end at a word boundary), longest first and
        not overlapping; empty unless one of them has `MIN_WORDS` words."""
        found: list[tuple[int, int, Example]] = []
        for start, _ in tokenize(text):
            for gold in self._by_prefix.get(text[start : start + _PREFIX], ()):
                if text.startswith(gold.text, start) and _ends_word(text, start + len(gold.text)):
                    found.append((start, start + len(gold.text), gold))
            for length in self._short_lengths:
                gold = self._short.get(text[start : start + length]) if start + length <= len(text) else None
                if gold is not None and _ends_word(text, start + length):
                    found.append((start, start + length, gold))
        kept: list[tuple[int, int, Example]] = []
        for s, e, gold in sorted(found, key=lambda m: (m[0] - m[1], m[0])):
            if all(e <= ks or s >= ke for ks, ke, _ in kept):
                kept.append((s, e, gold))
        if not any(len(tokenize(g.text)) >= MIN_WORDS for _, _, g in kept):
            return []
        return [(g, s) for s, _, g in sorted(kept, key=lambda m: m[0])]


# --- answers ----------------------------------------------------------------------------------
def _drift(text: str, span: tuple[int, int], others: list[tuple[int, int]], rng: random.Random) -> tuple[int, int] | None:
    """`span` with one boundary moved by one word in or out, touching no other span; None if no move fits."""
    s, e = span
    inside = tokenize(text, s, e)
    tokens = tokenize(text)
    before = [w for w in tokens if w[1] <= s][-1:]
    after = [w for w in tokens if w[0] >= e][:1]
    options = []  # out: the next word on either side, if no punctuation comes between
    if before and any(c.isalnum() for c in text[before[0][0] : before[0][1]]):
        options.append((before[0][0], e))
    if after and any(c.isalnum() for c in text[after[0][0] : after[0][1]]):
        options.append((s, after[0][1]))
    words = [(a, b) for a, b in inside if any(c.isalnum() for c in text[a:b])]
    if len(words) > 1:  # in: a word less at either end
        options += [(words[1][0], e), (s, words[-2][1])]
    options = [(a, b) for a, b in options if b > a and all(b <= x or a >= y for x, y in others)]
    return rng.choice(options) if options else None


def _invent(text: str, taken: list[tuple[int, int]], surfaces: set[str], rng: random.Random) -> tuple[int, int] | None:
    """One or two free words that are no entity, for an invented mention."""
    free = [
        m for m in _WORD.finditer(text)
        if m.group().casefold() not in _STOP and m.group().casefold() not in surfaces and all(m.end() <= s or m.start() >= e for s, e in taken)
    ]
    if not free:
        return None
    k = rng.randrange(len(free))
    start, end = free[k].span()
    if k + 1 < len(free) and text[end : free[k + 1].start()] == " " and rng.random() < 0.3:
        end = free[k + 1].end()
    return start, end


def replay_answer(
    example: Example,
    ent_labels: Sequence[str] | None,
    rel_labels: Sequence[str] | None,
    errors: ReplayErrors,
    rng: random.Random,
    with_text: bool = True,
) -> tuple[dict[str, Any], list[str]]:
    """What the replayed LLM answers for `example` (entities as text, each surface once, with
    the label of its first mention; relations by head and tail text), restricted to the
    request's labels (None: all) and with the errors `errors` draws from `rng`; and the error
    kinds drawn (`KINDS` values)."""
    text = example.text
    wanted = None if ent_labels is None else set(ent_labels)
    labels = list(ent_labels) if ent_labels is not None else sorted({e.label for e in example.entities})
    order = sorted((i for i, e in enumerate(example.entities) if wanted is None or e.label in wanted), key=lambda i: example.entities[i].start)
    spans = {i: (example.entities[i].start, example.entities[i].end) for i in order}
    group_of: dict[int, str] = {}
    groups: dict[str, dict[str, Any]] = {}
    for i in order:
        key = example.span(i).casefold()
        group_of[i] = key
        groups.setdefault(key, {"span": spans[i], "label": example.entities[i].label, "state": "kept"})
    kinds: list[str] = []
    for key, group in groups.items():
        u = rng.random()
        if u < errors.missed:
            group["state"] = "missed"
            kinds.append(KINDS["missed"])
        elif u < errors.missed + errors.mislabelled:
            options = [lab for lab in labels if lab != group["label"]]
            if options:
                group["label"], group["state"] = rng.choice(options), "mislabelled"
                kinds.append(KINDS["mislabelled"])
        elif u < errors.missed + errors.mislabelled + errors.drift:
            others = [x for x in spans.values() if x != group["span"]] + [g["span"] for g in groups.values() if g is not group]
            moved = _drift(text, group["span"], others, rng)
            if moved is not None and text[moved[0] : moved[1]].casefold() not in groups:
                group["span"] = moved
                kinds.append(KINDS["drift"])
    entities = [{"text": text[g["span"][0] : g["span"][1]], "label": g["label"]} for g in groups.values() if g["state"] != "missed"]
    if labels and rng.random() < errors.invented:
        taken = list(spans.values()) + [g["span"] for g in groups.values()]
        new = _invent(text, taken, set(groups), rng)
        if new is not None:
            entities.append({"text": text[new[0] : new[1]], "label": rng.choice(labels)})
            kinds.append(KINDS["invented"])
    relations, seen = [], set()
    for r in example.relations:
        if r.head not in group_of or r.tail not in group_of or (rel_labels is not None and r.label not in rel_labels):
            continue
        head, tail = groups[group_of[r.head]], groups[group_of[r.tail]]
        if head["state"] != "kept" or tail["state"] != "kept" or head is tail:
            continue
        item = {"head": text[head["span"][0] : head["span"][1]], "tail": text[tail["span"][0] : tail["span"][1]], "label": r.label}
        if tuple(item.values()) not in seen:
            seen.add(tuple(item.values()))
            relations.append(item)
    answer = {"text": text} if with_text else {}
    return {**answer, "entities": entities, "relations": relations}, kinds


def replay_truth(gold: str | Path | Iterable[Example] | ReplayGold, texts: Iterable[str]) -> dict[str, TruthRecord]:
    """Truth records (the gold in each text's offsets, origin "replay", no errors) for the texts
    the gold holds (`ReplayGold.lookup`), keyed by text; for benches, without a server."""
    if isinstance(gold, (str, Path)):
        gold = ReplayGold.load(gold)
    elif not isinstance(gold, ReplayGold):
        gold = ReplayGold(gold)
    out: dict[str, TruthRecord] = {}
    for text in texts:
        example = gold.lookup(text)
        if example is not None:
            out[text] = TruthRecord(example=example)
    return out


# --- measuring the error model ----------------------------------------------------------------
def replay_f1(gold: str | Path | Sequence[Example], n: int | None = 500, errors: ReplayErrors | None = None, seed: int = 0) -> dict[str, Any]:
    """Strict span P/R/F1 of replayed answers (one sample each, grounded as the pipeline grounds
    an annotate answer) against the gold, over its first `n` examples."""
    from distill_ner.annotators.grounding import GroundingError, GroundingRules, ground
    from distill_ner.data.spec import EntityType, Prompts, RelationType, TaskSpec

    examples = list(load_gold(gold) if isinstance(gold, (str, Path)) else gold)[:n]
    labels = sorted({e.label for ex in examples for e in ex.entities})
    pairs: dict[str, tuple[set[str], set[str]]] = {}
    for ex in examples:
        for r in ex.relations:
            heads, tails = pairs.setdefault(r.label, (set(), set()))
            heads.add(ex.entities[r.head].label)
            tails.add(ex.entities[r.tail].label)
    spec = TaskSpec(
        name="replay",
        entities=[EntityType(label=label) for label in labels or ["ENTITY"]],
        relations=[RelationType(label=lab, head=sorted(h), tail=sorted(t)) for lab, (h, t) in sorted(pairs.items())],
        prompts=Prompts(system="-", generate="-", annotate="Text: {{ text }}"),
        topics={"replay": ["replay"]},
    )
    rules = GroundingRules(min_entities=0, few_shot_similarity=1.0)
    tp = fp = fn = failed = 0
    for k, ex in enumerate(examples):
        answer, _ = replay_answer(ex, labels, None, errors or ReplayErrors(), random.Random(f"{seed}:{k}"))
        try:
            predicted = {(e.start, e.end, e.label) for e in ground(answer, spec, rules=rules).entities}
        except GroundingError:
            predicted, failed = set(), failed + 1
        truth = {(e.start, e.end, e.label) for e in ex.entities}
        tp, fp, fn = tp + len(predicted & truth), fp + len(predicted - truth), fn + len(truth - predicted)
    return {**prf(tp, fp, fn), "examples": len(examples), "ungrounded": failed}


def main(argv: list[str] | None = None) -> None:
    """`python -m distill_ner.annotators.replay GOLD [--n 500]`: print the replayed LLM's strict span F1."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("gold")
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    for name, field in ReplayErrors.model_fields.items():
        parser.add_argument(f"--{name}", type=float, default=field.default)
    args = parser.parse_args(argv)
    errors = ReplayErrors(**{name: getattr(args, name) for name in ReplayErrors.model_fields})
    print(replay_f1(args.gold, args.n, errors, args.seed))


if __name__ == "__main__":
    main()
