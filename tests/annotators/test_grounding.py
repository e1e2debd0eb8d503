from collections import Counter

import pytest

from distill_ner.annotators.grounding import GroundingError, GroundingRules, find_mention, ground


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


def test_an_example_without_entities_is_rejected_unless_the_rules_allow_it(species_spec):
    from distill_ner.annotators.grounding import GroundingRules

    answer = item("The olm is listed as vulnerable.", [])
    with pytest.raises(GroundingError) as err:
        ground(answer, species_spec)
    assert err.value.reason == "no_entities"
    assert ground(answer, species_spec, rules=GroundingRules(min_entities=0)).entities == []


def test_a_whole_sentence_is_not_one_entity(species_spec):
    from distill_ner.annotators.grounding import GroundingRules

    whole = item("The olm lives in flooded limestone caves.", [("The olm lives in flooded limestone caves", "HABITAT")])
    with pytest.raises(GroundingError) as err:
        ground(whole, species_spec)
    assert err.value.reason == "entity_too_long" and "of the text" in err.value.detail
    long_one = "The olm hides in caves. " + "It lives in the dark flooded karst caves of the Dinaric Alps from Slovenia down to Herzegovina."
    sentence = item(long_one, [("olm", "SPECIES"), ("the dark flooded karst caves of the Dinaric Alps from Slovenia down to Herzegovina", "HABITAT")])
    assert len(ground(sentence, species_spec).entities) == 2  # a long habitat is a real habitat (real breeding facts run to 30 words)
    with pytest.raises(GroundingError, match="entity_too_long"):
        ground(sentence, species_spec, rules=GroundingRules(max_entity_words=10))
    short = item("The saola gives birth during the rainy season.", [("saola", "SPECIES"), ("gives birth during the rainy season", "BREEDING")])
    assert len(ground(short, species_spec).entities) == 2  # a phrase that is most of a short sentence is fine


def test_a_label_wrong_only_in_its_case_is_fixed_and_counted_or_rejected(species_spec):
    from collections import Counter

    from distill_ner.annotators.grounding import GroundingRules

    answer = item("The olm lives in caves.", [("olm", "species"), ("caves", "Habitat")], [("olm", "caves", "LIVE_IN")])
    repairs: Counter = Counter()
    ex = ground(answer, species_spec, repairs=repairs)
    assert [e.label for e in ex.entities] == ["SPECIES", "HABITAT"] and ex.relations[0].label == "live_in"
    assert repairs == {"label_case": 3}
    with pytest.raises(GroundingError) as err:
        ground(answer, species_spec, rules=GroundingRules(label_case="reject"))
    assert err.value.reason == "unknown_label"


def test_a_copy_of_the_prompts_few_shot_text_is_rejected(species_spec):
    shot = species_spec.few_shot[0]
    copied = {"text": shot.text, "entities": [e.model_dump() for e in shot.entities], "relations": [r.model_dump() for r in shot.relations]}
    with pytest.raises(GroundingError) as err:
        ground(copied, species_spec)
    assert err.value.reason == "copied_few_shot"
    nearly = {**copied, "text": shot.text.replace("hunts roe deer", "hunts roe deer and sika deer")}
    with pytest.raises(GroundingError, match="copied_few_shot"):
        ground(nearly, species_spec)
    own = item("The Amur leopard is one of the rarest big cats; fewer than a hundred live in the wild.", [("Amur leopard", "SPECIES")])
    assert len(ground(own, species_spec).entities) == 1


def test_given_text_drops_only_the_bad_mention_and_counts_it(species_spec):
    text = "The Amur leopard lives in temperate forests and hunts roe deer."
    item = {
        "text": text,
        "entities": [
            {"text": "Amur leopard", "label": "SPECIES"},
            {"text": "temperate forests", "label": "HABITAT"},
            {"text": "snow leopard", "label": "SPECIES"},  # not in the text
            {"text": "roe deer", "label": "PREY"},  # not a label of the spec
        ],
        "relations": [
            {"head": "Amur leopard", "tail": "temperate forests", "label": "live_in"},
            {"head": "Amur leopard", "tail": "roe deer", "label": "feed_on"},  # its tail was dropped
        ],
    }
    with pytest.raises(GroundingError, match="mention_not_found"):
        ground(item, species_spec)  # text the LLM wrote: the whole answer is rejected
    repairs = Counter()
    example = ground(item, species_spec, rules=GroundingRules(bad_mentions="drop"), repairs=repairs, written=False)
    assert [(example.span(e), e.label) for e in example.entities] == [("Amur leopard", "SPECIES"), ("temperate forests", "HABITAT")]
    assert [(r.head, r.tail, r.label) for r in example.relations] == [(0, 1, "live_in")]
    assert repairs == {"dropped_mention_not_found": 1, "dropped_unknown_label": 1, "dropped_relation_mention_missing": 1}
