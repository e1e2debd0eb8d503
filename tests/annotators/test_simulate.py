"""The simulated annotator: accuracy, several users, no redone work (real Label Studio server)."""

import hashlib
import importlib.util
import json
import random
import re
from collections import Counter
from pathlib import Path

import pytest

from distill_ner.annotators.label_studio import client, ensure_project, pull, push
from distill_ner.annotators.simulate import load_truth, simulate_review
from distill_ner.annotators.truth import TruthRecord, drifted_example, review_example
from distill_ner.data.errors import DistillError
from tests.fixtures.examples import make_example

REPO = Path(__file__).resolve().parents[2]


def _examples(n):
    truth = [make_example(f"Frog {i} eats beetle {i} in pond {i}.", [(f"Frog {i}", "SPECIES"), (f"beetle {i}", "FEEDING"), (f"pond {i}", "HABITAT")], [(0, 1, "feed_on"), (0, 2, "live_in")], model="m") for i in range(n)]
    llm = [t.model_copy(update={"entities": t.entities[:2], "relations": t.relations[:1]}) for t in truth]  # every one misses its pond
    return truth, llm


@pytest.mark.slow
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


@pytest.mark.slow
def test_blind_tasks_go_without_the_llms_answer_and_are_labelled_from_scratch(label_studio, species_spec):
    ls = client(label_studio.connection)
    truth, llm = _examples(20)
    records = {t.text: TruthRecord(example=t) for t in truth}
    blind = {e.id for e in llm[:10]}
    project = ensure_project(ls, species_spec, "sim blind")
    push(ls, project, llm, species_spec, blind=blind)
    tasks = list(ls.tasks.list(project=project, fields="all"))
    assert sorted(t.data["example_id"] for t in tasks if not t.predictions) == sorted(blind)  # nothing to anchor on
    assert all(bool(t.data.get("blind")) == (t.data["example_id"] in blind) for t in tasks)
    done = simulate_review(ls, project, records, accuracy=0.5, seed=1)
    assert done.decisions["labelled"] == 10 and done.decisions["accepted"] >= 2  # a hurried reviewer waves an LLM answer through
    verified = {e.id: e for e in pull(ls, project, species_spec, llm).verified}
    assert {i for i, e in verified.items() if e.review.blind} == blind
    by_text = {t.text: t for t in truth}
    assert all(verified[i].entities == by_text[verified[i].text].entities for i in blind)  # the pond the LLM missed is labelled every time


def test_truth_file_and_bad_settings(tmp_path, species_examples):
    line = {**json.loads(species_examples[0].model_dump_json()), "errors": ["unusable"]}
    (tmp_path / "truth.jsonl").write_text(json.dumps(line) + "\n")
    records = load_truth(tmp_path / "truth.jsonl")
    assert records[species_examples[0].text].errors == ["unusable"]
    with pytest.raises(DistillError, match="accuracy"):
        simulate_review(None, 1, records, accuracy=1.5)
    with pytest.raises(DistillError, match="per task"):
        simulate_review(None, 1, records, annotators=["a"], per_task=2)
    with pytest.raises(DistillError, match="drift"):
        simulate_review(None, 1, records, convention_drift=-0.1)


def _mock_world(species_spec, n=40):
    """LLM examples and truth from the mock's harder world: many annotation errors, a third of the texts factually wrong."""
    import random

    from distill_ner.annotators.generate import generate_schema
    from distill_ner.annotators.grounding import GroundingError, ground
    from distill_ner.annotators.mock_llm import MockConfig, MockLLM

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


@pytest.mark.slow
def test_a_careful_annotator_rejects_wrong_texts_and_fixes_convention_drift(label_studio, species_spec):
    from distill_ner.annotators.mock_world import convention_problems

    ls = client(label_studio.connection)
    llm, truth = _mock_world(species_spec)
    wrong = {e.text for e in llm if truth[e.text].rejected}
    drifted = {e.text for e in llm if convention_problems(e) and not truth[e.text].rejected}
    assert wrong and drifted  # there is something to reject and something to fix
    project = ensure_project(ls, species_spec, "sim careful")
    push(ls, project, llm, species_spec)
    done = simulate_review(ls, project, truth, accuracy=1.0, convention_drift=0.0)
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
    careless = simulate_review(ls, sloppy, truth, accuracy=0.5, seed=2, convention_drift=0.3, annotators=["annotator-1", "annotator-2"])
    assert careless.decisions["rejected"] < len(wrong) and careless.decisions["accepted"] > 0  # accuracy 0.5: some wrong texts and some drift slip through


# --- convention drift: what a reviewer submits (annotators.truth.review_example) ------------------
LEAD = re.compile(r"^(?:(?:in|on|by|at|of|to|from|across|the|a|an|its|and|or)\s+)+", re.IGNORECASE)


def _key(e):
    return (e.start, e.end, e.label)


def _overlap(a, b):
    return a.start < b.end and b.start < a.end and a.label == b.label


def _convention_variant(text, submitted, truth_entities):
    """`submitted` differs from a truth entity only by convention: a leading preposition or article,
    trailing punctuation, a list merged or a fact split at a separator, or a core without its
    attached place, timing or detail."""
    s = text[submitted.start : submitted.end]
    same_label = [t for t in truth_entities if t.label == submitted.label]
    bare = LEAD.sub("", s).rstrip(".,;:)")
    if any(bare == text[t.start : t.end] and submitted.end - t.end <= 1 for t in same_label):
        return "lead_or_trail"
    covered = [t for t in same_label if submitted.start <= t.start and t.end <= submitted.end]
    if len(covered) >= 2 and covered[0].start == submitted.start and covered[-1].end == submitted.end:
        return "merged"
    inside = [t for t in same_label if t.start <= submitted.start and submitted.end <= t.end]
    if inside:
        t = inside[0]
        rest_after, rest_before = text[submitted.end : t.end], text[t.start : submitted.start]
        if submitted.start == t.start and re.match(r"^(,\s|,? and |,? or | (of|in|across|along|near|below|above|at|on|off|around|close|within|with|far|fed|from|found|caught|gathered|among) )", rest_after):
            return "core_or_split"
        if submitted.end == t.end and re.search(r"(,\s*|,? and |,? or )$", rest_before):
            return "split"
    return None


def _reviewed(records, llm, annotator, drift, seed=0):
    out = {}
    for e in llm:
        record = records[e.text]
        digest = hashlib.sha1(f"{seed}\x00{annotator}\x00{e.text}".encode()).digest()
        out[e.text] = review_example(record, e, annotator, 1.0, drift, random.Random(digest))
    return out


@pytest.fixture(scope="module")
def mock_world(species_spec):
    return _mock_world(species_spec, n=120)


def test_drift_zero_submits_exactly_the_truth(mock_world):
    llm, truth = mock_world
    for decision, submitted in _reviewed(truth, llm, "annotator-1", 0.0).values():
        assert decision in ("reviewed", "rejected")
    for e in llm:
        decision, submitted = _reviewed(truth, [e], "annotator-2", 0.0)[e.text]
        if decision == "reviewed":
            gold = truth[e.text].example
            assert [_key(x) for x in submitted.entities] == [_key(x) for x in gold.entities]
            assert {(r.head, r.tail, r.label) for r in submitted.relations} == {(r.head, r.tail, r.label) for r in gold.relations}


def test_drift_gives_convention_variants_only_with_relations_intact(mock_world):
    llm, truth = mock_world
    kinds = Counter()
    for annotator in ("annotator-1", "annotator-2", "annotator-3"):
        changed = total = 0
        for text, (decision, submitted) in _reviewed(truth, llm, annotator, 0.4).items():
            if decision != "reviewed":
                continue
            gold = truth[text].example
            gold_keys = {_key(x) for x in gold.entities}
            total += len(gold.entities)
            for x in submitted.entities:
                assert any(_overlap(x, t) for t in gold.entities), (text, x)  # overlap F1 stays 1
                if _key(x) not in gold_keys:
                    changed += 1
                    kind = _convention_variant(text, x, gold.entities)
                    assert kind, f"{annotator}: {text[x.start:x.end]!r} is not a convention variant of the truth in {text!r}"
                    kinds[(annotator, kind)] += 1
            assert all(any(_overlap(t, x) for x in submitted.entities) for t in gold.entities)  # nothing dropped
            # every relation of the truth is still there, between the (drifted) entities that stand for its ends
            shown = {(r.label, submitted.entities[r.head], submitted.entities[r.tail]) for r in submitted.relations}
            for r in gold.relations:
                assert any(lab == r.label and _overlap(h, gold.entities[r.head]) and _overlap(t, gold.entities[r.tail]) for lab, h, t in shown), (text, r)
            for lab, h, t in shown:
                assert any(lab == r.label and _overlap(h, gold.entities[r.head]) and _overlap(t, gold.entities[r.tail]) for r in gold.relations), (text, lab)
            for r in gold.relations:  # both parts of a split fact keep the relation
                for x in submitted.entities:
                    if _overlap(x, gold.entities[r.tail]):
                        assert any(lab == r.label and t == x for lab, h, t in shown), (text, r, x)
        assert 0.03 * total < changed < 0.5 * total, (annotator, changed, total)
    assert any(k[1] == "merged" for k in kinds) and any(k[1] in ("split", "core_or_split") for k in kinds), kinds  # LLM list conventions kept


def test_each_reviewer_has_a_habit_of_their_own(mock_world):
    """Without an LLM answer to leave, what drifts is the reviewer's own habit: annotator-1 takes in
    a leading article, annotator-2 leaves out an attached place or detail, annotator-3 takes in the
    preposition."""
    llm, truth = mock_world
    records = [truth[e.text] for e in llm if not truth[e.text].rejected]
    for annotator, check in (
        ("annotator-1", lambda lead, cut: re.fullmatch(r"(?i)(the|a|an) ", lead) and not cut),
        ("annotator-2", lambda lead, cut: not lead and re.match(r"^(, | (of|in|across|along|near|below|above|at|on|off|around|close|within|with|far|fed|from|found|caught|gathered|among) )", cut)),
        ("annotator-3", lambda lead, cut: re.fullmatch(r"(?i)(in|on|by|across|from|at)( (the|a|an))? ", lead) and not cut),
    ):
        changed = 0
        for k, record in enumerate(records):
            gold = record.example
            submitted = drifted_example(gold, None, annotator, 0.5, random.Random(k))
            assert len(submitted.entities) == len(gold.entities) and len(submitted.relations) == len(gold.relations)
            for x, t in zip(submitted.entities, gold.entities, strict=True):
                if _key(x) != _key(t):
                    changed += 1
                    lead, cut = gold.text[x.start : t.start], gold.text[x.end : t.end]
                    assert x.label == t.label and check(lead, cut), (annotator, gold.text[x.start : x.end], gold.span(t))
        assert changed > 10, (annotator, changed)


def test_the_bench_reviews_as_the_simulated_annotator_does(mock_world):
    """`bench/mock_difficulty.reviewed_gold` and `simulate._decide` submit the same thing for each text."""
    from distill_ner.annotators.label_studio import to_result
    from distill_ner.annotators.simulate import _decide, _spans

    spec = importlib.util.spec_from_file_location("mock_difficulty", REPO / "bench" / "mock_difficulty.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    llm, truth = mock_world
    names = ("annotator-1", "annotator-2")
    gold, _ = bench.reviewed_gold(llm, truth, accuracy=0.8, convention_drift=0.3, annotators=names, seed=5)
    by_text = {g.text: g for g in gold}
    decisions = Counter()
    for n, e in enumerate(llm):
        name = names[n % len(names)]
        digest = hashlib.sha1(f"5\x00{name}\x00{e.text}".encode()).digest()
        decision, result = _decide(e.text, to_result(e), truth, 0.8, random.Random(digest), name, 0.3)
        decisions[decision] += 1
        if decision == "rejected":
            assert e.text not in by_text
        else:
            assert _spans(result) == _spans(to_result(by_text[e.text])), e.text
    assert decisions["rejected"] and decisions["corrected"] and decisions["accepted"]
    for g in gold:  # the gold examples are valid and reviewed by someone
        assert g.review.annotator in names
