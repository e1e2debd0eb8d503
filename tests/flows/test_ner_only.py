"""A spec with entity types and no relation types, through the whole flow: mock LLM, a real Label
Studio, a tiny random encoder, the spaCy export (torch and ONNX) and `distill evaluate`.

The spec is the species spec cut down to SPECIES and HABITAT with no relations (the mock LLM
answers with the labels of the request's schema only). What must hold: the Label Studio project
offers the two labels and no relation types, the student has no relation head (nothing to
train, nothing to store), and the exported pipeline predicts only the spec's labels and no
relations; the generate schema allows no relation at all for such a spec (else the mock, like a
lax LLM, adds relations the spec does not know, and grounding rejects their examples).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

from distill_ner.annotators.generate import annotate_schema, item_schema
from distill_ner.annotators.label_studio import check_config, client, instructions, label_config, project_title
from distill_ner.data.formats import read_jsonl
from distill_ner.data.spec import SPECS_DIR, load_spec

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
LABELS = ["SPECIES", "HABITAT"]


def ner_only_spec(directory: Path, name: str) -> Path:
    """species.yaml with only SPECIES and HABITAT, no relation types, 12 topics."""
    raw = yaml.safe_load((SPECS_DIR / "species.yaml").read_text())
    raw["name"] = name
    raw["entities"] = [e for e in raw["entities"] if e["label"] in LABELS]
    raw["relations"] = []
    for shot in raw["few_shot"]:
        shot["entities"] = [e for e in shot["entities"] if e["label"] in LABELS]
        shot["relations"] = []
    raw["topics"] = {group: topics[:2] for group, topics in list(raw["topics"].items())[:6]}
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def test_label_studio_config_of_a_ner_only_spec(tmp_path):
    """No (empty) <Relations> block, a header that asks for no relations and no relation list in
    the instructions; the config still checks against its spec."""
    spec = load_spec(ner_only_spec(tmp_path, "ner-only-config"))
    config = label_config(spec)
    assert "<Relation" not in config and "relation" not in config.lower()
    check_config(spec, config, "here")
    assert "Relations" not in instructions(spec) and "SPECIES" in instructions(spec)
    full = label_config(load_spec("species"))  # a spec with relations keeps them
    assert "<Relations>" in full and 'value="live_in"' in full and "relations" in full.lower()


def test_no_relation_types_no_relation_head(tiny_bert):
    """`no_relation` alone: no relation head (nothing to train or store), and a pair asked about
    anyway is no_relation."""
    from transformers import AutoModel

    from distill_ner.trainers.encoders import count_parameters
    from distill_ner.trainers.modeling import NerReModel

    encoder = AutoModel.from_pretrained(tiny_bert)
    model = NerReModel(encoder, n_tags=5, n_relations=1, n_entity_labels=2)
    assert model.re_head is None and count_parameters(model) == count_parameters(encoder) + count_parameters(model.ner_head)
    assert not [k for k in model.state_dict() if not k.startswith(("encoder.", "ner_head."))]
    hidden = torch.randn(2, 7, encoder.config.hidden_size)
    pairs = {"rows": torch.tensor([0, 1, 1]), "head": torch.tensor([[1, 2]] * 3), "tail": torch.tensor([[3, 5]] * 3), "labels": torch.tensor([[0, 1]] * 3)}
    assert model.re_logits(hidden, pairs).tolist() == [[0.0]] * 3
    assert NerReModel(encoder, n_tags=5, n_relations=2, n_entity_labels=2).re_head is not None  # one relation type: a head


def test_generate_schema_of_a_ner_only_spec_allows_no_relation(tmp_path):
    for schema in (item_schema, annotate_schema):
        relations = schema(load_spec(ner_only_spec(tmp_path, "ner-only-schema")))["properties"]["relations"]
        assert relations["maxItems"] == 0
        assert relations["items"]["properties"]["label"].get("enum") != []  # an empty enum crashes llama.cpp
    assert item_schema(load_spec("species"))["properties"]["relations"]["maxItems"] > 0


def test_the_mock_writes_no_relation_for_a_schema_that_allows_none(tmp_path):
    import random

    from distill_ner.annotators.generate import chat_messages, generate_schema
    from distill_ner.annotators.mock_llm import MockConfig, MockLLM

    spec = load_spec(ner_only_spec(tmp_path, "ner-only-mock"))
    for schema, prompt, variables in (
        (generate_schema(spec, 5), "generate", {"n": 5, "topic": "Olm (Proteus anguinus)"}),
        (annotate_schema(spec), "annotate", {"text": "The snow leopard lives in the Himalayas and hunts blue sheep."}),
    ):
        payload = {
            "model": "mock", "seed": 0, "messages": chat_messages(spec, prompt, **variables),
            "response_format": {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema}},
        }
        answer = json.loads(MockLLM(MockConfig(error_rate=0.0)).answer(payload, random.Random(0)))
        items = answer.get("examples", [answer])
        assert any(item["entities"] for item in items) and not any(item["relations"] for item in items)


@pytest.fixture(scope="module")
def ner_only_run(prefect, ls_env, tiny_bert, tmp_path_factory):
    from distill_ner.flows.distill_flow import distill

    tmp = tmp_path_factory.mktemp("ner-only")
    spec = ner_only_spec(tmp, "ner-only-e2e")
    overrides = [
        f"runs_dir={tmp}", "name=nero", f"spec={spec}", "llm.n=24", "llm.concurrency=4", "generation_batches=2",
        "review.accuracy=1.0", "review.convention_drift=0.0", "split.dev=0.2", "split.test=0.25",
        f"teacher.encoder={tiny_bert}", "teacher.epochs=2", "student.student_layers=1", "teacher.batch_size=8", "review.budget=null",
    ]
    report = distill(str(REPO / "flows/configs/demo.yaml"), overrides)
    return tmp / "nero", spec, Path(report)


def test_ner_only_flow_end_to_end(ner_only_run, ls_env, tmp_path):
    run_dir, spec_path, report = ner_only_run
    spec = load_spec(spec_path)
    assert report.exists()

    # Label Studio: the project offers exactly the spec's labels and no relation tool
    ls = client(ls_env.connection)
    project = next(p for p in ls.projects.list() if p.title == project_title(spec, "nero"))
    full = ls.projects.get(id=project.id)
    assert "<Relations" not in full.label_config and "<Relation " not in full.label_config
    check_config(spec, full.label_config, "the run's project")
    assert "Relations:" not in (full.expert_instruction or "")

    # generated, verified: the two labels, no relations
    generated, verified = read_jsonl(run_dir / "generated.jsonl"), read_jsonl(run_dir / "verified.jsonl")
    assert len(generated) >= 15 and len(verified) == len(generated)
    for e in [*generated, *verified]:
        assert not e.relations and {x.label for x in e.entities} <= set(LABELS)
    assert {x.label for e in verified for x in e.entities} == set(LABELS)

    # the student: no relation head, so no relation parameters stored or counted
    student = run_dir / "models" / "student"
    meta = json.loads((student / "model.json").read_text())
    assert meta["relation_labels"] == ["no_relation"] and meta["allowed_pairs"] == []
    assert meta["relation_pairs"] == 0
    heads = torch.load(student / "heads.pt", weights_only=True)
    assert sorted(heads) == ["ner_head.bias", "ner_head.weight"]

    # `distill evaluate` and `distill export-spacy` (torch and ONNX) on the run's models
    from distill_ner.flows.cli import app

    def distill_cli(*args: str) -> str:
        result = CliRunner().invoke(app, list(args), catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.output

    distill_cli("evaluate", str(student), "--test", str(run_dir / "verified"), "--out", str(tmp_path / "eval"))
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert set(metrics["per_label"]) <= set(LABELS) and 0 <= metrics["f1"] <= 1
    onnx = tmp_path / "student-onnx"
    distill_cli("export-spacy", str(student), str(onnx), "--spec", str(spec_path), "--runtime", "onnx")
    assert [p.name for p in onnx.rglob("*.onnx")] == ["tagger.onnx"]  # no relation graph

    code = (
        "import json, spacy, sys\n"
        "for path in sys.argv[1:]:\n"
        "    nlp = spacy.load(path)\n"
        "    pipe = nlp.get_pipe(nlp.pipe_names[-1])\n"
        "    docs = list(nlp.pipe(['The Amur leopard lives in the temperate forests of the Russian Far East and hunts roe deer.',\n"
        "                          'Female hawksbill turtles lay about 140 eggs in sandy nests on tropical beaches.'] * 4))\n"
        "    print(json.dumps({'labels': sorted(pipe.labels), 'ents': sorted({e.label_ for d in docs for e in d.ents}),\n"
        "                      'relations': [len(d._.relations) for d in docs], 'types': sorted({type(d._.relations).__name__ for d in docs})}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(run_dir / "student-spacy"), str(onnx)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    for line in out.stdout.splitlines():
        seen = json.loads(line)
        assert seen["labels"] == sorted(LABELS)
        assert set(seen["ents"]) <= set(LABELS)
        assert seen["types"] == ["list"] and set(seen["relations"]) == {0}
