"""Run configs: defaults, overrides, and one-line errors before anything starts."""

import pytest

from distill_ner.data.errors import DistillError
from distill_ner.flows.config import load_run_config
from distill_ner.flows.stages import run_stage
from distill_ner.trainers.inference import model_files
from distill_ner.trainers.kd import kd_names


def test_demo_config_with_overrides():
    config = load_run_config("demo", ["distill.kd=annealing", "llm.n=12", "review.mode=none"])
    assert config.name == "demo" and config.distill.kd == "annealing" and config.llm.n == 12
    assert config.review.mode == "none" and config.run_dir.name == "demo"


def test_settings_by_owner_and_the_old_train_section(capsys):
    config = load_run_config("demo", ["teacher.learning_rate=0.0003", "student.epochs=5", "distill.kd=none"])
    teacher, student = config.teacher_args(), config.student_args()
    assert teacher.learning_rate == student.learning_rate == 0.0003  # the student follows the teacher where it sets nothing
    assert student.epochs == 5 and teacher.epochs is None and student.kd == "none" and student.student_layers == 3
    old = load_run_config("demo", ["train.kd=annealing", "train.learning_rate=0.0003", "train.student_layers=2"])
    assert (old.distill.kd, old.teacher.learning_rate, old.student.student_layers) == ("annealing", 0.0003, 2)
    assert old.student_args().learning_rate == 0.0003
    note = capsys.readouterr().err
    assert note.count("\n") == 1 and "train.kd -> distill.kd" in note and "train.student_layers -> student.student_layers" in note


def test_the_student_learns_unreviewed_texts_by_default_when_it_has_a_teacher():
    assert load_run_config("demo", []).uses_transfer  # held-back and pruned-away texts are not wasted
    assert not load_run_config("demo", ["distill.kd=none"]).uses_transfer  # nothing to learn them from
    assert not load_run_config("demo", ["distill.transfer=false"]).uses_transfer


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["distill.kd=magic"], f"distill.kd: unknown KD method 'magic' (registered: {', '.join(kd_names())})"),
        (["train.kd=magic"], "override -s train.kd=magic: distill.kd: unknown KD method 'magic'"),
        (["student.kd=hinton"], "student.kd: Extra inputs are not permitted"),
        (["trian.kd=none"], "trian: Extra inputs are not permitted"),
        (["llm.n=-3"], "llm.n: Input should be greater than or equal to 1"),
        (["llm.n"], "is not key=value"),
        (["name=a/b"], "name: String should match pattern"),
    ],
)
def test_bad_config_is_one_line(overrides, message):
    with pytest.raises(DistillError) as err:
        load_run_config("demo", overrides)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_missing_and_broken_files(tmp_path):
    with pytest.raises(DistillError, match="not found"):
        load_run_config(tmp_path / "nope.yaml")
    (tmp_path / "bad.yaml").write_text("llm: [\n")
    with pytest.raises(DistillError, match="bad.yaml: not valid YAML"):
        load_run_config(tmp_path / "bad.yaml")


def test_stage_is_skipped_only_when_inputs_and_outputs_are_unchanged(tmp_path):
    calls, messages = [], []
    out = tmp_path / "artifact.txt"

    def body():
        calls.append(1)
        out.write_text("x")
        return {"path": str(out), "n": len(calls)}

    first = run_stage(tmp_path, "make", {"a": 1}, body, outputs=[out], log=messages.append)
    again = run_stage(tmp_path, "make", {"a": 1}, body, outputs=[out], log=messages.append)
    assert first == again and len(calls) == 1 and messages == ["skipping make: finished in an earlier run with the same inputs"]
    run_stage(tmp_path, "make", {"a": 2}, body, outputs=[out], log=messages.append)  # new inputs
    out.unlink()
    run_stage(tmp_path, "make", {"a": 2}, body, outputs=[out], log=messages.append)  # output gone
    assert len(calls) == 3


def test_a_stage_is_keyed_by_the_content_of_what_it_reads(tmp_path):
    spec, model = tmp_path / "spec.yaml", tmp_path / "model"
    spec.write_text("prompt: one\n")
    (model / "encoder").mkdir(parents=True)
    (model / "encoder" / "weights.bin").write_bytes(b"w1")
    calls = []

    def rerun() -> None:
        run_stage(tmp_path, "gen", {"n": 3}, lambda: calls.append(1), log=lambda m: None, reads=[spec, *model_files(model)])

    rerun()
    rerun()
    assert len(calls) == 1  # nothing edited: skipped
    spec.write_text("prompt: two\n")
    rerun()
    assert len(calls) == 2  # the spec edited (same name, same settings): run again
    (model / "metrics.json").write_text("{}")
    (model / "logits_cache").mkdir()
    rerun()
    assert len(calls) == 2  # what evaluation and KD write beside a model is not the model
    (model / "encoder" / "weights.bin").write_bytes(b"w2")
    rerun()
    assert len(calls) == 3  # new weights in a folder that is read: run again


def test_run_refuses_early_when_a_server_is_down(tmp_path):
    import os
    import subprocess
    import sys

    for override, expected in (("review.label_studio_url=http://127.0.0.1:9", "Label Studio at http://127.0.0.1:9 is not answering"),
                               ("llm.base_url=http://127.0.0.1:9/v1", "LLM server at http://127.0.0.1:9/v1 is not reachable")):
        extra = [] if override.startswith("review") else ["-s", "review.mode=none"]
        env = {**os.environ, "LABEL_STUDIO_API_KEY": "0" * 40}  # a token, so the server is what is missing
        out = subprocess.run([sys.executable, "-m", "distill_ner.flows.cli", "run", "-s", override, "-s", f"runs_dir={tmp_path}", *extra],
                             capture_output=True, text=True, timeout=120, env=env)
        assert out.returncode == 1 and expected in out.stderr and "Traceback" not in out.stderr
        assert not (tmp_path / "demo").exists()  # nothing started


def test_the_work_pool_is_named_in_one_place(monkeypatch):
    """scripts/prefect.sh exports PREFECT_POOL and prefect.yaml reads it, so another pool name
    reaches every deployment (and the worker the script starts)."""
    import re
    from pathlib import Path

    import yaml
    from prefect.utilities.templating import apply_values

    repo = Path(__file__).resolve().parents[2]
    deployments = yaml.safe_load((repo / "prefect.yaml").read_text())["deployments"]
    monkeypatch.setenv("PREFECT_POOL", "team-pool")
    resolved = apply_values(deployments, {}, remove_notset=False)  # what `prefect deploy` does with the environment
    assert {d["work_pool"]["name"] for d in resolved} == {"team-pool"}
    script = (repo / "scripts" / "prefect.sh").read_text()
    assert re.search(r"export PREFECT_POOL=\$\{PREFECT_POOL:-distill-pool\}", script)
    assert "distill-pool" not in (repo / "prefect.yaml").read_text().replace("default distill-pool", "")


def test_flow_tasks_retry_server_hiccups_but_not_user_errors():
    from prefect.states import Failed

    from distill_ner.flows.distill_flow import _worth_retrying

    assert not _worth_retrying(None, None, Failed(data=DistillError("Label Studio project 'x' not found")))
    assert _worth_retrying(None, None, Failed(data=ConnectionResetError("reset by peer")))
