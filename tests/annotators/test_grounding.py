import pytest

from annotators.grounding import GroundingError, find_mention, ground


def item(text, entities, relations=()):
    return {
        "text": text,
        "entities": [{"text": t, "label": lab} for t, lab in entities],
        "relations": [{"head": h, "tail": t, "label": lab} for h, t, lab in relations],
    }


def spans(example):
    return [(example.span(e), e.label, e.start) for e in example.entities]


def test_every_occurrence_of_a_repeated_mention_is_an_entity(species_spec):
    text = "The kakapo eats seeds. Seeds of rimu trees are what the kakapo likes; seeds again."
    ex = ground(item(text, [("kakapo", "SPECIES"), ("seeds", "FEEDING")], [("kakapo", "seeds", "feed_on")]), species_spec)
    assert spans(ex) == [("kakapo", "SPECIES", 4), ("seeds", "FEEDING", 16), ("kakapo", "SPECIES", 56), ("seeds", "FEEDING", 70)]
    # "Seeds" (capital) is not the mention as written; the relation links the closest pair
    assert len(ex.relations) == 1 and (ex.relations[0].head, ex.relations[0].tail) == (0, 1)


def test_mentions_do_not_match_inside_words(species_spec):
    text = "The eel hides under steel pipes; the eel eats eels."
    ex = ground(item(text, [("eel", "SPECIES")]), species_spec)
    assert [e.start for e in ex.entities] == [4, 37]


def test_punctuation_around_mentions_and_in_them(species_spec):
    text = "Kemp's ridley sea turtle (Lepidochelys kempii) nests in Rancho Nuevo, Mexico."
    ex = ground(
        item(text, [("Kemp's ridley sea turtle", "SPECIES"), ("(Lepidochelys kempii)", "SPECIES"), ("Rancho Nuevo, Mexico.", "HABITAT")]),
        species_spec,
    )
    assert spans(ex) == [
        ("Kemp's ridley sea turtle", "SPECIES", 0),
        ("Lepidochelys kempii", "SPECIES", 26),
        ("Rancho Nuevo, Mexico", "HABITAT", 56),
    ]


def test_unicode_mentions_and_normal_forms(species_spec):
    text = "The Galápagos giant tortoise lives on Isla Isabela; Rüppell's vulture nests on cliffs."
    nfd = "Galápagos giant tortoise".replace("á", "a\u0301")
    ex = ground(item(text, [(nfd, "SPECIES"), ("Rüppell's vulture", "SPECIES"), ("isla  isabela", "HABITAT")]), species_spec)
    assert spans(ex) == [("Galápagos giant tortoise", "SPECIES", 4), ("Isla Isabela", "HABITAT", 38), ("Rüppell's vulture", "SPECIES", 52)]
    assert find_mention("Über 日本のトキ lebt", "日本のトキ") == [(5, 10)]


def test_overlapping_mentions_keep_the_longest(species_spec):
    text = "The Amur leopard hunts roe deer; a leopard needs deer."
    ex = ground(item(text, [("leopard", "SPECIES"), ("Amur leopard", "SPECIES"), ("deer", "FEEDING"), ("roe deer", "FEEDING")]), species_spec)
    assert spans(ex) == [("Amur leopard", "SPECIES", 4), ("roe deer", "FEEDING", 23), ("leopard", "SPECIES", 35), ("deer", "FEEDING", 49)]


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        (item("The olm lives in caves.", [("axolotl", "SPECIES")]), "mention_not_found"),
        (item("The olm lives in caves.", [("olm", "ANIMAL")]), "unknown_label"),
        (item("The olm lives in caves.", [("olm", "SPECIES"), ("olm", "HABITAT")]), "conflicting_labels"),
        (item("The olm lives in caves.", [("olm", "SPECIES"), ("caves", "HABITAT")], [("caves", "olm", "live_in")]), "relation_not_allowed"),
        (item("The olm lives in caves.", [("olm", "SPECIES"), ("caves", "HABITAT")], [("olm", "caves", "hides_in")]), "unknown_relation"),
        (item("The olm lives in caves.", [("olm", "SPECIES")], [("olm", "caves", "live_in")]), "relation_mention_missing"),
        ({"text": "   ", "entities": []}, "empty_text"),
        ({"entities": []}, "invalid_item"),
        ("just a string", "invalid_item"),
    ],
)
def test_what_cannot_be_grounded_is_rejected_with_a_reason(species_spec, answer, reason):
    with pytest.raises(GroundingError) as err:
        ground(answer, species_spec)
    assert err.value.reason == reason
