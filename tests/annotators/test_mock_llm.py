import json

import httpx
import pytest

from distill_ner.annotators.generate import generate_schema, item_schema
from distill_ner.annotators.grounding import GroundingError, GroundingRules, ground
from distill_ner.annotators.mock_llm import ERROR_KINDS, TEXT_ERRORS, FactTable, MockConfig, MockLLM
from distill_ner.annotators.mock_world import convention_problems
from distill_ner.annotators.truth import load_truth, load_truth_records


def body(spec, topic="Olm (Proteus anguinus)", n=5, seed=0, fmt="json_schema"):
    messages = [{"role": "system", "content": spec.render("system")}, {"role": "user", "content": spec.render("generate", topic=topic, n=n)}]
    payload = {"model": "mock-species", "messages": messages, "seed": seed, "temperature": 0.7}
    if fmt == "json_schema":
        payload["response_format"] = {"type": "json_schema", "json_schema": {"name": "answer", "schema": generate_schema(spec)}}
    elif fmt == "json_object":
        payload["response_format"] = {"type": "json_object"}
    return payload


_http = httpx.Client(timeout=5)


def post(server, payload):
    return _http.post(f"{server.base_url}/chat/completions", json=payload)


def test_speaks_the_openai_api(mock_llm_server, species_spec):
    models = _http.get(f"{mock_llm_server.base_url}/models").json()
    assert models["data"][0]["id"] == "mock-species"
    response = post(mock_llm_server, body(species_spec))
    assert response.status_code == 200
    data = response.json()
    assert data["object"] == "chat.completion" and data["choices"][0]["finish_reason"] == "stop"
    assert data["usage"]["total_tokens"] == data["usage"]["prompt_tokens"] + data["usage"]["completion_tokens"] > 0
    examples = json.loads(data["choices"][0]["message"]["content"])["examples"]
    assert len(examples) == 5
    assert all("olm" in e["text"].lower() or "Proteus anguinus" in e["text"] or "human fish" in e["text"] for e in examples)


@pytest.mark.parametrize("fmt", ["json_schema", "json_object", "none"])
def test_deterministic_for_a_seed_in_every_response_format(mock_llm_factory, species_spec, fmt):
    a, b, c = mock_llm_factory(seed=1), mock_llm_factory(seed=1), mock_llm_factory(seed=2)
    answer = post(a, body(species_spec, fmt=fmt)).json()["choices"][0]["message"]["content"]
    assert answer == post(b, body(species_spec, fmt=fmt)).json()["choices"][0]["message"]["content"]
    assert answer != post(c, body(species_spec, fmt=fmt)).json()["choices"][0]["message"]["content"]
    assert answer != post(a, body(species_spec, fmt=fmt, seed=7)).json()["choices"][0]["message"]["content"]


def test_writes_varied_data_with_the_truth_behind_it(mock_llm_factory, species_spec):
    server = mock_llm_factory(seed=5)
    topics = species_spec.topic_list[::4]
    answers = [e for t in topics for e in json.loads(post(server, body(species_spec, topic=t)).json()["choices"][0]["message"]["content"])["examples"]]
    truth = load_truth(server.mock.config.truth_file)
    records = load_truth_records(server.mock.config.truth_file)
    assert len(truth) == len({a["text"] for a in answers}) >= 0.9 * len(answers)
    # truth offsets are right, and answers agree with the truth where no annotation error was injected
    agree = 0
    for answer in answers:
        example, errors = truth[answer["text"]], records[answer["text"]].errors
        assert all(example.span(e) in answer["text"] for e in example.entities)
        assert not convention_problems(example)  # the gold follows the one span convention
        annotation = [e for e in errors if e not in TEXT_ERRORS]
        if "reversed_relation" in annotation:  # a species -> habitat relation the wrong way round
            with pytest.raises(GroundingError, match="relation_not_allowed"):
                ground(answer, species_spec)
            continue
        same = ground(answer, species_spec).model_dump(include={"entities", "relations"}) == example.model_dump(include={"entities", "relations"})
        assert same == (not [e for e in annotation if e != "trailing_punctuation"])  # grounding strips trailing punctuation
        agree += not annotation
    error_share = 1 - agree / len(answers)
    assert 0.12 < error_share < 0.4  # about a quarter of the answers by default
    wrong_share = sum("factually_wrong" in r.errors for r in records.values()) / len(records)
    assert 0.12 < wrong_share < 0.4  # about a quarter of the texts, after the paper's 74% correct
    kinds = {k for r in records.values() for k in r.errors}
    assert kinds <= set(ERROR_KINDS) | set(TEXT_ERRORS) and len(kinds & set(ERROR_KINDS)) >= 8
    # variety: scientific names, several facts per text, many text shapes
    texts = [a["text"] for a in answers]
    names = [sp.sci for sp in FactTable().species]
    assert sum(any(f" {sci}" in t or t.startswith(sci) for sci in names) for t in texts) > 0.1 * len(texts)
    assert sum(len(truth[t].relations) >= 2 for t in texts) > 0.2 * len(texts)
    assert len({s for r in records.values() for s in r.shapes}) >= 12 and len({t.split()[0] for t in texts}) > 10


def test_answers_the_annotate_prompt_from_the_truth(mock_llm_factory, species_spec):
    server = mock_llm_factory(error_rate=0.0)
    text = json.loads(post(server, body(species_spec)).json()["choices"][0]["message"]["content"])["examples"][0]["text"]
    messages = [{"role": "system", "content": "sys"}, {"role": "user", "content": species_spec.render("annotate", text=text)}]
    fmt = {"type": "json_schema", "json_schema": {"name": "answer", "schema": item_schema(species_spec)}}
    item = json.loads(post(server, {"model": "m", "messages": messages, "response_format": fmt}).json()["choices"][0]["message"]["content"])
    truth = server.truth[text].example
    assert ground(item, species_spec).entities == truth.entities


def test_faults_and_labels_follow_the_knobs(mock_llm_factory, species_spec):
    server = mock_llm_factory(fault_rate=0.5, seed=3, delay_s=0.01)
    codes = [post(server, body(species_spec, seed=s)).status_code for s in range(60)]
    assert 429 in codes and 500 in codes and codes.count(200) < 55
    assert set(server.stats.faults) == {"rate_limit", "server_error", "delay", "malformed", "truncated"}
    server = mock_llm_factory(unknown_label=1.0, error_rate=0.0)
    content = post(server, body(species_spec)).json()["choices"][0]["message"]["content"]
    assert all(e["entities"][0]["label"] == "LOCATION" for e in json.loads(content)["examples"])
    server = mock_llm_factory(json_schema=False)
    assert post(server, body(species_spec)).status_code == 400
    assert post(server, body(species_spec, fmt="json_object")).status_code == 200


def test_labels_outside_the_schema_are_not_written(species_spec):
    spec = species_spec.model_copy(deep=True)
    schema = generate_schema(spec)
    schema["properties"]["examples"]["items"]["properties"]["entities"]["items"]["properties"]["label"]["enum"] = ["SPECIES", "HABITAT"]
    mock = MockLLM(MockConfig(error_rate=0.0))
    payload = body(spec)
    payload["response_format"]["json_schema"]["schema"] = schema
    import random

    examples = json.loads(mock.answer(payload, random.Random(0)))["examples"]
    labels = {e["label"] for ex in examples for e in ex["entities"]}
    assert labels <= {"SPECIES", "HABITAT"} and "SPECIES" in labels
    assert all(r["label"] == "live_in" for ex in examples for r in ex["relations"])


def annotate_payload(spec, text, schema, seed=0, fmt="json_schema"):
    messages = [{"role": "system", "content": spec.render("system")}, {"role": "user", "content": spec.render("annotate", text=text)}]
    payload = {"model": "mock-species", "messages": messages, "seed": seed, "temperature": 0.7}
    if fmt == "json_schema":
        payload["response_format"] = {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema}}
    else:  # what the client sends to a server without json_schema: the schema after the text
        messages[-1]["content"] += "\nAnswer with one JSON object that matches this JSON schema:\n" + json.dumps(schema)
        payload["response_format"] = {"type": "json_object"}
    return payload


def annotation_schema(spec, labels=None):
    """The annotate schema without "text" (what `distill annotate` sends)."""
    schema = json.loads(json.dumps(item_schema(spec)))
    del schema["properties"]["text"]
    schema["required"].remove("text")
    if labels is not None:
        schema["properties"]["entities"]["items"]["properties"]["label"]["enum"] = labels
    return schema


NO_REPLAY_ERRORS = {"replay_drift": 0.0, "replay_missed": 0.0, "replay_mislabelled": 0.0, "replay_invented": 0.0}
FIELD_NOTES = "Field notes, day 3.\nThe snow leopard lives in the Himalayas.\n\nText: it hunts blue sheep and marmots."


def content(server, payload):
    response = post(server, payload)
    assert response.status_code == 200, response.text
    return json.loads(response.json()["choices"][0]["message"]["content"])


def test_both_annotate_schemas_are_annotate_requests(species_spec):
    from distill_ner.annotators.mock_llm import _labels_from

    for schema in (item_schema(species_spec), annotation_schema(species_spec)):
        ents, rels, is_generate = _labels_from(annotate_payload(species_spec, "x", schema))
        assert (ents, rels, is_generate) == (species_spec.entity_labels, species_spec.relation_labels, False)
    assert _labels_from(body(species_spec))[2] is True


def test_annotates_any_text_to_the_end_of_the_message(mock_llm_factory, species_spec):
    server = mock_llm_factory(**NO_REPLAY_ERRORS)
    answer = content(server, annotate_payload(species_spec, FIELD_NOTES, annotation_schema(species_spec)))
    assert "text" not in answer  # the annotate schema has none
    # the whole text, past its newlines and a line that itself starts with "Text: "
    assert answer["entities"] == [
        {"text": "snow leopard", "label": "SPECIES"}, {"text": "Himalayas", "label": "HABITAT"},
        {"text": "blue sheep", "label": "FEEDING"}, {"text": "marmots", "label": "FEEDING"},
    ]
    assert answer["relations"] == [{"head": "snow leopard", "tail": "Himalayas", "label": "live_in"}]
    example = ground({**answer, "text": FIELD_NOTES}, species_spec, rules=GroundingRules(min_entities=0))
    assert [example.span(e) for e in example.entities] == ["snow leopard", "Himalayas", "blue sheep", "marmots"]
    # with the item schema the answer keeps the text; without json_schema the client's schema hint is not text
    assert content(server, annotate_payload(species_spec, FIELD_NOTES, item_schema(species_spec)))["text"] == FIELD_NOTES
    assert content(server, annotate_payload(species_spec, FIELD_NOTES, item_schema(species_spec), fmt="json_object"))["text"] == FIELD_NOTES
    assert server.stats.annotated["gazetteer"] == 3 and not server.truth


def test_any_text_gets_the_request_labels_and_errors_that_differ_per_sample(mock_llm_factory, species_spec):
    server = mock_llm_factory(seed=4)
    payload = annotate_payload(species_spec, FIELD_NOTES, annotation_schema(species_spec, ["SPECIES", "FEEDING"]))
    answer = content(server, payload)
    assert {e["label"] for e in answer["entities"]} <= {"SPECIES", "FEEDING"} and answer["entities"]
    unknown = annotate_payload(species_spec, FIELD_NOTES, annotation_schema(species_spec, ["Chemical", "Disease"]))
    assert content(server, unknown)["entities"] == []
    texts = [FIELD_NOTES, "Giant pandas eat bamboo shoots in the mountains of Sichuan.", "The vaquita lives in the northern Gulf of California and eats squid."]
    samples = [[content(server, annotate_payload(species_spec, t, annotation_schema(species_spec), seed=s)) for s in range(8)] for t in texts]
    assert all(a == content(server, annotate_payload(species_spec, t, annotation_schema(species_spec), seed=0)) for t, (a, *_) in zip(texts, samples))
    assert sum(len({json.dumps(a, sort_keys=True) for a in answers}) > 1 for answers in samples) >= 2  # k samples disagree
    clean = mock_llm_factory(seed=4, **NO_REPLAY_ERRORS)
    assert all(len({json.dumps(content(clean, annotate_payload(species_spec, t, annotation_schema(species_spec), seed=s))) for s in range(4)}) == 1 for t in texts)
