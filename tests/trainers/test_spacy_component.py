"""The spaCy component `distill_ner_re` like a built-in one: bytes serialization of the pipeline,
relations that survive `Doc.to_bytes` / `DocBin` / `nlp.pipe(n_process=2)`, and `nlp.evaluate` scores (issue 17)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import spacy
from spacy.tokens import Doc, DocBin
from spacy.training import Example as SpacyExample
from spacy.util import load_config

from distill_ner.data.errors import DistillError
from distill_ner.data.spec import load_spec
from distill_ner.trainers.export.to_spacy import export_spacy
from distill_ner.trainers.spacy_pipeline import FACTORY

pytestmark = pytest.mark.slow
NEW_TEXT = "The kakapo lives in mountain slopes and eats worms."


def summary(doc: Doc) -> tuple[list, list]:
    """Entities and relations of a doc as plain values (Spans read through `doc._.relations`)."""
    ents = [(e.start_char, e.end_char, e.label_, e.text) for e in doc.ents]
    rels = [(h.start_char, h.end_char, h.label_, h.text, t.start_char, t.end_char, t.label_, t.text, label, score) for h, t, label, score in doc._.relations]
    return ents, rels


@pytest.fixture(scope="module")
def pipeline(teacher, tmp_path_factory) -> Path:
    return export_spacy(teacher, tmp_path_factory.mktemp("spacy") / "pipeline", load_spec("species"))


@pytest.fixture(scope="module")
def nlp(pipeline):
    return spacy.load(pipeline)


@pytest.fixture(scope="module")
def texts(data) -> list[str]:
    return [NEW_TEXT, *[e.text for e in data["test"]]]


@pytest.fixture(scope="module")
def docs(nlp, texts) -> list[Doc]:
    docs = list(nlp.pipe(texts, batch_size=4))
    assert sum(len(d._.relations) for d in docs) >= 3 and all(d.ents for d in docs)  # something to carry
    assert all(isinstance(d._.relations[0][0], spacy.tokens.Span) for d in docs if d._.relations)
    return docs


def test_pipeline_bytes_round_trip_carries_the_model(nlp, docs, texts, tmp_path):
    config = {k: v for k, v in nlp.config["components"][FACTORY].items() if k not in ("factory", "scorer")}
    empty = spacy.blank("en")
    empty.add_pipe(FACTORY, config=config)
    with pytest.raises(DistillError, match="no model loaded"):
        empty(NEW_TEXT)
    restored = spacy.blank("en")
    restored.add_pipe(FACTORY, config=config)
    restored.from_bytes(nlp.to_bytes())
    assert [summary(d) for d in restored.pipe(texts, batch_size=4)] == [summary(d) for d in docs]
    assert restored.get_pipe(FACTORY).model_dir != nlp.get_pipe(FACTORY).model_dir  # its own unpacked copy
    restored.to_disk(tmp_path / "again")  # and to disk again, from the unpacked copy
    assert summary(spacy.load(tmp_path / "again")(texts[1])) == summary(docs[1])


def test_doc_bytes_and_docbin_round_trips_keep_entities_and_relations(nlp, docs):
    expected = [summary(d) for d in docs]
    assert [summary(Doc(nlp.vocab).from_bytes(d.to_bytes())) for d in docs] == expected
    stored = DocBin(store_user_data=True, docs=docs).to_bytes()
    elsewhere = spacy.blank("en").vocab  # as in another process: a fresh vocab
    back = list(DocBin().from_bytes(stored).get_docs(elsewhere))
    assert [summary(d) for d in back] == expected
    assert [tuple(r) for r in back[0]._.relation_data] == [r[:3] + r[4:7] + r[8:] for r in expected[0][1]]  # plain values underneath


def test_relations_set_by_hand_read_back_as_spans():
    doc = spacy.blank("en")("The kakapo lives in mountain slopes.")
    head, tail = doc.char_span(4, 10, label="SPECIES"), doc.char_span(20, 35, label="HABITAT")
    doc.ents = [head, tail]
    doc._.relations = [(head, tail, "live_in", 1.0)]
    assert doc._.relation_data == [(4, 10, "SPECIES", 20, 35, "HABITAT", "live_in", 1.0)]
    (h, t, label, score), = doc._.relations
    assert (h.text, h.label_, t.text, t.label_, label, score) == ("kakapo", "SPECIES", "mountain slopes", "HABITAT", "live_in", 1.0)
    assert spacy.blank("en")("No relations set here.")._.relations is None


def test_multiprocess_pipe_equals_single_process(pipeline, docs, texts):
    """`nlp.pipe(n_process=2)` in a fresh process (its own process group: a hung worker is killed, not left behind)."""
    code = (
        "import json, spacy, sys\n"
        "nlp = spacy.load(sys.argv[1])\n"
        "texts = json.loads(sys.argv[2])\n"
        "nlp(texts[0])  # the parent's torch thread pool in use before the fork, as in a real session\n"
        "out = [([(e.start_char, e.end_char, e.label_, e.text) for e in d.ents], [(h.start_char, h.end_char, h.label_, h.text, t.start_char, t.end_char, t.label_, t.text, l, s) for h, t, l, s in d._.relations])\n"
        "       for d in nlp.pipe(texts, n_process=2, batch_size=4)]\n"
        "print(json.dumps(out))\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, str(pipeline), json.dumps(texts)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={"HF_HUB_OFFLINE": "1", "PATH": ""}, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=180)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail("nlp.pipe(n_process=2) hung")
    assert proc.returncode == 0, err[-2000:]
    got = json.loads(out.strip().splitlines()[-1])
    assert got == json.loads(json.dumps([summary(d) for d in docs]))


def test_loads_in_a_folder_that_has_its_own_data_and_trainers_packages(pipeline, docs, texts, tmp_path):
    """Many ML projects have a `data/` package; on sys.path before ours it must not shadow the component's code."""
    for name in ("data", "trainers", "flows", "annotators"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text(f"raise ImportError('the user\'s own {name} package was imported')\n")
    code = (
        "import json, spacy, sys\n"
        "doc = spacy.load(sys.argv[1])(sys.argv[2])\n"
        "print(json.dumps([(e.start_char, e.end_char, e.label_, e.text) for e in doc.ents]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(pipeline), texts[0]], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                         env={"HF_HUB_OFFLINE": "1", "PATH": ""})
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == json.loads(json.dumps(summary(docs[0])[0]))


def _examples(nlp, references: list[Doc]) -> list[SpacyExample]:
    return [SpacyExample(nlp.make_doc(ref.text), ref) for ref in references]


def test_evaluate_scores_entities_and_relations(nlp, docs):
    assert "doc.ents" in nlp.get_pipe_meta(FACTORY).assigns
    gold = [Doc(nlp.vocab).from_bytes(d.to_bytes()) for d in docs]  # the model's own predictions as gold: perfect
    scores = nlp.evaluate(_examples(nlp, gold))
    assert scores["ents_p"] == scores["ents_r"] == scores["ents_f"] == 1.0
    assert scores["rel_micro_p"] == scores["rel_micro_r"] == scores["rel_micro_f"] == 1.0
    assert set(scores["ents_per_type"]) <= {"SPECIES", "HABITAT", "FEEDING", "BREEDING"} and scores["ents_per_type"]
    assert all(v["f"] == 1.0 for v in scores["rel_per_type"].values()) and scores["rel_per_type"]

    wrong = [Doc(nlp.vocab).from_bytes(d.to_bytes()) for d in docs]
    n_rel = sum(len(d._.relation_data) for d in wrong)
    with_rel = next(d for d in wrong if d._.relation_data)
    h, t, label, score = with_rel._.relations[0]
    with_rel._.relations = [*with_rel._.relations[1:], (t, h, label, score)]  # one gold relation reversed: 1 fp, 1 fn
    wrong[0].ents = list(wrong[0].ents)[1:]  # one gold entity missing: 1 fp
    n_ents = sum(len(d.ents) for d in docs)
    scores = nlp.evaluate(_examples(nlp, wrong))
    assert scores["rel_micro_p"] == scores["rel_micro_r"] == pytest.approx((n_rel - 1) / n_rel)
    assert scores["ents_r"] == 1.0 and scores["ents_p"] == pytest.approx((n_ents - 1) / n_ents) and scores["ents_f"] < 1.0


def test_pipeline_exported_before_the_scorer_loads_and_scores(pipeline, docs, tmp_path):
    """An older export's config has no `scorer` key: it loads (with the default scorer) in a new process."""
    old = tmp_path / "old"
    shutil.copytree(pipeline, old)
    config = load_config(old / "config.cfg")
    assert config["components"][FACTORY].pop("scorer") == {"@scorers": "distill_ner_re_scorer.v1"}
    config.to_disk(old / "config.cfg")
    assert "scorer" not in (old / "config.cfg").read_text()
    code = (
        "import json, spacy, sys\n"
        "from spacy.training import Example\n"
        "nlp = spacy.load(sys.argv[1])\n"
        "doc = nlp(sys.argv[2])\n"
        "ref = nlp(sys.argv[2])\n"
        "scores = nlp.evaluate([Example(nlp.make_doc(ref.text), ref)])\n"
        "print(json.dumps({'rels': doc._.relation_data, 'f': scores['ents_f'], 'rel_f': scores['rel_micro_f']}))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code, str(old), docs[0].text], check=False, capture_output=True, text=True, timeout=300, env={"HF_HUB_OFFLINE": "1", "PATH": ""})
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert [tuple(r) for r in got["rels"]] == docs[0]._.relation_data and got["f"] == 1.0
    assert got["rel_f"] == (1.0 if docs[0]._.relation_data else 0.0)
