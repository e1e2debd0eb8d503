"""Training, evaluation, errors, and CoNLL/JSONL -> model -> spaCy pipeline -> spacy.load in a new process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from distill_ner.data.errors import DistillError
from distill_ner.data.example import Entity, Example
from distill_ner.data.formats import write_conll, write_jsonl
from distill_ner.data.spec import load_spec
from tests.trainers.conftest import tiny_args
from distill_ner.trainers.evaluate import evaluate
from distill_ner.trainers.export.to_spacy import export_spacy
from distill_ner.trainers.scores import per_example_scores
from distill_ner.trainers.trainer import equal_step_epochs, train_student, train_teacher

pytestmark = pytest.mark.slow
NEW_TEXT = "The kakapo lives in mountain slopes and eats worms."


@pytest.fixture(scope="module")
def student(tiny_bert, data, teacher) -> Path:
    return train_student(data["train"], data["dev"], teacher, teacher.parent / "student", tiny_args(tiny_bert, student_layers=1), kd="hinton", alpha=0.5)


def test_training_moves_the_loss_and_learns(teacher):
    meta = json.loads((teacher / "model.json").read_text())
    losses = [h["loss"] for h in meta["history"]]
    assert losses[-1] < losses[0] * 0.7
    assert meta["dev"]["dev_f1"] > 0.5
    assert meta["relation_pairs"] > 0


def test_training_is_repeatable(tiny_bert, data, tmp_path):
    args = tiny_args(tiny_bert, epochs=1)
    a = json.loads((train_teacher(data["train"][:20], data["dev"], tmp_path / "a", args) / "model.json").read_text())
    b = json.loads((train_teacher(data["train"][:20], data["dev"], tmp_path / "b", args) / "model.json").read_text())
    assert a["history"][0]["loss"] == b["history"][0]["loss"]


def test_student_is_smaller_uses_cache_and_evaluates(student, teacher, data):
    meta = json.loads((student / "model.json").read_text())
    assert meta["kd"] == "hinton" and meta["parameters"] < meta["teacher_parameters"]
    assert list((teacher / "logits_cache").glob("ner-*.pt"))  # the teacher's logits, kept for the next student (other tests' students add theirs)
    metrics = evaluate(student, data["test"])
    assert {"f1", "precision", "recall", "macro_f1", "token_macro_f1", "per_label", "relations", "parameters", "size_mb", "sentences_per_second"} <= metrics.keys()
    assert set(metrics["per_label"]) <= {"SPECIES", "HABITAT", "FEEDING", "BREEDING"}
    assert metrics["sentences_per_second"] > 0
    assert (student / "metrics.md").read_text().count("|") > 10
    scores = per_example_scores(teacher, data["test"][:3])
    assert set(scores) == {e.id for e in data["test"][:3]} and all(v >= 0 for v in scores.values())


def test_annealing_student_trains(tiny_bert, data, teacher, tmp_path):
    path = train_student(data["train"][:20], data["dev"], teacher, tmp_path / "ann", tiny_args(tiny_bert, student_layers=1, epochs=2, anneal_max_temperature=2), kd="annealing")
    phases = [h["phase"] for h in json.loads((path / "model.json").read_text())["history"]]
    assert phases == ["anneal", "anneal", "train", "train"]


def test_a_pruned_student_takes_as_many_steps_as_on_all_the_data(tiny_bert, data, teacher, tmp_path):
    assert [equal_step_epochs(8, f) for f in (1.0, 0.7, 0.5, 0.1)] == [8, 12, 16, 32]  # at most 4x
    half = json.loads((train_student(data["train"][:10], data["dev"], teacher, tmp_path / "half", tiny_args(tiny_bert, student_layers=1, epochs=1, patience=5), kd="hinton", fraction=0.5) / "model.json").read_text())
    assert half["args"]["epochs"] == 2 and half["alpha"] == 0.75
    assert len(half["history"]) == 2
    same = json.loads((train_student(data["train"][:10], data["dev"], teacher, tmp_path / "same", tiny_args(tiny_bert, student_layers=1, epochs=1, equal_steps=False), kd="hinton", fraction=0.5) / "model.json").read_text())
    assert same["args"]["epochs"] == 1 and len(same["history"]) == 1


def test_spacy_pipeline_loads_in_a_new_process(student, data, tmp_path):
    evaluate(student, data["test"], measure_speed=False)  # metrics.json, which the export puts in meta.json
    out = export_spacy(student, tmp_path / "pipeline", load_spec("species"))
    meta = json.loads((out / "meta.json").read_text())
    assert meta["labels"]["distill_ner_re"] == ["SPECIES", "HABITAT", "FEEDING", "BREEDING"]
    assert meta["distill"]["source"]["kd"] == "hinton" and meta["distill"]["metrics"]
    code = (
        "import json, spacy, sys\n"
        f"nlp = spacy.load({str(out)!r})\n"
        f"doc = nlp({NEW_TEXT!r})\n"
        "docs = list(nlp.pipe([doc.text] * 5, batch_size=2))\n"
        "rels = [(h.text, t.text, l, s) for h, t, l, s in doc._.relations]\n"
        "print(json.dumps({'ents': [(e.text, e.label_) for e in doc.ents], 'rels': rels, 'n': len(docs)}))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env={"HF_HUB_OFFLINE": "1", "PATH": ""})
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["n"] == 5
    assert ["kakapo", "SPECIES"] in got["ents"]
    assert any(h == "kakapo" and l == "live_in" for h, _, l, _ in got["rels"])


def test_transformers_export_predicts_the_same_tags_as_the_model(student, data, tmp_path):
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    from distill_ner.trainers.export import export
    from distill_ner.trainers.modeling import load_model

    out = export("transformers", student, tmp_path / "hf", load_spec("species"))
    hf, tokenizer = AutoModelForTokenClassification.from_pretrained(out).eval(), AutoTokenizer.from_pretrained(out)
    ours = load_model(student)
    ids = tokenizer(NEW_TEXT, return_tensors="pt")
    with torch.no_grad():
        expected, _ = ours.model(ids["input_ids"], ids["attention_mask"])
        got = hf(**ids).logits
    assert torch.allclose(got, expected, atol=1e-5)
    assert hf.config.id2label[1] == ours.tags[1]


def test_a_new_exporter_is_one_registration(student, tmp_path, monkeypatch):
    import distill_ner.trainers.export as exporters
    from distill_ner.flows.cli import main

    (tmp_path / "labels_export.py").write_text(
        "import json\nfrom pathlib import Path\nfrom distill_ner.trainers.inference import read_meta\n"
        "def export_labels(model_dir, out_dir, spec=None):\n"
        "    Path(out_dir).mkdir(parents=True, exist_ok=True)\n"
        "    (Path(out_dir) / 'labels.json').write_text(json.dumps(read_meta(model_dir).entity_labels))\n"
        "    return Path(out_dir)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(exporters, "EXPORTERS", exporters.EXPORTERS.copy())
    exporters.register_exporter("labels", "labels_export:export_labels")
    with pytest.raises(SystemExit) as done:
        main(["export", str(student), str(tmp_path / "out"), "--format", "labels"])
    assert done.value.code == 0
    assert json.loads((tmp_path / "out" / "labels.json").read_text()) == ["SPECIES", "HABITAT", "FEEDING", "BREEDING"]
    with pytest.raises(DistillError, match="unknown export format 'onnx'"):
        exporters.exporter("onnx")


def test_spacy_package_builds_an_installable_package_that_requires_the_project(student, tmp_path):
    out = export_spacy(student, tmp_path / "pipeline", load_spec("species"))
    (tmp_path / "dist").mkdir()
    cmd = [sys.executable, "-m", "spacy", "package", str(out), str(tmp_path / "dist"), "--name", "tiny_student", "--version", "0.0.1", "--build", "sdist"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    package = tmp_path / "dist" / "en_tiny_student-0.0.1"
    assert (package / "dist" / "en_tiny_student-0.0.1.tar.gz").exists()
    assert "distill-ner" in (package / "en_tiny_student.egg-info" / "requires.txt").read_text()


def test_conll_files_through_the_cli(tiny_bert, data, tmp_path):
    from distill_ner.flows.cli import app

    for name in ("train", "dev", "test"):
        write_conll(tmp_path / f"{name}.conll", data[name][:20], drop_relations=True)
    result = CliRunner().invoke(app, [
        "train", "--train", str(tmp_path / "train.conll"), "--dev", str(tmp_path / "dev.conll"), "--test", str(tmp_path / "test.conll"),
        "--out", str(tmp_path / "models"), "--encoder", str(tiny_bert), "--epochs", "1", "--student-layers", "1", "--kd", "none", "--max-length", "64",
    ])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "models" / "student-none" / "metrics.json").exists()
    meta = json.loads((tmp_path / "models" / "teacher" / "model.json").read_text())
    assert meta["relation_labels"] == ["no_relation"]  # CoNLL carries no relations
    result = CliRunner().invoke(app, ["export-spacy", str(tmp_path / "models" / "student-none"), str(tmp_path / "nlp")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "nlp" / "meta.json").exists()


def test_own_data_without_dev_gets_a_seeded_dev_split_and_loses_its_test_duplicates(tiny_bert, data, tmp_path):
    from distill_ner.flows.cli import app

    train, test = data["train"][:30], data["test"][:10]
    write_jsonl(tmp_path / "train.jsonl", [*train, test[0], test[1].model_copy(update={"text": test[1].text.upper()})])  # two test texts again
    write_jsonl(tmp_path / "test.jsonl", test)
    before = (tmp_path / "test.jsonl").read_bytes()
    result = CliRunner().invoke(app, [
        "train", "--train", str(tmp_path / "train.jsonl"), "--test", str(tmp_path / "test.jsonl"), "--out", str(tmp_path / "models"),
        "--encoder", str(tiny_bert), "--epochs", "1", "--no-student", "--max-length", "64", "-s", "progress=false",
    ])
    assert result.exit_code == 0, result.output
    assert "of 30 training examples (seed 0) are the dev split" in result.output
    assert "removed 2 training and 0 dev example(s) whose text is also in the test split" in result.output.replace("\n", " ")
    meta = json.loads((tmp_path / "models" / "teacher" / "model.json").read_text())
    assert meta["n_train"] + meta["n_dev"] == 30 and meta["n_dev"] >= 1
    assert (tmp_path / "test.jsonl").read_bytes() == before


def test_a_transfer_file_through_the_cli_never_brings_in_a_test_text(tiny_bert, data, teacher, tmp_path):
    from distill_ner.flows.cli import app

    train, test, unlabelled = data["train"][:20], data["test"][:10], data["train"][20:40]
    write_jsonl(tmp_path / "train.jsonl", train)
    write_jsonl(tmp_path / "test.jsonl", test)
    write_jsonl(tmp_path / "transfer.jsonl", [*unlabelled, test[0], train[0]])  # a test text and a training text among them
    result = CliRunner().invoke(app, [
        "train", "--train", str(tmp_path / "train.jsonl"), "--test", str(tmp_path / "test.jsonl"), "--transfer", str(tmp_path / "transfer.jsonl"),
        "--teacher", str(teacher), "--out", str(tmp_path / "models"), "--epochs", "1", "--student-layers", "1", "-s", "progress=false",
    ])
    assert result.exit_code == 0, result.output
    assert "transfer set: 1 text(s) left out" in result.output
    assert json.loads((tmp_path / "models" / "student-hinton" / "model.json").read_text())["n_transfer"] == len(unlabelled)


def test_no_dev_split_trains_every_epoch_and_keeps_the_last(tiny_bert, data, teacher, tmp_path):
    meta = json.loads((train_teacher(data["train"][:20], [], tmp_path / "t", tiny_args(tiny_bert, epochs=2)) / "model.json").read_text())
    assert [h["epoch"] for h in meta["history"]] == [1, 2] and meta["best_epoch"] == 2 and meta["n_dev"] == 0
    student = train_student(data["train"][:20], [], teacher, tmp_path / "s", tiny_args(tiny_bert, epochs=2, student_layers=1), kd="hinton")
    assert json.loads((student / "model.json").read_text())["best_epoch"] >= 2


def test_bad_input_is_a_one_line_error(tiny_bert, data, tmp_path):
    args = tiny_args(tiny_bert, epochs=1)
    with pytest.raises(DistillError, match="train split is empty"):
        train_teacher([], data["dev"], tmp_path / "m", args)
    with pytest.raises(DistillError, match="dev split shares"):
        train_teacher(data["train"], data["train"][:3], tmp_path / "m", args)
    odd = Example(text="A dodo eats fruit.", entities=[Entity(start=2, end=6, label="BIRD")])
    with pytest.raises(DistillError, match="unknown entity label 'BIRD'"):
        train_teacher([odd], data["dev"], tmp_path / "m", args, spec=load_spec("species"))
    with pytest.raises(DistillError, match="directory not found"):
        train_teacher(data["train"], data["dev"], tmp_path / "m", {**args, "encoder": str(tmp_path / "missing")})
    write_jsonl(tmp_path / "t.jsonl", data["train"][:5])
    from distill_ner.flows.cli import app

    result = CliRunner().invoke(app, ["train", "--train", str(tmp_path / "t.jsonl"), "--dev", str(tmp_path / "t.jsonl"), "--test", str(tmp_path / "t.jsonl"), "--encoder", str(tiny_bert)])
    assert result.exit_code != 0 and isinstance(result.exception, DistillError) and "all 5 training examples also occur in the test split" in str(result.exception)


def test_long_text_is_windowed_not_truncated(tiny_bert, tmp_path, data):
    text = " ".join(e.text for e in data["train"][:12]) + " The saola eats worms."
    start = text.rindex("worms")
    long = Example(text=text, entities=[Entity(start=start, end=start + 5, label="FEEDING")])
    path = train_teacher([long, *data["train"][:10]], data["dev"][:4], tmp_path / "long", tiny_args(tiny_bert, epochs=1, max_length=32, stride=8))
    assert json.loads((path / "model.json").read_text())["texts_in_windows"] >= 1
    from distill_ner.trainers.inference import predict_entities
    from distill_ner.trainers.modeling import load_model

    (entities,) = predict_entities(load_model(path), [text])
    assert all(0 <= e.start < e.end <= len(text) for e in entities)  # offsets valid to the very end


@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs a CUDA GPU")
def test_training_on_cuda_gives_a_model_that_predicts_the_same_on_cpu(tiny_bert, data, tmp_path):
    import torch

    from distill_ner.trainers.inference import predict
    from distill_ner.trainers.modeling import load_model

    args = tiny_args(tiny_bert, device="cuda")
    teacher = train_teacher(data["train"], data["dev"], tmp_path / "teacher", args, spec=load_spec("species"))
    student = train_student(data["train"], data["dev"], teacher, tmp_path / "student", {**args, "student_layers": 1}, kd="hinton", alpha=0.5)
    assert json.loads((student / "model.json").read_text())["args"]["device"] == "cuda"
    assert all(t.device.type == "cpu" for t in torch.load(student / "heads.pt", weights_only=True).values())
    texts = [e.text for e in data["test"]] + [NEW_TEXT]
    on_gpu, on_cpu = predict(load_model(student, "cuda"), texts), predict(load_model(student, "cpu"), texts)
    assert load_model(student, "cuda").device.type == "cuda"
    same = [[(e.start, e.end, e.label) for e in a.entities] == [(e.start, e.end, e.label) for e in b.entities] for a, b in zip(on_gpu, on_cpu)]
    assert sum(same) >= len(same) - 1  # kernels differ in the last bits; a tie may flip one tag
    assert evaluate(student, data["test"], measure_speed=False)["f1"] > 0.3


def test_speed_is_measured_on_a_sample_not_the_whole_test_split(teacher, monkeypatch):
    import distill_ner.trainers.evaluate as evaluation
    from distill_ner.trainers.modeling import load_model

    predicted: list[int] = []
    monkeypatch.setattr(evaluation, "predict", lambda loaded, texts, batch_size=64: predicted.append(len(texts)) or [])
    assert evaluation.speed(load_model(teacher), ["The kakapo eats worms."] * 5000) > 0
    assert predicted == [64, 256, 256]  # a warm-up batch, then two timed passes over 256 sentences
