"""The ONNX runtime of the student (issue 17, item 3): ONNX fp32 predicts what torch predicts,
int8 stays close, the spaCy pipeline runs it and carries it through to_disk/to_bytes, and the
torch runtime stays the default (and works) where onnxruntime is not installed."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import spacy
import torch
from typer.testing import CliRunner

from distill_ner.data.errors import DistillError
from distill_ner.data.example import Example
from distill_ner.data.spec import load_spec
from tests.trainers.synthetic import make_examples
from distill_ner.trainers.export.to_spacy import export_spacy
from distill_ner.trainers.inference import predict
from distill_ner.trainers.onnx_runtime import load_runtime
from distill_ner.trainers.modeling import load_model, window_outputs
from distill_ner.trainers.ner import ner_features
from distill_ner.trainers.relations import relation_pairs
from distill_ner.trainers.spacy_pipeline import FACTORY

pytest.importorskip("onnxruntime")
pytestmark = pytest.mark.slow
LONG = " ".join(e.text for e in make_examples(12, seed=7))  # several windows at max_length 64, stride 16


@pytest.fixture(scope="module")
def onnx_dirs(teacher, tmp_path_factory) -> dict[str, Path]:
    from distill_ner.trainers.export.to_onnx import export_onnx

    root = tmp_path_factory.mktemp("onnx")
    return {"fp32": export_onnx(teacher, root / "fp32"), "int8": export_onnx(teacher, root / "int8", quantize="int8")}


@pytest.fixture(scope="module")
def texts(data) -> list[str]:
    return [LONG, *[e.text for e in data["test"]]]


def outputs(model_dir: Path, runtime: str, examples: list[Example]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Tag logits per window and relation logits per gold entity pair (the heads' raw outputs)."""
    loaded = load_runtime(model_dir, runtime=runtime)
    features, encoded = ner_features(loaded.tokenizer, examples, loaded.tags, loaded.meta.max_length, loaded.meta.stride)
    pairs = relation_pairs(features, encoded, examples, loaded.meta.entity_labels, [tuple(p) for p in loaded.meta.allowed_pairs], loaded.relation_labels)
    assert len(features) > len(examples) and len(pairs.pairs) > 10  # windows and relation pairs exercised
    return window_outputs(loaded, features, pairs, batch_size=8)


def plain(examples: list[Example]) -> list[tuple]:
    return [
        ([(e.start, e.end, e.label, round(e.confidence, 3)) for e in x.entities], [(r.head, r.tail, r.label, round(r.confidence, 3)) for r in x.relations]) for x in examples
    ]


def test_onnx_heads_equal_torch_and_int8_stays_close(teacher, onnx_dirs, data):
    examples = [*data["test"], Example(text=LONG, entities=[], relations=[])]
    examples[-1] = make_long_gold()
    torch_tags, torch_rels = outputs(teacher, "torch", examples)
    for name, tolerance in (("fp32", 1e-4), ("int8", 0.25)):  # int8 (tiny random model): probabilities within 0.25, 97% of the argmaxes equal
        tags, rels = outputs(onnx_dirs[name], "onnx", examples)
        for mine, theirs in ((tags, torch_tags), (rels, torch_rels)):
            mine, theirs = torch.cat(mine).softmax(-1), torch.cat(theirs).softmax(-1)
            diff, same = float((mine - theirs).abs().max()), float((mine.argmax(-1) == theirs.argmax(-1)).float().mean())
            assert diff < tolerance and same >= (1.0 if name == "fp32" else 0.97), (name, diff, same)
        if name == "int8":  # quantized for real, not a copy of the fp32 graphs
            assert float(max((a - b).abs().max() for a, b in zip(tags, torch_tags))) > 1e-3
            import onnx

            for graph in ("tagger.onnx", "relations.onnx"):
                ops = {node.op_type for node in onnx.load(onnx_dirs["int8"] / "onnx" / graph).graph.node}
                assert {"DynamicQuantizeLinear", "MatMulInteger"} <= ops, (graph, ops)


def make_long_gold() -> Example:
    """The long paragraph with its template entities and relations (offsets shifted)."""
    parts, entities, relations, start = [], [], [], 0
    for ex in make_examples(12, seed=7):
        base = len(entities)
        entities += [e.model_copy(update={"start": e.start + start, "end": e.end + start}) for e in ex.entities]
        relations += [r.model_copy(update={"head": r.head + base, "tail": r.tail + base}) for r in ex.relations]
        parts.append(ex.text)
        start += len(ex.text) + 1
    return Example(text=" ".join(parts), entities=entities, relations=relations)


def test_onnx_predictions_equal_torch(teacher, onnx_dirs, texts):
    expected = predict(load_model(teacher), texts, batch_size=4)
    assert sum(len(x.relations) for x in expected) >= 5 and all(x.entities for x in expected[1:])
    assert plain(predict(load_runtime(onnx_dirs["fp32"], runtime="onnx"), texts, batch_size=4)) == plain(expected)
    int8 = predict(load_runtime(onnx_dirs["int8"], runtime="onnx"), texts, batch_size=4)
    same = sum([e[:3] for e in a[0]] == [e[:3] for e in b[0]] for a, b in zip(plain(int8), plain(expected)))
    assert same >= 0.8 * len(texts)


def test_onnx_spacy_pipeline_round_trips(teacher, texts, tmp_path):
    reference = spacy.load(export_spacy(teacher, tmp_path / "torch", load_spec("species")))
    path = export_spacy(teacher, tmp_path / "onnx", load_spec("species"), runtime="onnx")
    model = path / FACTORY / "model"
    assert (model / "onnx" / "tagger.onnx").exists() and (model / "onnx" / "relations.onnx").exists()
    assert not (model / "heads.pt").exists() and not (model / "encoder" / "model.safetensors").exists()  # no torch weights
    nlp = spacy.load(path)
    assert nlp.get_pipe(FACTORY).cfg["runtime"] == "onnx" and nlp.meta["distill"]["runtime"] == "onnx"
    assert type(nlp.get_pipe(FACTORY).loaded.model).__name__ == "OnnxNerRe"

    def summary(docs):
        return [([(e.start_char, e.end_char, e.label_) for e in d.ents], [tuple(r[:7]) + (round(r[7], 3),) for r in d._.relation_data]) for d in docs]

    expected = summary(reference.pipe(texts, batch_size=4))
    assert summary(nlp.pipe(texts, batch_size=4)) == expected
    again = spacy.blank("en")
    again.add_pipe(FACTORY, config={"runtime": "onnx"})
    again.from_bytes(nlp.to_bytes())  # the ONNX graphs travel in the bytes
    assert summary(again.pipe(texts, batch_size=4)) == expected
    again.to_disk(tmp_path / "copy")
    assert summary(spacy.load(tmp_path / "copy").pipe(texts)) == expected


def test_cli_exports_an_int8_pipeline(teacher, tmp_path):
    from distill_ner.flows.cli import app

    result = CliRunner().invoke(app, ["export-spacy", str(teacher), str(tmp_path / "int8"), "--quantize", "int8"])
    assert result.exit_code == 0, result.output
    nlp = spacy.load(tmp_path / "int8")
    assert nlp.meta["distill"]["quantize"] == "int8" and nlp.get_pipe(FACTORY).loaded.model.info["quantize"] == "int8"
    doc = nlp("The axolotl lives in Lake Xochimilco and eats worms.")
    assert doc.ents
    with pytest.raises(DistillError, match="needs --runtime onnx"):
        export_spacy(teacher, tmp_path / "bad", runtime="torch", quantize="int8")
    with pytest.raises(DistillError, match="unknown quantization"):
        export_spacy(teacher, tmp_path / "bad", runtime="onnx", quantize="int4")


def test_torch_stays_the_default_without_onnxruntime(teacher, onnx_dirs, texts, tmp_path, monkeypatch):
    both = tmp_path / "both"  # torch weights and onnx/ in one model directory
    import shutil

    shutil.copytree(teacher, both)
    shutil.copytree(onnx_dirs["fp32"] / "onnx", both / "onnx")
    assert type(load_runtime(both, runtime="auto").model).__name__ == "OnnxNerRe"
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if not installed
    assert isinstance(load_runtime(both, runtime="auto").model, torch.nn.Module)
    assert isinstance(load_model(both).model, torch.nn.Module)
    nlp = spacy.load(export_spacy(teacher, tmp_path / "torch"))  # the default export runs on torch
    assert nlp.get_pipe(FACTORY).cfg["runtime"] == "torch" and nlp(texts[1]).ents
    with pytest.raises(DistillError, match="pip install onnxruntime"):
        load_runtime(onnx_dirs["fp32"], runtime="onnx")
    with pytest.raises(DistillError, match="pip install onnxruntime"):
        export_spacy(teacher, tmp_path / "onnx", runtime="onnx")
