"""The simulated annotator: accuracy, several users, no redone work (real Label Studio server)."""

import json

import pytest

from annotators.label_studio import client, ensure_project, pull, push
from annotators.simulate import load_truth, simulate_review
from annotators.truth import TruthRecord
from data.errors import DistillError
from tests.fixtures.examples import make_example

pytestmark = pytest.mark.slow


def _examples(n):
    truth = [make_example(f"Frog {i} eats beetle {i} in pond {i}.", [(f"Frog {i}", "SPECIES"), (f"beetle {i}", "FEEDING"), (f"pond {i}", "HABITAT")], [(0, 1, "feed_on"), (0, 2, "live_in")], model="m") for i in range(n)]
    llm = [t.model_copy(update={"entities": t.entities[:2], "relations": t.relations[:1]}) for t in truth]  # every one misses its pond
    return truth, llm


def test_accuracy_controls_how_many_errors_are_fixed(label_studio, species_spec):
    ls = client(label_studio.connection)
    truth, llm = _examples(30)
    records = {t.text: TruthRecord(example=t) for t in truth}
    perfect = ensure_project(ls, species_spec, "sim perfect")
    push(ls, perfect, llm, species_spec)
    done = simulate_review(ls, perfect, records, accuracy=1.0)
    assert done.decisions == {"corrected": 30} and done.per_annotator == {"annotator-1": 30}
    assert all(e.review.status == "corrected" and e.entities == t.entities for e, t in zip(sorted(pull(ls, perfect, species_spec, llm).verified, key=lambda e: e.text), sorted(truth, key=lambda e: e.text)))
    assert simulate_review(ls, perfect, records, accuracy=1.0).annotations == 0  # nothing left to do

    sloppy = ensure_project(ls, species_spec, "sim sloppy")
    push(ls, sloppy, llm, species_spec)
    done = simulate_review(ls, sloppy, records, accuracy=0.5, annotators=["x", "y", "z"], seed=3, limit=20)
    assert done.tasks == 20 and sum(done.per_annotator.values()) == 20 and set(done.per_annotator) == {"x", "y", "z"}
    assert 4 <= done.decisions["corrected"] <= 16 and done.decisions["corrected"] + done.decisions["accepted"] == 20
    result = pull(ls, sloppy, species_spec, llm)
    assert len(result.pending) == 10 and {e.review.annotator for e in result.verified} == {"x@distill.local", "y@distill.local", "z@distill.local"}


def test_truth_file_and_bad_settings(tmp_path, species_examples):
    line = {**json.loads(species_examples[0].model_dump_json()), "errors": ["unusable"]}
    (tmp_path / "truth.jsonl").write_text(json.dumps(line) + "\n")
    records = load_truth(tmp_path / "truth.jsonl")
    assert records[species_examples[0].text].errors == ["unusable"]
    with pytest.raises(DistillError, match="accuracy"):
        simulate_review(None, 1, records, accuracy=1.5)
    with pytest.raises(DistillError, match="per task"):
        simulate_review(None, 1, records, annotators=["a"], per_task=2)


def _mock_world(species_spec, n=40):
    """LLM examples and truth from the mock's harder world: many annotation errors, a third of the texts factually wrong."""
    import random

    from annotators.generate import generate_schema
    from annotators.grounding import GroundingError, ground
    from annotators.mock_llm import MockConfig, MockLLM

    mock = MockLLM(MockConfig(seed=11, error_rate=0.9, factual_error_rate=0.3))
    payload = {"model": "m", "messages": [{"role": "user", "content": ""}],
               "response_format": {"type": "json_schema", "json_schema": {"name": "a", "schema": generate_schema(species_spec)}}}
    llm = []
    for t in species_spec.topic_list[: n // 10]:
        payload["messages"][0]["content"] = species_spec.render("generate", topic=t, n=10)
        for item in json.loads(mock.answer(payload, random.Random(t)))["examples"]:
            try:
                llm.append(ground(item, species_spec))
            except GroundingError:  # a reversed relation: the pipeline drops it before review
                pass
    return llm, mock.truth


def test_a_careful_annotator_rejects_wrong_texts_and_fixes_convention_drift(label_studio, species_spec):
    from annotators.mock_world import convention_problems

    ls = client(label_studio.connection)
    llm, truth = _mock_world(species_spec)
    wrong = {e.text for e in llm if truth[e.text].rejected}
    drifted = {e.text for e in llm if convention_problems(e) and not truth[e.text].rejected}
    assert wrong and drifted  # there is something to reject and something to fix
    project = ensure_project(ls, species_spec, "sim careful")
    push(ls, project, llm, species_spec)
    done = simulate_review(ls, project, truth, accuracy=1.0)
    assert done.decisions["rejected"] == len(wrong) and done.decisions["corrected"] >= len(drifted)
    verified = {e.text: e for e in pull(ls, project, species_spec, llm).verified}
    assert {t for t, e in verified.items() if e.review.status == "rejected"} == wrong
    for text, e in verified.items():
        if text in wrong:
            continue
        gold = truth[text].example
        assert [(x.start, x.end, x.label) for x in e.entities] == [(x.start, x.end, x.label) for x in gold.entities]
        assert {(r.head, r.tail, r.label) for r in e.relations} == {(r.head, r.tail, r.label) for r in gold.relations}
        assert convention_problems(e) == []  # no "in the ...", no "by laying ..." left
    assert all(verified[t].review.status == "corrected" for t in drifted)

    sloppy = ensure_project(ls, species_spec, "sim careless")
    push(ls, sloppy, llm, species_spec)
    careless = simulate_review(ls, sloppy, truth, accuracy=0.5, seed=2)
    assert careless.decisions["rejected"] < len(wrong) and careless.decisions["accepted"] > 0  # accuracy 0.5: some wrong texts and some drift slip through
