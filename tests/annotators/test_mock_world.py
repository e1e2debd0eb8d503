"""The mock LLM's harder world: every text shape and error kind occurs, at the rates the knobs say,
and the gold follows one span convention (annotators/mock_world.py)."""

import json
import random
from collections import Counter

import pytest

from distill_ner.annotators.generate import generate_schema
from distill_ner.annotators.grounding import ground
from distill_ner.annotators.mock_llm import MockConfig, MockLLM
from distill_ner.annotators.mock_world import (
    ERROR_KINDS,
    SHAPES,
    FactTable,
    answer_item,
    convention_problems,
    draft_to_example,
    gerund,
    with_errors,
    write_example,
)
from distill_ner.data.example import Source

LABELS = ["BREEDING", "FEEDING", "HABITAT", "SPECIES"]


@pytest.fixture(scope="module")
def table():
    return FactTable()


@pytest.fixture(scope="module")
def written(table):
    rng = random.Random(0)
    return [write_example(table.lookup(None, rng), table, rng) for _ in range(300)]


def test_every_shape_occurs_and_the_gold_keeps_one_convention(written):
    shapes = Counter(s for w in written for s in w.draft.shapes)
    assert set(shapes) == set(SHAPES), f"shapes that never occur: {set(SHAPES) - set(shapes)}"
    for w in written:
        example = draft_to_example(w.draft, Source())
        assert convention_problems(example) == [], w.draft.text  # no leading preposition or article, no trailing punctuation
        assert any(e.label == "SPECIES" for e in example.entities)
    # the hard parts are there: long breeding phrases, lists, texts without some entity types, decoys
    breeding = [len(w.draft.surface(i).split()) for w in written for i, s in enumerate(w.draft.spans) if s[2] == "BREEDING"]
    assert max(breeding) <= 32 and sum(10 <= b <= 30 for b in breeding) > 0.4 * len(breeding)
    assert sum(sum(s[2] == "HABITAT" for s in w.draft.spans) >= 3 for w in written) > 0.05 * len(written)
    assert sum({s[2] for s in w.draft.spans} == {"SPECIES"} for w in written) > 0.03 * len(written)
    assert sum(bool(w.draft.decoys) for w in written) > 0.2 * len(written)
    for w in written:  # a decoy (negated fact, zoo, predator) is never a fact of the subject
        related = {w.draft.spans[t][:2] for _, t, _ in w.draft.relations}
        assert not any(d[:2] in related for d in w.draft.decoys)
    # other species are SPECIES mentions without relations
    assert any(len([s for s in w.draft.spans if s[2] == "SPECIES"]) >= 3 for w in written)


def test_about_a_quarter_of_the_texts_are_factually_wrong(written, table):
    share = sum("factually_wrong" in w.errors for w in written) / len(written)
    assert 0.18 < share < 0.32
    assert all(w.notes for w in written if w.errors)  # the truth says what is wrong
    assert any("unusable" in w.errors for w in written)
    rng = random.Random(1)
    none = [write_example(table.lookup(None, rng), table, rng, factual_error_rate=0.0, unusable_rate=0.0) for _ in range(100)]
    assert not any(w.errors for w in none)
    many = [write_example(table.lookup(None, rng), table, rng, factual_error_rate=0.8) for _ in range(100)]
    assert sum("factually_wrong" in w.errors for w in many) > 65


def test_every_error_kind_occurs_and_the_rate_is_a_knob(written):
    rng = random.Random(2)
    kinds, shown_count = Counter(), 0
    for w in written:
        shown, errors = with_errors(w.draft, LABELS, ERROR_KINDS, 1.0, 3, rng)
        kinds.update(errors)
        shown_count += bool(errors)
        assert (shown.spans, shown.relations) != (w.draft.spans, w.draft.relations) or errors == ["trailing_punctuation"] or not errors
    assert set(kinds) == set(ERROR_KINDS), f"error kinds that never occur: {set(ERROR_KINDS) - set(kinds)}"
    assert shown_count > 0.95 * len(written)
    default = sum(bool(with_errors(w.draft, LABELS, ERROR_KINDS, 0.25, 3, rng)[1]) for w in written) / len(written)
    assert 0.17 < default < 0.33
    assert not any(with_errors(w.draft, LABELS, ERROR_KINDS, 0.0, 3, rng)[1] for w in written)
    only = {with_errors(w.draft, LABELS, ("merged_list",), 1.0, 1, rng)[1] and "m" or "" for w in written}
    assert only <= {"m", ""}


def test_drift_shows_in_the_answer_and_leaves_the_gold_alone(written, species_spec):
    rng = random.Random(3)
    seen = Counter()
    for w in written:
        for kind in ("leading_preposition", "merged_list", "split_list", "partial_name"):
            shown, errors = with_errors(w.draft, LABELS, (kind,), 1.0, 1, rng)
            if not errors:
                continue
            seen[kind] += 1
            grounded = ground(answer_item(shown), species_spec)
            gold = draft_to_example(w.draft, Source())
            assert {(e.start, e.end, e.label) for e in grounded.entities} != {(e.start, e.end, e.label) for e in gold.entities}
            if kind == "leading_preposition":
                assert convention_problems(grounded)  # "in the lakes of ...": the reviewer has something to fix
    assert all(seen[k] >= 5 for k in ("leading_preposition", "merged_list", "split_list", "partial_name")), seen


def test_the_axolotl_sentence_of_the_issue_is_written(table):
    rng = random.Random(4)
    sp = table.lookup("Axolotl (Ambystoma mexicanum)", rng)
    sentence = "The Axolotl or Ambystoma mexicanum live in the lakes of Xochimilco"
    hits = [w.draft for w in (write_example(sp, table, rng) for _ in range(200)) if w.draft.text.startswith(sentence)]
    assert hits
    example = draft_to_example(hits[0], Source())
    spans = {(example.span(e), e.label) for e in example.entities}
    assert {("Axolotl", "SPECIES"), ("Ambystoma mexicanum", "SPECIES"), ("lakes of Xochimilco", "HABITAT")} <= spans


def test_the_server_is_deterministic_and_records_the_truth(species_spec, tmp_path):
    def answers(seed, path):
        mock = MockLLM(MockConfig(seed=seed, truth_file=path))
        payload = {"model": "m", "messages": [{"role": "user", "content": species_spec.render("generate", topic="Axolotl (Ambystoma mexicanum)", n=20)}],
                   "response_format": {"type": "json_schema", "json_schema": {"name": "a", "schema": generate_schema(species_spec)}}}
        out = mock.answer(payload, random.Random(seed))
        mock.close()
        return out, mock

    a, mock = answers(1, tmp_path / "a.jsonl")
    b, _ = answers(1, tmp_path / "b.jsonl")
    assert a == b and (tmp_path / "a.jsonl").read_text() == (tmp_path / "b.jsonl").read_text()
    lines = [json.loads(line) for line in (tmp_path / "a.jsonl").read_text().splitlines()]
    assert all("errors" in line and line.get("shapes") for line in lines)
    assert all(record.rejected == bool({"factually_wrong", "unusable"} & set(record.errors)) for record in mock.truth.values())


def _fact_spans(w):
    return [(w.draft.surface(i), s[2]) for i, s in enumerate(w.draft.spans) if s[2] != "SPECIES"]


def test_most_test_facts_were_never_seen_in_training(written):
    """Facts are composed from parts: a model cannot learn the test split's phrases by heart."""
    train, test = written[:240], written[240:]
    seen = {x for w in train for x in _fact_spans(w)}
    facts = [x for w in test for x in _fact_spans(w)]
    unseen = Counter(label for x, label in facts if (x, label) not in seen)
    total = Counter(label for _, label in facts)
    assert sum(unseen.values()) > 0.6 * len(facts), (unseen, total)
    assert all(unseen[label] > 0.45 * total[label] for label in ("HABITAT", "FEEDING", "BREEDING")), (unseen, total)


def test_composed_facts_keep_their_base_and_fit_together(table):
    rng = random.Random(5)
    sp = table.lookup("Amur leopard (Panthera pardus orientalis)", rng)
    out = [table.compose(sp, "habitat", "temperate forests", rng) for _ in range(300)]
    assert all("temperate forests" in x for x in out)
    assert sum(x != "temperate forests" for x in out) > 0.5 * len(out)  # modifiers and places
    assert any(x.endswith("of the Russian Far East") for x in out)  # the species' own region
    cold = [table.compose(table.lookup("Vaquita (Phocoena sinus)", rng), "habitat", "cold polar waters", rng) for _ in range(300)]
    assert sum(x != "cold polar waters" for x in cold) > 0.5 * len(cold)
    assert not any(w in x for x in cold for w in ("warm", "tropic", "cool"))  # no clash with "cold"
    assert table.compose(sp, "habitat", "the Russian Far East", rng) == "the Russian Far East"  # a proper name stays as it is
    foods = {table.compose(sp, "food", "the ripe fruit of fig trees", rng) for _ in range(50)}
    assert all(f.startswith("the ") and f.endswith("ripe fruit of fig trees") for f in foods)  # a modifier goes after the article
    # a factually wrong text is wrong by its base: a phrase from another ecotype's table
    wrong = [w for w in (write_example(sp, table, random.Random(k), factual_error_rate=1.0) for k in range(40)) if "factually_wrong" in w.errors]
    assert wrong and all(w.notes for w in wrong)
    for w in wrong:
        kind, _, rest = w.notes[0].partition(": ")
        if kind in ("habitat", "food", "breeding"):
            base = rest.split("'")[1] if rest.startswith("'") else rest.split('"')[1]
            assert base not in table.facts(sp, kind) and (base in w.draft.text or gerund(base) in w.draft.text)


def test_writing_is_deterministic_per_seed(table):
    def texts(seed):
        rng = random.Random(seed)
        return [(w.draft.text, w.draft.spans, w.draft.relations, w.errors) for w in (write_example(table.lookup(None, rng), table, rng) for _ in range(30))]

    assert texts(8) == texts(8)
    assert texts(8) != texts(9)
