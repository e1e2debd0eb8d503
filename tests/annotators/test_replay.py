import asyncio
import json
import random

import httpx
import pytest

from distill_ner.annotators.generate import item_schema
from distill_ner.annotators.grounding import GroundingRules, ground
from distill_ner.annotators.llm import LLMClient, LLMConfig
from distill_ner.annotators.mock_llm import MockConfig, MockLLMServer
from distill_ner.annotators.mock_world import FactTable, draft_to_example, write_example
from distill_ner.annotators.replay import KINDS, ReplayErrors, ReplayGold, replay_answer, replay_f1, replay_truth
from distill_ner.annotators.truth import load_truth_records, review_example
from distill_ner.data.errors import DistillError
from distill_ner.data.example import Source
from distill_ner.data.formats import write_conll, write_jsonl
from distill_ner.data.words import tokenize

NO_ERRORS = {"replay_drift": 0.0, "replay_missed": 0.0, "replay_mislabelled": 0.0, "replay_invented": 0.0}
RULES = GroundingRules(min_entities=0, few_shot_similarity=1.0)
_http = httpx.Client(timeout=10)


@pytest.fixture(scope="module")
def gold():
    """Gold examples of the species world (with relations), as a user's verified file would hold them."""
    table, rng = FactTable(), random.Random(11)
    out, seen = [], set()
    while len(out) < 120:
        written = write_example(rng.choice(table.species), table, rng, 0.0, 0.0)
        if written.draft.text not in seen:
            seen.add(written.draft.text)
            out.append(draft_to_example(written.draft, Source(origin="jsonl:gold.jsonl")))
    return out


@pytest.fixture
def gold_files(gold, tmp_path):
    return write_jsonl(tmp_path / "gold.jsonl", gold), write_conll(tmp_path / "gold.conll", gold[:30], drop_relations=True)


def annotate_body(spec, text, seed=0, schema=None, labels=None):
    schema = schema or item_schema(spec)
    if labels is not None:
        schema = json.loads(json.dumps(schema))
        schema["properties"]["entities"]["items"]["properties"]["label"]["enum"] = labels
    messages = [{"role": "system", "content": spec.render("system")}, {"role": "user", "content": spec.render("annotate", text=text)}]
    return {"model": "mock-species", "messages": messages, "seed": seed, "temperature": 0.7, "response_format": {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema}}}


def ask(server, spec, text, **kw):
    response = _http.post(f"{server.base_url}/chat/completions", json=annotate_body(spec, text, **kw))
    assert response.status_code == 200, response.text
    return json.loads(response.json()["choices"][0]["message"]["content"])


def spans(example):
    return {(e.start, e.end, e.label) for e in example.entities}


def grounded(answer, text, spec):
    return ground({**answer, "text": text}, spec, rules=RULES)


def test_default_rates_score_like_a_good_llm(gold):
    assert replay_f1(gold, n=None, errors=ReplayErrors(**{k: 0.0 for k in ReplayErrors.model_fields}))["f1"] == 1.0
    scores = replay_f1(gold, n=None)
    assert 0.72 <= scores["f1"] <= 0.88 and scores["ungrounded"] == 0
    assert replay_f1(gold, n=None, errors=ReplayErrors(missed=0.4))["recall"] < 0.7
    with pytest.raises(ValueError, match="at most 1"):
        ReplayErrors(drift=0.5, missed=0.4, mislabelled=0.2)


def test_replays_the_gold_and_k_samples_disagree_where_errors_fall(mock_llm_factory, gold_files, gold, species_spec):
    server = mock_llm_factory(replay=gold_files[0], seed=3)
    texts = [ex.text for ex in gold[:30]]
    samples = {text: [grounded(ask(server, species_spec, text, seed=s), text, species_spec) for s in range(4)] for text in texts}
    truth = {ex.text: spans(ex) for ex in gold}
    exact = [spans(x) == truth[text] for text in texts for x in samples[text]]
    assert 0.3 < sum(exact) / len(exact) < 0.95  # most answers right, errors in some
    disagree = [text for text in texts if len({frozenset(spans(x)) for x in samples[text]}) > 1]
    assert len(disagree) >= 5  # each sample draws its own errors
    # where they disagree, it is about spans the gold has or does not have, not random noise
    for text in disagree:
        common = set.intersection(*(spans(x) for x in samples[text]))
        assert common <= truth[text] or len(common - truth[text]) <= 1
    assert ask(server, species_spec, texts[0], seed=2) == ask(server, species_spec, texts[0], seed=2)  # deterministic for a request
    assert server.stats.annotated["replay"] == 4 * 30 + 2
    # without errors the answer is the gold, relations included
    clean = mock_llm_factory(replay=gold_files[0], **NO_ERRORS)
    for ex in gold[:30]:
        answer = grounded(ask(clean, species_spec, ex.text, seed=5), ex.text, species_spec)
        assert answer.model_dump(include={"entities", "relations"}) == ex.model_dump(include={"entities", "relations"})


def test_the_truth_file_holds_the_gold_and_the_reviewer_corrects_to_it(mock_llm_factory, gold_files, gold, species_spec, tmp_path):
    server = mock_llm_factory(replay=gold_files[0], seed=1, replay_missed=0.3, replay_drift=0.2)
    for ex in gold[:20]:
        for s in range(3):
            ask(server, species_spec, ex.text, seed=s)
    lines = server.mock.config.truth_file.read_text().splitlines()
    assert len(lines) == 20  # once per text, however many samples
    records = load_truth_records(server.mock.config.truth_file)
    assert all(r.example.source.origin == "replay" for r in records.values())
    assert any(r.errors for r in records.values()) and all(set(r.errors) <= set(KINDS.values()) for r in records.values())
    for ex in gold[:20]:
        record = records[ex.text]
        assert spans(record.example) == spans(ex) and record.example.relations == ex.relations
        llm = grounded(ask(server, species_spec, ex.text, seed=0), ex.text, species_spec)
        decision, reviewed = review_example(record, llm, "annotator-1", 1.0, 0.0, random.Random(0))
        assert decision == "reviewed" and spans(reviewed) == spans(ex)
    # the same records without a server, for benches
    plain = replay_truth(gold_files[0], [ex.text for ex in gold[:20]] + ["A text the gold does not hold."])
    assert set(plain) == {ex.text for ex in gold[:20]}
    assert all(spans(plain[t].example) == spans(records[t].example) and plain[t].errors == [] for t in plain)


def test_windows_pieces_and_other_texts(mock_llm_factory, gold_files, gold, species_spec):
    server = mock_llm_factory(replay=gold_files[0], **NO_ERRORS)
    a, b = gold[0], gold[1]
    window = f"{a.text}\n{b.text}"  # a window of two gold texts: the union of their gold, shifted
    answer = grounded(ask(server, species_spec, window), window, species_spec)
    shift = len(a.text) + 1
    expected = spans(a) | {(s + shift, e + shift, lab) for s, e, lab in spans(b)}
    assert spans(answer) == expected and len(answer.relations) == len(a.relations) + len(b.relations)
    assert spans(server.truth[window].example) == expected
    # a piece of one gold text: the entities inside it
    long = max(gold, key=lambda ex: len(ex.entities))
    cut = long.entities[1].end
    piece = long.text[:cut]
    assert spans(grounded(ask(server, species_spec, piece), piece, species_spec)) == {x for x in spans(long) if x[1] <= cut}
    # a text the gold does not hold: a gazetteer of the gold's own surfaces, and no truth
    name = next(long.span(e) for e in long.entities if e.label == "SPECIES")
    other = f"Notes from the field.\nWe saw no {name} this year."
    answer = ask(server, species_spec, other)
    assert {"text": name, "label": "SPECIES"} in answer["entities"]
    assert other not in server.truth and server.stats.annotated["gazetteer"] == 1
    # only the labels the request names
    answer = ask(server, species_spec, a.text, labels=["SPECIES"])
    assert answer["entities"] and {e["label"] for e in answer["entities"]} == {"SPECIES"} and answer["relations"] == []
    assert ask(server, species_spec, b.text, labels=["Chemical"])["entities"] == []


def test_conll_gold_through_the_client_with_the_annotate_schema(mock_llm_factory, gold_files, gold, species_spec):
    server = mock_llm_factory(replay=gold_files[1])
    schema = json.loads(json.dumps(item_schema(species_spec)))
    del schema["properties"]["text"]
    schema["required"].remove("text")

    async def annotate(text):
        async with LLMClient(LLMConfig(base_url=server.base_url, model="mock-species", backoff_initial=0.01)) as llm:
            messages = [{"role": "system", "content": "sys"}, {"role": "user", "content": species_spec.render("annotate", text=text)}]
            return [(await llm.complete_json(messages, schema, seed=s)).value for s in range(1, 4)]

    texts = [ex.text for ex in gold[:10]]
    answers = {text: asyncio.run(annotate(text)) for text in texts}
    assert all("text" not in a for values in answers.values() for a in values)  # the schema has no text
    found = [spans(grounded(a, text, species_spec)) for text, values in answers.items() for a in values]
    truth = [spans(ex) for ex in gold[:10] for _ in range(3)]
    assert len(found) // 3 <= sum(f == t for f, t in zip(found, truth)) < len(found)
    assert server.stats.annotated["replay"] == 30


def test_loading_errors_are_one_line(tmp_path, capsys):
    from distill_ner.flows.cli import main

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "x", "entities": [{"start": 0, "end": 9, "label": "A"}]}\n')
    garbage = tmp_path / "gold.spacy"
    garbage.write_bytes(b"\x00\x01 not a DocBin")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    cases = {tmp_path / "missing.jsonl": "not found", bad: "bad.jsonl:1", garbage: "cannot read it", empty: "no examples", tmp_path / "gold.txt": "unknown format"}
    for path, message in cases.items():
        if path.suffix == ".txt":
            path.write_text("x")
        with pytest.raises(DistillError, match=message) as err:
            MockLLMServer(MockConfig(replay=path, truth_file=tmp_path / "t.jsonl"))
        assert "\n" not in str(err.value)
    with pytest.raises(SystemExit) as exit_:
        main(["mock-llm", "--port", "0", "--replay", str(garbage), "--truth-file", str(tmp_path / "t.jsonl")])
    assert exit_.value.code == 1
    err = capsys.readouterr().err
    assert "cannot read it" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    with pytest.raises(SystemExit):
        main(["mock-llm", "--port", "0", "--replay", str(bad), "--replay-drift", "0.8", "--replay-missed", "0.5"])
    assert "at most 1" in capsys.readouterr().err


def test_replay_answer_drift_and_invention_stay_inside_the_text(gold, species_spec):
    lookup = ReplayGold(gold)
    drifted = invented = 0
    for k, ex in enumerate(gold):
        assert spans(lookup.lookup(ex.text)) == spans(ex)
        answer, kinds = replay_answer(ex, None, None, ReplayErrors(drift=1.0, missed=0.0, mislabelled=0.0, invented=1.0), random.Random(k))
        example = ground({**answer, "text": ex.text}, species_spec, rules=RULES)  # grounds: every mention is in the text, none overlap
        drifted += kinds.count("boundary")
        invented += kinds.count("invented_entity")
        truth = spans(ex)
        for s, e, label in spans(example) - truth:  # a gold span one word longer or shorter at one end, or an invented one
            one_off = [
                (gs, ge) for gs, ge, gl in truth if gl == label and (gs == s) != (ge == e)
                and len(tokenize(ex.text, min(s, gs), max(s, gs))) + len(tokenize(ex.text, min(e, ge), max(e, ge))) == 1
            ]
            assert one_off or all(e <= gs or s >= ge for gs, ge, _ in truth), (ex.text[s:e], label)
    assert drifted > len(gold) and invented > 0.8 * len(gold)


def test_a_short_gold_text_at_the_end_of_a_window_is_found():
    """Real corpora hold very short sentences ("Fig. 2.", "It is."); one at the end of a window,
    shorter than other short gold texts, was looked up past the window's end (IndexError)."""
    from tests.fixtures.examples import make_example

    short, other = make_example("Elk roam.", [("Elk", "SPECIES")]), make_example("Cats purr.", [("Cats", "SPECIES")])
    long = make_example("The snow leopard lives in the high mountains of Central Asia today.", [("snow leopard", "SPECIES")])
    replay = ReplayGold([short, other, long])
    found = replay.lookup(f"{long.text} {short.text}")
    assert found is not None and [found.span(e) for e in found.entities] == ["snow leopard", "Elk"]
