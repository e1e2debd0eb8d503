"""A CoNLL file's own tokens are the words: training labels, decoding and scores keep to them.

Whitespace-split CoNLL files glue punctuation onto words ("leopard," "(Capreolus"), keep
hyphenated words whole, and long sentences put an entity across a window edge. Nothing may move.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from distill_ner.data.formats import bio_tokens, read_conll, read_examples, to_docbin, from_docbin, write_conll
from distill_ner.data.words import read_on, tokenize, words_of
from distill_ner.trainers.encoders import load_encoder
from distill_ner.trainers.ner import IGNORE, decode_logits, merge_windows, ner_features, tag_names, window_bounds

ROWS = [
    ("The", "O"), ("(Amur", "B-SPECIES"), ("leopard)", "I-SPECIES"), ("lives", "O"), ("in", "O"), ("temperate", "B-HABITAT"),
    ("forests;", "I-HABITAT"), ("it", "O"), ("eats", "O"), ("roe-deer", "B-FEEDING"), ("(Capreolus),", "I-FEEDING"), ("fish", "O"),
    ("and", "O"), ("small", "B-FEEDING"), ("insect-larvae,", "I-FEEDING"), ("all", "O"), ("about", "O"), ("the", "O"),
    ("hawksbill", "B-SPECIES"), ("turtles.", "I-SPECIES"),
]
TAGS = tag_names(["SPECIES", "HABITAT", "FEEDING"])


def conll(path: Path, first_words: tuple[str, ...] = ("The",)) -> Path:
    """ROWS once per first word (different texts)."""
    blocks = ["\n".join(f"{t}\t{g}" for t, g in [(first, "O"), *ROWS[1:]]) + "\n" for first in first_words]
    path.write_text("\n".join(blocks), encoding="utf-8")
    return path


def test_a_conll_file_keeps_its_tokens_as_words_through_every_format(tmp_path):
    (example,) = read_conll(conll(tmp_path / "glued.conll"))
    assert [example.text[s:t] for s, t in words_of(example)] == [t for t, _ in ROWS]
    assert words_of(example) != tokenize(example.text)
    assert [tag for _, tag, _, _ in bio_tokens(example)] == [g for _, g in ROWS]
    for name in ("again.conll", "again.jsonl", "again.spacy", "splits"):
        path = tmp_path / name
        to_docbin([example], path) if name.endswith(".spacy") else write_conll(path, [example]) if name.endswith(".conll") else None
        if name.endswith(".jsonl"):
            from distill_ner.data.formats import write_jsonl
            write_jsonl(path, [example])
        if name == "splits":
            from distill_ner.data.formats import save_splits
            save_splits({"train": [example], "dev": [], "test": []}, path)
        (back,) = read_examples(path)
        assert back.words == example.words and back.entities == example.entities, name
    tidy = read_conll(write_conll(tmp_path / "ours.conll", [example.model_copy(update={"words": None})]))[0]
    assert tidy.words is None  # a file in the project's own words carries none: files and hashes stay as they were


def test_a_transfer_file_keeps_its_tokens_as_words(tmp_path):
    """Fails if the transfer set drops a file's tokens (the teacher's soft targets would then sit
    on the project tokenizer's words, not on the file's)."""
    from distill_ner.trainers.trainer import transfer_texts

    (example,) = read_conll(conll(tmp_path / "glued.conll"))
    (kept,) = transfer_texts([example], labelled=[])
    assert words_of(kept) == words_of(example) != tokenize(example.text)


def test_training_labels_sit_on_the_first_piece_of_each_file_token_across_windows(tiny_bert):
    _, tok = load_encoder(tiny_bert)
    (example,) = read_conll_text()
    words = words_of(example)
    feats, (enc,) = ner_features(tok, [example], TAGS, max_length=14, stride=4)
    bounds = window_bounds(len(enc.ids), 14, 4)
    assert len(bounds) > 2
    entity_pieces = [[i for i, (s, t) in enumerate(enc.offsets) if s < e.end and t > e.start] for e in example.entities]
    assert any(p[0] < end <= p[-1] for _, end in bounds[:-1] for p in entity_pieces), "an entity spans a window edge"
    labelled: dict[int, int] = {}
    for f in feats:
        for k, label in enumerate(f.labels[1:-1]):
            if label != IGNORE:
                labelled[f.first_token + k] = label
    assert len(labelled) == len(words), "one tag per file token, none on pieces inside a token"
    starts = [next(i for i, (s, _) in enumerate(enc.offsets) if s == w[0]) for w in words]
    assert [TAGS[labelled[i]] for i in starts] == [g for _, g in ROWS]


def test_decoding_on_the_file_tokens_gives_back_the_file_tags(tiny_bert):
    """Logits as a model trained on these tokens gives them (its tag on each token's first piece,
    O on the pieces it never learned), windows merged: the entities are the file's, exactly."""
    _, tok = load_encoder(tiny_bert)
    (example,) = read_conll_text()
    feats, encoded = ner_features(tok, [example], TAGS, max_length=14, stride=4)
    windows = []
    for f in feats:
        logits = np.zeros((len(f.input_ids), len(TAGS)), dtype=np.float32)
        for k, label in enumerate(f.labels):
            logits[k, label if label != IGNORE else 0] = 8.0
        windows.append(logits)
    (merged,) = merge_windows(feats, windows, encoded, tok)
    entities = decode_logits(words_of(example), encoded[0].offsets, merged, TAGS)
    assert [(e.start, e.end, e.label) for e in entities] == [(e.start, e.end, e.label) for e in example.entities]


def read_conll_text():
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        return read_conll(conll(Path(tmp) / "glued.conll"))


@pytest.mark.slow
def test_train_evaluate_and_the_spacy_student_keep_the_file_tokens(tiny_bert, tmp_path):
    import spacy
    from spacy.tokens import Doc

    from distill_ner.flows.cli import app
    from distill_ner.trainers.inference import predict_entities
    from distill_ner.trainers.modeling import load_model

    for name, first in (("train", ("The", "A", "This", "One")), ("dev", ("Each",)), ("test", ("Every",))):
        conll(tmp_path / f"{name}.conll", first)
    result = CliRunner().invoke(app, [
        "train", "--train", str(tmp_path / "train.conll"), "--dev", str(tmp_path / "dev.conll"), "--test", str(tmp_path / "test.conll"),
        "--out", str(tmp_path / "models"), "--encoder", str(tiny_bert), "--epochs", "1", "--no-student", "--max-length", "16", "-s", "stride=4",
        "-s", "progress=false",
    ])
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "models" / "teacher" / "metrics.json").read_text())
    assert {k: v["support"] for k, v in metrics["per_label"].items()} == {"FEEDING": 2, "HABITAT": 1, "SPECIES": 2}
    (example,) = read_conll(tmp_path / "test.conll")
    edges = {s for s, _ in words_of(example)}, {t for _, t in words_of(example)}
    (entities,) = predict_entities(load_model(tmp_path / "models" / "teacher"), [example])
    assert entities and all(e.start in edges[0] and e.end in edges[1] for e in entities)
    result = CliRunner().invoke(app, ["export-spacy", str(tmp_path / "models" / "teacher"), str(tmp_path / "nlp")])
    assert result.exit_code == 0, result.output
    nlp = spacy.load(tmp_path / "nlp")
    doc = nlp(Doc(nlp.vocab, words=[example.text[s:t] for s, t in words_of(example)]))
    assert [(e.start_char, e.end_char, e.label_) for e in doc.ents] == [(e.start, e.end, e.label) for e in entities]
    again = spacy.blank("en").from_bytes(nlp.to_bytes())  # the tokenizer rules travel with the pipeline
    assert [t.text for t in again.make_doc("Przewalski's long-tailed horse, (wild).")] == ["Przewalski's", "long-tailed", "horse", ",", "(", "wild", ")", "."]


def test_the_exported_tokenizer_cuts_raw_text_into_the_project_words():
    import random

    import spacy

    from distill_ner.data.words import words_tokenizer

    tokenizer = words_tokenizer(spacy.blank("en").vocab)
    rng = random.Random(0)
    texts = ["Przewalski's long-tailed horse, (wild).", "a--b a-'b 3.5 U.S. e.g. don't ‘quoted’ l’eau -x x- 'x x' «a» 😀x a_b", "  two  spaces\tand\nnewline "]
    texts += ["".join(rng.choice("ab1_-'’.,()😀 \t\n") for _ in range(rng.randint(1, 20))) for _ in range(3000)]
    for text in texts:
        assert [(t.idx, t.idx + len(t)) for t in tokenizer(text) if not t.is_space] == tokenize(text), text


def test_the_words_read_on_a_doc_are_its_tokens_without_cuts_inside_a_project_word():
    text = "The (Amur leopard), long-tailed."
    glued = [(0, 3), (4, 9), (10, 19), (20, 31)]  # "(Amur" "leopard)," "long-tailed."
    assert read_on(text, glued) == glued  # a file's tokens stay as they are
    finer = [(0, 3), (4, 5), (5, 9), (10, 17), (17, 18), (18, 19), (20, 24), (24, 25), (25, 31), (31, 32)]  # "long" "-" "tailed"
    assert read_on(text, finer) == tokenize(text)
