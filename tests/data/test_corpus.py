"""Reading a user's own texts and cutting documents into windows of whole sentences."""

import pytest

from distill_ner.data.corpus import WindowStats, read_documents, sentences, windows
from distill_ner.data.errors import DistillError
from distill_ner.data.formats import read_jsonl, to_docbin
from tests.fixtures.examples import make_example

SENTENCES = [
    "The snow leopard (Panthera uncia) lives in the mountains of Central Asia.",
    "It hunts blue sheep and ibex on steep slopes.",
    "Females give birth to two or three cubs in rocky dens!",
    "Is the species endangered?",
    "Its range spans twelve countries, from Afghanistan to Mongolia.",
]


def test_each_format_gives_its_texts(tmp_path):
    (tmp_path / "lines.txt").write_text("first text\n\n  second text  \n")
    (tmp_path / "paras.txt").write_text("one para\nstill one\n\n\nsecond para\n")
    (tmp_path / "rows.jsonl").write_text('{"id": "a1", "body": "from json"}\n\n{"body": "no id"}\n')
    (tmp_path / "rows.csv").write_text('id,body\n7,"a, quoted\nmultiline text"\n,plain\n')
    (tmp_path / "s.conll").write_text("# text = The leopard.\nThe\tO\nleopard\tB-SPECIES\n.\tO\n\nIbex\tB-SPECIES\nclimb\tO\n")
    to_docbin([make_example("A DocBin text about ibex.", [("ibex", "SPECIES")])], tmp_path / "d.spacy")
    assert [(d.id, d.text) for d in read_documents(tmp_path / "lines.txt")] == [("line 1", "first text"), ("line 3", "second text")]
    assert [(d.id, d.text) for d in read_documents(tmp_path / "paras.txt", paragraphs=True)] == [("line 1", "one para\nstill one"), ("line 5", "second para")]
    assert [(d.id, d.text) for d in read_documents(tmp_path / "rows.jsonl", field="body")] == [("a1", "from json"), ("line 3", "no id")]
    assert [(d.id, d.text) for d in read_documents(tmp_path / "rows.csv", column="body")] == [("7", "a, quoted\nmultiline text"), ("row 3", "plain")]
    assert [d.text for d in read_documents(tmp_path / "s.conll")] == ["The leopard.", "Ibex climb"]
    assert [d.text for d in read_documents(tmp_path / "d.spacy")] == ["A DocBin text about ibex."]


def test_a_byte_order_mark_is_read_not_refused(tmp_path):
    example = make_example("The Amur leopard lives in forests.", [("Amur leopard", "SPECIES")])
    (tmp_path / "bom.jsonl").write_bytes(b"\xef\xbb\xbf" + example.model_dump_json().encode() + b"\n")
    (tmp_path / "bom.txt").write_bytes("\ufefffirst line\n".encode())
    (tmp_path / "bom.conll").write_bytes("\ufeffThe\tO\nleopard\tB-SPECIES\n".encode())
    assert read_jsonl(tmp_path / "bom.jsonl")[0].text == example.text
    assert read_documents(tmp_path / "bom.txt")[0].text == "first line"
    assert read_documents(tmp_path / "bom.conll")[0].text == "The leopard"


@pytest.mark.parametrize(
    ("name", "content", "kwargs", "says"),
    [
        ("empty.txt", b"\n \n", {}, "holds no text to annotate"),
        ("bin.txt", b"GIF89a\x00\x01", {}, "is a binary file"),
        ("latin.txt", "ok\nstill ok\nna\xefve\n".encode("latin-1"), {}, "latin.txt:3: is not UTF-8"),
        ("rows.jsonl", b'{"body": "x"}\n', {}, "has no field 'text'"),
        ("rows2.jsonl", b'{"text": 3}\n', {}, "field 'text' is not a string"),
        ("rows3.jsonl", b'{"text": "x"}\nnot json\n', {}, "rows3.jsonl:2: not valid JSON"),
        ("rows.csv", b"a,b\n1,2\n", {"column": "text"}, "has no column 'text' (it has: a, b)"),
        ("x.pdf", b"%PDF", {}, "unknown input format '.pdf'"),
    ],
)
def test_bad_input_is_one_clear_error(tmp_path, name, content, kwargs, says):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(DistillError, match=says.replace("(", r"\(").replace(")", r"\)")):
        read_documents(tmp_path / name, **kwargs)


def test_sentences_keep_their_offsets():
    text = "  " + "  ".join(SENTENCES) + "\n\nA new paragraph without a stop"
    spans = sentences(text)
    assert [text[s:e] for s, e in spans] == [*SENTENCES, "A new paragraph without a stop"]


def test_a_long_document_becomes_windows_that_cover_it_and_map_back(tmp_path):
    doc_text = " ".join(SENTENCES * 6)
    (tmp_path / "doc.jsonl").write_text('{"id": "d1", "text": "%s"}\n{"id": "d2", "text": "Short one."}\n' % doc_text)
    stats = WindowStats()
    chunks = windows(read_documents(tmp_path / "doc.jsonl"), max_chars=160, stats=stats)
    d1 = [w for w in chunks if w.document == "d1"]
    assert stats.documents == 2 and stats.windows == len(chunks) == len(d1) + 1 and stats.split_sentences == 0
    assert all(len(w.text) <= 160 and doc_text[w.offset : w.offset + len(w.text)] == w.text for w in d1)
    # whole sentences, in order, nothing left out: the windows' sentences are the document's
    assert [s for w in d1 for s in sentences(w.text)] and " ".join(w.text for w in d1) == doc_text
    assert all(w.text.rstrip()[-1] in ".!?" for w in d1)
    assert len(d1) < len(SENTENCES) * 6  # sentences are packed together, not one per window


def test_a_sentence_longer_than_a_window_is_cut_at_a_space_and_counted():
    from distill_ner.data.corpus import Document

    long = "word " * 60 + "end."
    stats = WindowStats()
    chunks = windows([Document(id="x", text=long, file="f")], max_chars=50, stats=stats)
    assert stats.split_sentences == len(chunks) - 1 > 0
    assert all(len(w.text) <= 50 and long[w.offset : w.offset + len(w.text)] == w.text for w in chunks)
    assert " ".join(w.text for w in chunks) == long
    with pytest.raises(DistillError, match="without a space from offset 0 cannot fit a window of 50"):
        windows([Document(id="y", text="x" * 80, file="f")], max_chars=50)


def test_gold_from_corpus_takes_dev_and_test_from_your_texts_only():
    from distill_ner.data.example import Source
    from distill_ner.data.formats import split_examples

    llm = [make_example(f"The species number {i} lives in forests.", [("forests", "HABITAT")]) for i in range(40)]
    corpus = [make_example(f"A real sentence {i} about wetlands.", [("wetlands", "HABITAT")]) for i in range(20)]
    corpus = [e.model_copy(update={"source": Source(origin="corpus", file="f.txt", document=f"line {i}", offset=0)}) for i, e in enumerate(corpus)]
    anywhere = split_examples(llm + corpus, dev=0.15, test=0.15, seed=1)
    assert any(e.source.origin != "corpus" for e in anywhere["test"] + anywhere["dev"])
    splits = split_examples(llm + corpus, dev=0.15, test=0.15, seed=1, gold_from="corpus")
    assert len(splits["test"]) == len(anywhere["test"]) == 9 and len(splits["dev"]) == 9
    assert all(e.source.origin == "corpus" for e in splits["test"] + splits["dev"])
    assert len(splits["train"]) == 42 and all(e in splits["train"] for e in llm)
    with pytest.raises(DistillError, match="need 16 texts of origin 'corpus'"):
        split_examples(llm + corpus[:10], dev=0.15, test=0.15, seed=1, gold_from="corpus")


def test_offsets_that_cut_words_in_half_are_reported_with_a_count_and_the_first_example(tmp_path, capsys, monkeypatch):
    import sys

    from distill_ner.data.example import Entity, Example
    from distill_ner.flows.cli import main

    text = "🐆 The snow leopard lives in high mountains."
    utf16 = Example(id="ex-utf16", text=text, entities=[Entity(start=len("🐆 The ") + 1, end=len("🐆 The snow leopard") + 1, label="SPECIES")])
    right = make_example(text, [("snow leopard", "SPECIES")])
    (tmp_path / "in.jsonl").write_text(right.model_dump_json() + "\n" + utf16.model_dump_json() + "\n")
    monkeypatch.setattr(sys, "argv", ["distill", "convert", str(tmp_path / "in.jsonl"), str(tmp_path / "out.jsonl")])
    with pytest.raises(SystemExit) as exit_:
        main()
    err = capsys.readouterr().err
    assert exit_.value.code == 0 and "1 entity cut a word in half (first in example ex-utf16)" in err and "UTF-16" in err
    (tmp_path / "ok.jsonl").write_text(right.model_dump_json() + "\n")
    monkeypatch.setattr(sys, "argv", ["distill", "convert", str(tmp_path / "ok.jsonl"), str(tmp_path / "out2.jsonl")])
    with pytest.raises(SystemExit):
        main()
    assert "cut a word" not in capsys.readouterr().err
