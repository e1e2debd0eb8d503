import pytest

from distill_ner.annotators.gazetteer import Gazetteer
from distill_ner.annotators.mock_world import FactTable
from tests.fixtures.examples import make_example


@pytest.fixture(scope="module")
def table_gazetteer() -> Gazetteer:
    return Gazetteer.from_table(FactTable())


def found(example):
    return [(example.span(e), e.label) for e in example.entities]


def related(example):
    return {(example.span(r.head), example.span(r.tail), r.label) for r in example.relations}


def test_finds_the_fact_table_in_a_text_it_did_not_write(table_gazetteer):
    text = (
        "Field notes, 2024.\nThe snow leopard (Panthera uncia) lives in the Himalayas and hunts blue sheep.\n"
        "Snow leopards give birth to two to four cubs. The golden eagle nests on cliff ledges."
    )
    example = table_gazetteer.annotate(text)
    assert found(example) == [
        ("snow leopard", "SPECIES"), ("Panthera uncia", "SPECIES"), ("Himalayas", "HABITAT"), ("blue sheep", "FEEDING"),
        ("Snow leopards", "SPECIES"), ("give birth to two to four cubs", "BREEDING"),
        ("golden eagle", "SPECIES"), ("nests on cliff ledges", "BREEDING"),
    ]
    # each fact to the nearest species of its own sentence: the eagle's nest is not the leopard's
    assert related(example) == {
        ("Panthera uncia", "Himalayas", "live_in"), ("Panthera uncia", "blue sheep", "feed_on"),
        ("Snow leopards", "give birth to two to four cubs", "breed_by"), ("golden eagle", "nests on cliff ledges", "breed_by"),
    }


def test_longest_match_word_boundaries_case_and_composed_facts(table_gazetteer):
    # "bamboo forests of central China" beats "bamboo" (food); "pandas" inside a longer word ("pandasx") is no match
    example = table_gazetteer.annotate("Giant pandas live in bamboo forests of central China; giant pandasx do not.")
    assert found(example) == [("Giant pandas", "SPECIES"), ("bamboo forests of central China", "HABITAT")]
    # a proper name keeps its case: "Lake Titicaca" is a habitat, "lake titicaca" is not
    assert found(table_gazetteer.annotate("boats on lake titicaca")) == []
    assert found(table_gazetteer.annotate("Boats on Lake Titicaca")) == [("Lake Titicaca", "HABITAT")]
    # a modifier and an attachment belong to the fact, as in the mock's gold convention
    example = table_gazetteer.annotate("The vaquita feeds on small fish near river mouths and lives in remote coral reefs below 1,500 metres.")
    assert ("small fish", "FEEDING") in found(example)
    assert ("remote coral reefs below 1,500 metres", "HABITAT") in found(example)
    # two breeding clauses joined by "and" are one fact
    example = table_gazetteer.annotate("The kakapo nests in tree cavities and lays two eggs in early spring.")
    assert ("nests in tree cavities and lays two eggs in early spring", "BREEDING") in found(example)


def test_labels_and_relations_only_as_the_request_names_them(table_gazetteer):
    text = "The snow leopard lives in the Himalayas and hunts blue sheep."
    example = table_gazetteer.annotate(text, ["SPECIES", "HABITAT"], ["live_in"])
    assert found(example) == [("snow leopard", "SPECIES"), ("Himalayas", "HABITAT")]
    assert related(example) == {("snow leopard", "Himalayas", "live_in")}
    example = table_gazetteer.annotate(text, ["SPECIES", "HABITAT", "FEEDING"], [])
    assert len(example.entities) == 3 and example.relations == []
    assert table_gazetteer.annotate(text, ["Chemical", "Disease"]).entities == []  # labels it does not know


def test_a_gazetteer_of_gold_surfaces_relates_as_the_gold_does():
    gold = [
        make_example("Aspirin induced asthma in two patients.", [("Aspirin", "Chemical"), ("asthma", "Disease")], [(0, 1, "induces")]),
        make_example("Cisplatin is nephrotoxic.", [("Cisplatin", "Chemical")]),
    ]
    gazetteer = Gazetteer.from_examples(gold)
    assert gazetteer.labels == {"Chemical", "Disease"}
    example = gazetteer.annotate("Late asthma after cisplatin and aspirin. Asthma again.")
    assert found(example) == [("asthma", "Disease"), ("cisplatin", "Chemical"), ("aspirin", "Chemical"), ("Asthma", "Disease")]
    # the nearest Chemical of the same sentence; none for the second sentence
    assert related(example) == {("cisplatin", "asthma", "induces")}


def test_the_longest_match_wins_over_the_leftmost():
    gazetteer = Gazetteer({"red blood": "A", "blood cell count": "B", "count": "C"})
    assert found(gazetteer.annotate("A red blood cell count.")) == [("blood cell count", "B")]
