"""Label Studio conversions, labeling config, the conflict rule, relation checks, project
titles, create-once retries, writing a pull and the server's environment, without a server."""

import json
from datetime import datetime, timezone
from pathlib import Path

import httpx
import pytest

from distill_ner.annotators import ls_server
from distill_ner.annotators.correctness import Judgement
from distill_ner.annotators.label_studio import (
    REJECT_WRONG,
    TITLE_MAX,
    PullResult,
    check_config,
    create,
    example_to_task,
    from_result,
    label_config,
    order_for_review,
    triage,
    project_title,
    resolve,
    to_result,
    verified_example,
    write_verified,
)
from distill_ner.data.errors import DistillError
from distill_ner.data.example import Entity, Relation
from distill_ner.data.formats import read_jsonl, write_jsonl
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
        parsed = from_result(to_result(example), example.text, species_spec, "t")
        assert parsed.entities == [Entity(start=e.start, end=e.end, label=e.label) for e in example.entities]
        assert sorted(parsed.relations, key=lambda r: (r.head, r.tail)) == sorted(example.relations, key=lambda r: (r.head, r.tail))
        assert parsed.rejected is None and parsed.flipped == 0 and parsed.problems == []


def _relation(result: list[dict], label: str | None, head: str, tail: str) -> list[dict]:
    rels = [i for i in result if i.get("type") != "relation"]
    return rels + [{"type": "relation", "from_id": head, "to_id": tail, "direction": "right", "labels": [label] if label else []}]


def test_a_relation_drawn_backwards_is_turned_round_and_counted(species_spec, species_examples):
    leopard = species_examples[0]  # e0 SPECIES, e1 HABITAT, e2 FEEDING
    parsed = from_result(_relation(to_result(leopard), "live_in", "e1", "e0"), leopard.text, species_spec, "t")  # HABITAT -> SPECIES
    assert parsed.relations == [Relation(head=0, tail=1, label="live_in")] and parsed.flipped == 1 and parsed.problems == []


def test_a_relation_the_spec_does_not_allow_or_without_a_type_is_a_problem(species_spec, species_examples):
    leopard = species_examples[0]
    parsed = from_result(_relation(to_result(leopard), "live_in", "e0", "e2"), leopard.text, species_spec, "t")  # SPECIES -> FEEDING
    assert parsed.relations == [] and parsed.flipped == 0
    assert parsed.problems == ["relation live_in 'Amur leopard' (SPECIES) -> 'roe deer' (FEEDING) is not allowed by spec 'species' (live_in: SPECIES -> HABITAT)"]
    untyped = from_result(_relation(to_result(leopard), None, "e0", "e1"), leopard.text, species_spec, "t")
    assert untyped.relations == [] and untyped.problems == ["relation 'Amur leopard' (SPECIES) -> 'temperate forests of the Russian Far East' (HABITAT) has no type"]


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
    assert "document" not in task["data"]
    mine = example.model_copy(update={"source": example.source.model_copy(update={"origin": "corpus", "file": "notes.txt", "document": "line 4", "offset": 120})})
    data = example_to_task(mine, species_spec)["data"]
    assert (data["origin"], data["document"], data["offset"]) == ("corpus", "line 4", 120)  # columns to filter your texts by


def test_example_with_a_label_outside_the_spec_is_refused_before_upload(species_spec):
    bad = make_example("Oak trees grow slowly.", [("Oak trees", "PLANT")])
    with pytest.raises(DistillError, match=f"example {bad.id}.*PLANT"):
        example_to_task(bad, species_spec)


def test_least_confident_first_unknown_last():
    examples = [make_example(f"text {i}", [], confidence=c) for i, c in enumerate([0.9, None, 0.1, 0.5])]
    assert [e.source.confidence for e in order_for_review(examples)] == [0.1, 0.5, 0.9, None]


def test_a_review_budget_sends_the_least_confident_share_or_count():
    examples = [make_example(f"Text {i}.", [], confidence=c) for i, c in enumerate([0.9, 0.2, None, 0.6, 1.0])]
    sent, held = triage(examples, 0.4)
    assert [e.source.confidence for e in sent] == [0.2, 0.6] and [e.source.confidence for e in held] == [0.9, 1.0, None]
    assert [e.source.confidence for e in triage(examples, 3)[0]] == [0.2, 0.6, 0.9]
    assert len(triage(examples, None)[0]) == 5 and len(triage(examples, 1.0)[0]) == 5 and len(triage(examples, 50)[0]) == 5
    with pytest.raises(DistillError, match="review budget 0"):
        triage(examples, 0)


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
    assert {d.text for d in fewer.review.diff.entities_removed} == {"worms", "insect larvae", "small fish", "Lake Xochimilco"}
    assert len(fewer.review.diff.relations_removed) == 4 and fewer.review.diff.reason is None
    rejected = verified_example(llm, Judgement("ann", None, "Reject: unusable", [], []), 5)
    assert rejected.review.status == "rejected" and rejected.entities == llm.entities  # the LLM's annotation is kept
    assert rejected.review.diff.reason == "Reject: unusable" and not rejected.review.diff.changed


def test_each_run_has_its_own_project_title_within_label_studio_limits(species_spec):
    assert project_title(species_spec, "run-a") == "distill species run-a"
    assert project_title(species_spec, "run-a") != project_title(species_spec, "run-b")
    long_a, long_b = (project_title(species_spec, "a-very-long-run-name-about-endangered-species-" + s) for s in ("2026", "2027"))
    assert len(long_a) == len(long_b) == TITLE_MAX and long_a != long_b  # cut, and told apart by a hash
    assert long_a.startswith("distill species a-very-long-run-name")


def test_create_looks_before_it_creates_again():
    saved: list[str] = []

    def flaky(name: str) -> str:
        saved.append(name)  # the server saves it ...
        if len(saved) == 1:
            raise httpx.ReadError("connection reset")  # ... and the answer is lost
        return name

    ls = type("LS", (), {"_client_wrapper": None})()
    assert create(ls, "creating x", flaky, lambda: saved[0] if saved else None, name="x") == "x"
    assert saved == ["x"]  # created once: the retry found it
    nothing = [0]

    def flaky_unsaved(name: str) -> str:
        nothing[0] += 1
        if nothing[0] == 1:
            raise httpx.ConnectError("refused")  # not saved: the retry creates it
        return name

    assert create(ls, "creating y", flaky_unsaved, lambda: None, name="y") == "y" and nothing[0] == 2


def _pulled(n: int) -> PullResult:
    examples = [make_example(f"Frog {i} lives in pond {i}.", [(f"Frog {i}", "SPECIES")]) for i in range(n)]
    return PullResult(examples, [], [], {}, problems=["task 1 'x': relation ... has no type"], relations_flipped=2)


def test_a_pull_with_fewer_verified_examples_does_not_replace_the_file(tmp_path: Path):
    write_verified(tmp_path, _pulled(3))
    before = (tmp_path / "verified.jsonl").read_text()
    with pytest.raises(DistillError, match=r"verified.jsonl holds 3 verified examples and this pull has 1: .*--allow-fewer"):
        write_verified(tmp_path, _pulled(1))
    assert (tmp_path / "verified.jsonl").read_text() == before
    write_verified(tmp_path, _pulled(1), allow_fewer=True)
    assert len(read_jsonl(tmp_path / "verified.jsonl")) == 1
    review = json.loads((tmp_path / "review.json").read_text())
    assert review["relations_flipped"] == 2 and review["problems"] == ["task 1 'x': relation ... has no type"]


def test_a_run_folder_that_cannot_be_written_is_a_one_line_error(tmp_path: Path):
    write_jsonl(tmp_path / "verified.jsonl", [])
    (tmp_path / "review.json").mkdir()  # cannot be replaced by a file (a read-only folder does not stop root)
    with pytest.raises(DistillError, match="review.json: cannot write it") as err:
        write_verified(tmp_path, _pulled(1))
    assert "\n" not in str(err.value)


def test_label_studio_is_started_without_error_reporting_or_telemetry(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("SENTRY_DSN", "https://someone@example.org/1")
    env = ls_server._server_env(tmp_path, {"email": "a@b", "password": "p", "token": "t", "secret_key": "s"})
    for name in ls_server.TELEMETRY_OFF:
        assert env[name] == ls_server.TELEMETRY_OFF[name], name
    assert env["SENTRY_DSN"] == "" and env["FRONTEND_SENTRY_DSN"] == ""
