"""The LLM-vs-human correctness report and inter-annotator agreement."""

import pytest

from distill_ner.annotators.correctness import Judgement, agreement, correctness_report, report_markdown
from distill_ner.data.example import Entity, Review
from tests.fixtures.examples import make_example


def _reviewed(example, status, entities=None, relations=None):
    update = {"review": Review(status=status)}
    if entities is not None:
        update |= {"entities": entities, "relations": relations or []}
    return example.model_copy(update=update)


def test_precision_recall_f1_per_label(species_examples):
    llm = species_examples[:3]
    human = [
        _reviewed(llm[0], "accepted"),
        # humans removed the LLM's 2nd SPECIES (a false positive) and its relation
        _reviewed(llm[1], "corrected", [llm[1].entities[0], *llm[1].entities[2:]], []),
        _reviewed(llm[2], "rejected"),  # left out of P/R/F1
    ]
    report = correctness_report(llm, human)
    assert report["examples"] == {"reviewed": 3, "compared": 2, "accepted": 1, "corrected": 1, "rejected": 1, "rejection_rate": pytest.approx(0.3333)}
    species = report["entities"]["per_label"]["SPECIES"]
    assert species["precision"] == pytest.approx(2 / 3, abs=1e-4) and species["recall"] == 1.0
    assert report["entities"]["per_label"]["HABITAT"]["f1"] == 1.0
    rel = report["relations"]["micro"]
    assert rel["precision"] == pytest.approx(2 / 4) and rel["recall"] == 1.0
    table = report_markdown(report)
    assert "| entities | SPECIES | 0.667 | 1.000 | 0.800 | 2 |" in table
    assert "1 rejected" in table


def test_changes_are_counted_by_llm_sample_agreement(species_examples):
    def confident(example, value):
        return example.model_copy(update={"source": example.source.model_copy(update={"confidence": value})})

    llm = [confident(species_examples[0], 1.0), confident(species_examples[1], 1.0), confident(species_examples[2], 0.67), species_examples[3]]
    human = [_reviewed(llm[0], "accepted"), _reviewed(llm[1], "rejected"), _reviewed(llm[2], "corrected", llm[2].entities[:1]), _reviewed(llm[3], "corrected", [])]
    report = correctness_report(llm, human)
    assert report["by_confidence"] == {"samples agree": {"texts": 2, "changed": 1, "changed_share": 0.5},
                                       "samples disagree": {"texts": 1, "changed": 1, "changed_share": 1.0}}  # the 4th has no confidence
    assert "changed (corrected or rejected) 100% of the 1 texts on which the LLM's samples disagreed, and 50% of the 2" in report_markdown(report)


def test_missed_entities_lower_recall():
    llm = make_example("Snow leopards hunt blue sheep.", [("Snow leopards", "SPECIES")])
    human = _reviewed(llm, "corrected", [*llm.entities, Entity(start=19, end=29, label="FEEDING")])
    report = correctness_report([llm], [human])
    assert report["entities"]["per_label"]["FEEDING"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1, "predicted": 0}
    assert report["entities"]["micro"]["recall"] == 0.5


def _j(name, spans, rejected=None):
    return Judgement(name, None, rejected, [Entity(start=s, end=e, label=lab) for s, e, lab in spans], [])


def test_agreement_span_f1_and_kappa():
    per_task = {
        1: [_j("a", [(0, 3, "SPECIES"), (5, 9, "HABITAT")]), _j("b", [(0, 3, "SPECIES")])],
        2: [_j("a", [], "Reject: unusable"), _j("b", [], "Reject: unusable")],
        3: [_j("a", [(0, 3, "SPECIES")]), _j("b", [], "Reject: factually wrong")],
        4: [_j("a", [(1, 2, "SPECIES")])],  # one annotator: not counted
        5: [_j("a", [(0, 3, "SPECIES")]), _j("b", [(0, 3, "SPECIES")])],
    }
    result = agreement(per_task)
    assert result["tasks_with_several_annotators"] == 4
    pair = result["pairs"]["a / b"]
    assert pair["tasks"] == 4
    assert pair["span_f1"] == pytest.approx(0.8)  # tp 2, fp 1, fn 0 over tasks 1 and 5
    assert pair["kappa_reject"] == pytest.approx(0.5)  # a: keep,rej,keep,keep  b: keep,rej,rej,keep
    assert agreement({})["span_f1"] is None
