"""Template sentences about species for the trainer tests: deterministic, labelled, with relations."""

from __future__ import annotations

import random

from distill_ner.data.example import Entity, Example, Relation

SPECIES = ["Amur leopard", "hawksbill turtle", "axolotl", "snow leopard", "red panda", "vaquita", "kakapo", "saola"]
HABITATS = ["temperate forests", "tropical beaches", "Lake Xochimilco", "mountain slopes", "bamboo forests", "the Gulf of California"]
FOODS = ["roe deer", "sea sponges", "small fish", "blue sheep", "bamboo shoots", "worms"]
BREEDING = ["lays eggs", "gives birth to two cubs", "breeds every two years"]
TEMPLATES = [
    ("The {S} lives in {H} and eats {F}.", ["S", "H", "F"], [(0, 1, "live_in"), (0, 2, "feed_on")]),
    ("In {H}, the {S} hunts {F}.", ["H", "S", "F"], [(1, 0, "live_in"), (1, 2, "feed_on")]),
    ("The {S} {B} in {H}.", ["S", "B", "H"], [(0, 1, "breed_by"), (0, 2, "live_in")]),
    ("Researchers counted few {S} near {H} this year.", ["S", "H"], [(0, 1, "live_in")]),
    ("Nothing here names an animal at all.", [], []),
]
LABEL = {"S": "SPECIES", "H": "HABITAT", "F": "FEEDING", "B": "BREEDING"}


def make_examples(n: int, seed: int = 0) -> list[Example]:
    """`n` distinct-ish template examples with entities and relations."""
    rng = random.Random(seed)
    out, seen = [], set()
    while len(out) < n:
        template, slots, rels = TEMPLATES[rng.randrange(len(TEMPLATES))]
        values = {"S": rng.choice(SPECIES), "H": rng.choice(HABITATS), "F": rng.choice(FOODS), "B": rng.choice(BREEDING)}
        text = template.format(**values)
        if text in seen and len(seen) < 200:
            continue
        seen.add(text)
        entities, cursor = [], 0
        for slot in slots:
            start = text.index(values[slot], cursor)
            entities.append(Entity(start=start, end=start + len(values[slot]), label=LABEL[slot]))
            cursor = start + len(values[slot])
        order = sorted(range(len(entities)), key=lambda i: entities[i].start)
        out.append(Example(text=text, entities=entities, relations=[Relation(head=h, tail=t, label=lab) for h, t, lab in rels], source={"origin": f"synthetic:{len(out)}"}))
        del order
    return out
