"""Label Studio conversions, labeling config and the conflict rule, without a server."""

from datetime import datetime, timezone

import pytest

from annotators.label_studio import (
    REJECT_WRONG,
    Judgement,
    check_config,
    example_to_task,
    from_result,
    label_config,
    order_for_review,
    resolve,
    to_result,
    verified_example,
)
from data.errors import DistillError
from data.example import Entity, Relation
from tests.fixtures.examples import make_example


def test_labeling_config_has_every_label_relation_and_reject_choice(species_spec):
    config = label_config(species_spec)
    for label in species_spec.entity_labels + species_spec.relation_labels:
        assert f'value="{label}"' in config
    assert "Reject: factually wrong" in config and "Reject: unusable" in config
    check_config(species_spec, config, "here")  # its own config matches


def test_config_that_no_longer_matches_the_spec_is_refused(species_spec):
    config = label_config(species_spec).replace('value="BREEDING"', 'value="NESTING"')
    with pytest.raises(DistillError, match="project X.*NESTING"):
        check_config(species_spec, config, "project X")


def test_result_round_trip_keeps_entities_and_relations(species_spec, species_examples):
    for example in species_examples:
        entities, relations, rejected, skipped = from_result(to_result(example), example.text, species_spec, "t")
        assert entities == [Entity(start=e.start, end=e.end, label=e.label) for e in example.entities]
        assert sorted(relations, key=lambda r: (r.head, r.tail)) == sorted(example.relations, key=lambda r: (r.head, r.tail))
        assert rejected is None and skipped == 0


def test_unknown_label_in_an_annotation_names_the_task(species_spec, species_examples):
    result = to_result(species_examples[0])
    result[0]["value"]["labels"] = ["PLANT"]
    with pytest.raises(DistillError, match="task 7.*'PLANT'"):
        from_result(result, species_examples[0].text, species_spec, "Label Studio task 7")


def test_task_carries_example_id_and_prediction_score(species_spec, species_examples):
    example = species_examples[0].model_copy(update={"source": species_examples[0].source.model_copy(update={"model": "gpt-x", "confidence": 0.3})})
    task = example_to_task(example, species_spec, run="r1")
    assert task["data"]["example_id"] == example.id and task["data"]["run"] == "r1"
    assert task["predictions"][0]["model_version"] == "gpt-x" and task["predictions"][0]["score"] == 0.3


def test_example_with_a_label_outside_the_spec_is_refused_before_upload(species_spec):
    bad = make_example("Oak trees grow slowly.", [("Oak trees", "PLANT")])
    with pytest.raises(DistillError, match=f"example {bad.id}.*PLANT"):
        example_to_task(bad, species_spec)


def test_least_confident_first_unknown_last():
    examples = [make_example(f"text {i}", [], confidence=c) for i, c in enumerate([0.9, None, 0.1, 0.5])]
    assert [e.source.confidence for e in order_for_review(examples)] == [0.1, 0.5, 0.9, None]


def _j(name, minute, entities=(), relations=(), rejected=None):
    t = datetime(2026, 1, 1, 0, minute, tzinfo=timezone.utc)
    return Judgement(name, t, rejected, [Entity(start=s, end=e, label=lab) for s, e, lab in entities], [Relation(head=h, tail=t_, label=lab) for h, t_, lab in relations])


def test_conflicts_majority_span_vote_with_latest_breaking_ties():
    a = _j("a", 1, [(0, 3, "SPECIES"), (10, 14, "HABITAT")], [(0, 1, "live_in")])
    b = _j("b", 2, [(0, 3, "SPECIES"), (10, 14, "FEEDING")])
    c = _j("c", 3, [(0, 3, "SPECIES"), (10, 14, "HABITAT")], [(0, 1, "live_in")])
    merged = resolve([a, b, c])
    assert [(e.start, e.end, e.label) for e in merged.entities] == [(0, 3, "SPECIES"), (10, 14, "HABITAT")]
    assert merged.relations == [Relation(head=0, tail=1, label="live_in")]
    tie = resolve([a, b])  # one each: the latest (b) wins the tie
    assert [(e.start, e.end, e.label) for e in tie.entities] == [(0, 3, "SPECIES"), (10, 14, "FEEDING")]


def test_conflicts_reject_unless_a_strict_majority_keeps():
    keep = _j("a", 1, [(0, 3, "SPECIES")])
    assert resolve([keep, _j("b", 2, rejected=REJECT_WRONG)]).rejected == REJECT_WRONG
    assert resolve([keep, _j("b", 2, [(0, 3, "SPECIES")]), _j("c", 3, rejected=REJECT_WRONG)]).rejected is None


def test_verified_example_records_status_and_diff(species_examples):
    llm = species_examples[2]
    same = verified_example(llm, Judgement("ann", None, None, list(llm.entities), list(llm.relations)), 5)
    assert same.review.status == "accepted" and same.review.task_id == 5 and same.review.annotator == "ann"
    fewer = verified_example(llm, Judgement("ann", None, None, list(llm.entities[:1]), []), 5)
    assert fewer.review.status == "corrected"
    assert {d["text"] for d in fewer.review.diff["entities_removed"]} == {"worms", "insect larvae", "small fish", "Lake Xochimilco"}
    assert len(fewer.review.diff["relations_removed"]) == 4
    rejected = verified_example(llm, Judgement("ann", None, "Reject: unusable", [], []), 5)
    assert rejected.review.status == "rejected" and rejected.entities == llm.entities  # the LLM's annotation is kept
