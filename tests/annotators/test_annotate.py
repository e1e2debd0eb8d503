"""`distill annotate`: the LLM annotates the user's own texts, through the same client as `generate`."""

import json
from pathlib import Path

from typer.testing import CliRunner

from distill_ner.annotators.cli import app
from distill_ner.annotators.generate import generate
from distill_ner.annotators.llm import LLMConfig
from distill_ner.data.formats import read_jsonl

runner = CliRunner()
OFF_TOPIC = "The committee meets on Tuesday to discuss the budget."


def annotate_cli(*args: str):
    return runner.invoke(app, ["annotate", *args], catch_exceptions=False)


def outputs(out: Path) -> tuple[dict, list, list]:
    summary = json.loads((out / "generate_summary.json").read_text())
    rejected = [json.loads(line) for line in (out / "rejected.jsonl").read_text().splitlines()]
    return summary, read_jsonl(out / "generated.jsonl"), rejected


def mock_texts(server, tmp_path: Path, spec, n: int = 20) -> list[str]:
    """Texts the mock wrote (so that it knows their truth), as a user's corpus would hold them."""
    generate(spec, n, tmp_path / "written", LLMConfig(base_url=server.base_url, model="mock-species"), seed=3)
    return [e.text.replace("\n", " ") for e in read_jsonl(tmp_path / "written" / "generated.jsonl")]


def test_annotate_a_corpus_counts_kept_rejected_and_repaired_and_a_rerun_makes_no_call(mock_llm_factory, species_spec, tmp_path):
    server = mock_llm_factory(seed=2, malformed=0.15)
    texts = mock_texts(server, tmp_path, species_spec)
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join([*texts, "", OFF_TOPIC]) + "\n")
    out = tmp_path / "run"
    args = ("--input", str(corpus), "--out", str(out), "--base-url", server.base_url, "--model", "mock-species", "--reasks", "0")
    result = annotate_cli(*args)
    assert result.exit_code == 0, result.output
    assert "documents / windows" in result.output
    summary, kept, rejected = outputs(out)
    assert summary["origin"] == "corpus" and summary["documents"] == summary["requested"] == len(texts) + 1
    assert summary["kept"] + sum(summary["rejected"].values()) + summary["duplicates"] == summary["requested"]
    assert summary["rejected"].get("malformed_output", 0) > 0 and all(r["reason"] and r["raw"]["window"] for r in rejected)
    lines = {line: n for n, line in enumerate(corpus.read_text().split("\n"), 1)}
    for example in kept:
        assert example.source.origin == "corpus" and example.source.file == str(corpus) and example.source.offset == 0
        assert example.source.document == f"line {lines[example.text]}"
    assert OFF_TOPIC in {e.text for e in kept if not e.entities}  # text that names nothing is kept, not rejected
    assert sum(len(e.entities) for e in kept) > len(kept)
    # the rerun asks nothing: every answer comes from the cache
    requests = server.stats.requests
    again = annotate_cli(*args)
    assert again.exit_code == 0, again.output
    summary2, kept2, _ = outputs(out)
    assert server.stats.requests == requests and summary2["calls"] == 0 and summary2["cache_hits"] > 0
    assert [e.model_dump() for e in kept2] == [e.model_dump() for e in kept]


def test_k_samples_give_each_entity_a_confidence(mock_llm_factory, species_spec, tmp_path):
    server = mock_llm_factory(seed=5, error_rate=0.6)
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"id": f"doc-{i}", "text": t}) + "\n" for i, t in enumerate(mock_texts(server, tmp_path, species_spec, 10))))
    out = tmp_path / "run"
    result = annotate_cli("--input", str(corpus), "--out", str(out), "--base-url", server.base_url, "--model", "mock-species", "--k-samples", "3")
    assert result.exit_code == 0, result.output
    kept = read_jsonl(out / "generated.jsonl")
    assert {e.source.document for e in kept} <= {f"doc-{i}" for i in range(10)}
    confidences = [ent.confidence for e in kept for ent in e.entities]
    assert confidences and all(c is not None for c in confidences) and min(confidences) < 1.0  # samples disagree where errors fall
    assert all(e.source.confidence is not None for e in kept)


def test_a_long_document_is_split_into_windows_whose_entities_map_back_to_it(mock_llm_factory, tmp_path):
    """Replay mode with no errors answers each window with the gold of the sentences it holds:
    every entity found in a window, moved by the window's offset, is a gold entity of the document."""
    from distill_ner.data.formats import write_jsonl
    from tests.fixtures.examples import make_example

    facts = [
        ("the snow leopard", "high mountains"), ("the red panda", "bamboo forests"), ("the kakapo", "mossy valleys"),
        ("the axolotl", "cold canals"), ("the hawksbill turtle", "coral reefs"), ("the Bengal tiger", "mangrove swamps"),
    ]
    sentences = [f"In year {i} {animal} was counted in {place} by the survey team." for i, (animal, place) in enumerate(facts * 3)]
    sentences.insert(4, "🐆 Note 𝑥: the giant panda fed in bamboo forests.")  # characters outside the BMP before an entity
    gold_sentences = [make_example(s, [(a.removeprefix("the "), "SPECIES"), (p, "HABITAT")]) for s, (a, p) in zip(sentences, [*facts[:4], ("giant panda", "bamboo forests"), *(facts * 3)[4:]])]
    document = " ".join(sentences)
    write_jsonl(tmp_path / "gold.jsonl", gold_sentences)
    expected = {(document.index(s) + e.start, document.index(s) + e.end, e.label) for s, g in zip(sentences, gold_sentences) for e in g.entities}
    (tmp_path / "doc.jsonl").write_text(json.dumps({"id": "report-7", "text": document}, ensure_ascii=False) + "\n", encoding="utf-8")
    server = mock_llm_factory(replay=tmp_path / "gold.jsonl", replay_drift=0, replay_missed=0, replay_mislabelled=0, replay_invented=0)
    out = tmp_path / "run"
    result = annotate_cli("--input", str(tmp_path / "doc.jsonl"), "--out", str(out), "--base-url", server.base_url, "--model", "mock-species", "--window-chars", "300")
    assert result.exit_code == 0, result.output
    kept = read_jsonl(out / "generated.jsonl")
    assert len(kept) > 3 and all(len(e.text) <= 300 and e.source.document == "report-7" for e in kept)
    assert all(document[e.source.offset : e.source.offset + len(e.text)] == e.text for e in kept)
    found = {(e.source.offset + x.start, e.source.offset + x.end, x.label) for e in kept for x in e.entities}
    assert found == expected  # every entity, in its place in the document, none lost at a window edge
    emoji = next(e for e in kept if "🐆" in e.text)
    panda = next(x for x in emoji.entities if emoji.span(x) == "giant panda")
    assert document[emoji.source.offset + panda.start : emoji.source.offset + panda.end] == "giant panda"
