"""Pruning scores, the KD weight schedule, and a tiny sweep that writes its table and plots."""

import json
from pathlib import Path

import pytest
import torch

from distill_ner.data.errors import DistillError
from distill_ner.data.example import Entity, Example, Review
from distill_ner.data.example import llm_entities
from distill_ner.trainers.scores import IGNORE, disagreement_scores, el2n, entity_f1, token_losses
from distill_ner.trainers.kd.alpha import kd_alpha_for_fraction, parse_alpha_schedule
from distill_ner.trainers.sweep import as_rows, pareto_front, write_sweep_outputs


def test_kd_alpha_rises_as_the_kept_fraction_falls():
    alphas = [kd_alpha_for_fraction(f) for f in (1.0, 0.7, 0.5, 0.3, 0.1)]
    assert alphas == [0.5, 0.65, 0.75, 0.85, 0.95]
    assert kd_alpha_for_fraction(0.01) == 0.95
    assert kd_alpha_for_fraction(0.5, schedule=[(0.5, 0.2), (1.0, 0.0)]) == 0.2
    assert parse_alpha_schedule("0.1:0.9, 1.0:0.5") == [(0.1, 0.9), (1.0, 0.5)]
    with pytest.raises(DistillError):
        kd_alpha_for_fraction(0.0)
    with pytest.raises(DistillError):
        parse_alpha_schedule("0.1-0.9")


def test_loss_and_el2n_are_per_example_and_skip_untagged_pieces():
    confident = torch.tensor([[[10.0, -10.0], [-10.0, 10.0], [0.0, 0.0]]])
    labels = torch.tensor([[0, 1, IGNORE]])
    wrong = torch.tensor([[1, 0, IGNORE]])
    logits = torch.cat([confident, confident])
    both = torch.cat([labels, wrong])
    loss, norm = token_losses(logits, both), el2n(logits, both)
    assert loss[0] < 1e-6 < 10 < loss[1]
    assert norm[0] < 1e-6 and norm[1] == pytest.approx(2**0.5, abs=1e-4)


def test_disagreement_undoes_the_reviewers_changes():
    text = "Kakapo eat rimu fruit in New Zealand."
    species, food, place = Entity(start=0, end=6, label="SPECIES"), Entity(start=11, end=21, label="FEEDING"), Entity(start=25, end=36, label="HABITAT")
    wrong = Entity(start=25, end=36, label="SPECIES")
    diff = {"entities_added": [{"start": 25, "end": 36, "text": "New Zealand", "label": "HABITAT"}],
            "entities_removed": [{"start": 25, "end": 36, "text": "New Zealand", "label": "SPECIES"}]}
    corrected = Example(text=text, entities=[species, food, place], review=Review(status="corrected", diff=diff))
    accepted = Example(text=text + " ", entities=[species, food, place], review=Review(status="accepted"))
    assert set(llm_entities(corrected)) == {species, food, wrong}
    assert llm_entities(accepted) == [species, food, place]
    scores = disagreement_scores([corrected, accepted], [[species, food, place], [species, food, place]])
    assert scores == {corrected.id: pytest.approx(1 / 3), accepted.id: 0.0}
    assert entity_f1([], []) == 1.0 and entity_f1([species], []) == 0.0


def test_pareto_front_keeps_only_undominated_rows():
    cell = {"fraction": 1.0, "method": "all", "kd": "none", "precision": 0.5, "recall": 0.5, "model_dir": "m"}
    rows = [{**cell, "f1": 0.5, "parameters": 1}, {**cell, "f1": 0.4, "parameters": 2}, {**cell, "f1": 0.7, "parameters": 3}, {**cell, "f1": 0.7, "parameters": 4}]
    assert [r.parameters for r in pareto_front(rows, "parameters")] == [1, 3]


def test_sweep_outputs_from_rows(tmp_path):
    rows = [
        {"fraction": f, "method": m, "kd": kd, "alpha": kd_alpha_for_fraction(f) if kd != "none" else 0.0, "n_train": int(10 * f),
         "f1": f1, "precision": f1, "recall": f1, "parameters": 1000, "train_seconds": 2 * f, "model_dir": f"models/{m}-{f}-{kd}"}
        for f, m, kd, f1 in [(1.0, "all", "none", 0.6), (1.0, "all", "hinton", 0.62), (0.5, "random", "none", 0.5), (0.5, "random", "hinton", 0.61)]
    ]
    paths = write_sweep_outputs(rows, tmp_path)
    assert as_rows(json.loads(paths["json"].read_text())) == as_rows(rows)
    md = paths["md"].read_text()
    assert md.startswith("| fraction | method | kd | alpha |") and "F1 0.610 >= 0.600 (reached)" in md
    for key in ("f1_vs_fraction", "pareto"):
        assert paths[key].read_bytes()[:4] == b"\x89PNG"


def _splits():
    from tests.trainers.synthetic import make_examples

    unique = list({e.text: e for e in make_examples(40, seed=3)}.values())
    return {"train": unique[:14], "dev": unique[14:18], "test": unique[18:22]}


def test_sweep_on_a_tiny_encoder_writes_table_and_plots(tiny_bert, tmp_path):
    from distill_ner.trainers.scores import compute_scores
    from distill_ner.trainers.sweep import run_sweep
    from distill_ner.trainers.trainer import train_teacher

    splits = _splits()
    args = {"encoder": str(tiny_bert), "epochs": 1, "batch_size": 8, "progress": False, "threads": 1, "relations": False, "student_layers": 1}
    teacher = train_teacher(splits["train"], splits["dev"], tmp_path / "teacher", args)
    for method in ("teacher_loss", "el2n", "disagreement"):
        scores = compute_scores(method, teacher, splits["train"], dev=splits["dev"])
        assert set(scores) == {e.id for e in splits["train"]} and all(v >= 0 for v in scores.values())
    assert (tmp_path / "teacher-early" / "model.json").exists()

    rows = run_sweep(splits, teacher, [1.0, 0.5], ["random", "el2n"], ["none", "hinton"], args, tmp_path / "sweep", seeds=[0])
    students = [r for r in rows if r.method != "teacher"]
    assert sorted((r.fraction, r.method, r.kd) for r in students) == [
        (0.5, "el2n", "hinton"), (0.5, "el2n", "none"), (0.5, "random", "hinton"), (0.5, "random", "none"), (1.0, "all", "hinton"), (1.0, "all", "none")]
    assert {r.n_train for r in students if r.fraction == 0.5} == {7}
    assert {r.alpha for r in students if r.kd == "hinton"} == {0.5, 0.75}
    assert all(0 <= r.f1 <= 1 and r.parameters > 0 for r in rows)
    out = tmp_path / "sweep"
    assert as_rows(json.loads((out / "sweep.json").read_text())) == rows
    assert "| 0.500 | el2n | hinton | 0.750 | 7 |" in (out / "sweep.md").read_text()
    for png in ("sweep_f1_vs_fraction.png", "sweep_pareto.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG"
    removed = [json.loads(line) for line in (out / "pruned" / "el2n-0.5.removed.jsonl").read_text().splitlines()]
    assert len(removed) == 7 and all("by el2n" in r["reason"] for r in removed)
    # a rerun reuses every finished student
    mtime = (out / "models" / "random-0.5-none" / "heads.pt").stat().st_mtime_ns
    assert run_sweep(splits, teacher, [1.0, 0.5], ["random", "el2n"], ["none", "hinton"], args, out, seeds=[0]) == rows
    assert (out / "models" / "random-0.5-none" / "heads.pt").stat().st_mtime_ns == mtime


def test_mean_over_seeds_averages_each_cell_and_reports_the_spread():
    from distill_ner.trainers.sweep import half_data_verdict, mean_over_seeds, sweep_table

    def row(f, m, kd, f1):
        return {"fraction": f, "method": m, "kd": kd, "alpha": None, "n_train": 10, "f1": f1, "precision": f1, "recall": f1,
                "relation_f1": None, "parameters": 1000, "train_seconds": 1.0, "model_dir": ""}

    per_seed = [[row(1.0, "all", "none", 0.80), row(0.5, "random", "hinton", 0.70)],
                [row(1.0, "all", "none", 0.90), row(0.5, "random", "hinton", 0.90)]]
    rows = {(r.fraction, r.kd): r for r in mean_over_seeds(per_seed)}
    assert rows[1.0, "none"].f1 == pytest.approx(0.85) and rows[1.0, "none"].f1_std == pytest.approx(0.0707, abs=1e-4)
    assert rows[0.5, "hinton"].f1 == pytest.approx(0.80) and rows[0.5, "hinton"].seeds == 2
    assert rows[1.0, "none"].relation_f1 is None
    assert "| f1 | f1_std | seeds |" in sweep_table(list(rows.values()))
    assert "0.800 < 0.850 (not reached; means over 2 seeds" in half_data_verdict(list(rows.values()))


def test_sweep_over_seeds_repeats_the_grid_per_seed(tiny_bert, tmp_path):
    from distill_ner.trainers.sweep import run_sweep
    from distill_ner.trainers.trainer import train_teacher

    splits = _splits()
    args = {"encoder": str(tiny_bert), "epochs": 1, "batch_size": 8, "progress": False, "threads": 1, "relations": False, "student_layers": 1}
    teacher = train_teacher(splits["train"], splits["dev"], tmp_path / "teacher", args)
    out = tmp_path / "sweep"
    rows = run_sweep(splits, teacher, [1.0, 0.5], ["random"], ["none"], args, out, seeds=[0, 1])
    per_seed = {s: as_rows(json.loads((out / f"seed-{s}" / "sweep.json").read_text())) for s in (0, 1)}
    removed = {s: {json.loads(line)["example"]["id"] for line in (out / f"seed-{s}" / "pruned" / "random-0.5.removed.jsonl").read_text().splitlines()}
               for s in (0, 1)}
    assert len(removed[0]) == len(removed[1]) == 7 and removed[0] != removed[1]
    half = next(r for r in rows if r.fraction == 0.5)
    assert half.seeds == 2 and half.f1 == pytest.approx(sum(next(r.f1 for r in per_seed[s] if r.fraction == 0.5) for s in (0, 1)) / 2, abs=1e-4)
    assert as_rows(json.loads((out / "sweep.json").read_text())) == rows and "f1_std" in (out / "sweep.md").read_text()
    with pytest.raises(DistillError, match="distinct seeds"):
        run_sweep(splits, teacher, [1.0], ["random"], ["none"], args, out, seeds=[1, 1])


def test_a_transfer_setting_gives_the_pruned_away_examples_to_the_student_as_soft_targets(tiny_bert, tmp_path):
    from distill_ner.data.errors import DistillError
    from distill_ner.trainers.sweep import run_sweep
    from distill_ner.trainers.trainer import train_teacher

    splits = _splits()
    args = {"encoder": str(tiny_bert), "epochs": 1, "batch_size": 8, "progress": False, "threads": 1, "relations": False, "student_layers": 1}
    teacher = train_teacher(splits["train"], splits["dev"], tmp_path / "teacher", args)
    rows = run_sweep(splits, teacher, [1.0, 0.5], ["random"], ["hinton+transfer"], args, tmp_path / "sweep")
    (student,) = [r for r in rows if r.method != "teacher"]  # at 100% nothing was removed: no transfer student to train
    assert (student.kd, student.n_train) == ("hinton+transfer", 7)
    assert json.loads((Path(student.model_dir) / "model.json").read_text())["n_transfer"] == 7  # the 7 that pruning removed
    with pytest.raises(DistillError, match="transfer set is learned from the teacher"):
        run_sweep(splits, teacher, [0.5], ["random"], ["none+transfer"], args, tmp_path / "bad")


def test_extra_teachers_reach_the_kd_students_of_a_sweep(tiny_bert, tmp_path):
    from distill_ner.trainers.sweep import run_sweep
    from distill_ner.trainers.trainer import train_teacher

    splits = _splits()
    args = {"encoder": str(tiny_bert), "epochs": 1, "batch_size": 8, "progress": False, "threads": 1, "relations": False, "student_layers": 1}
    first = train_teacher(splits["train"], splits["dev"], tmp_path / "t0", args)
    second = train_teacher(splits["train"], splits["dev"], tmp_path / "t1", {**args, "seed": 1})
    rows = run_sweep(splits, first, [0.5], ["random"], ["none", "hinton"], {**args, "teacher_weighting": "gold_loss"}, tmp_path / "sweep", extra_teachers=[second])
    by_kd = {r.kd: r for r in rows if r.method != "teacher"}
    assert set(by_kd) == {"none", "hinton (2 teachers, gold_loss)"}
    taught = json.loads((Path(by_kd["hinton (2 teachers, gold_loss)"].model_dir) / "model.json").read_text())["teachers"]
    assert [Path(t).name for t in taught] == ["t0", "t1"]


def test_review_priority_adds_the_models_disagreement_with_the_llm_and_the_llms_own_doubt(teacher, data):
    from distill_ner.trainers.scores import predicted_entities, review_priority

    text = data["test"][0].text
    predicted = predicted_entities(teacher, [Example(text=text)])[0]
    assert predicted, "the tiny teacher should find an entity in its own test text"
    sure = [e.model_copy(update={"confidence": 1.0}) for e in predicted]
    agreed = Example(text=text, entities=sure, source={"origin": "agreed"})  # the same text: the same model doubt
    disputed = Example(text=text, entities=sure[1:], source={"origin": "disputed"})  # the LLM misses what the model finds
    unsure = Example(text=text, entities=[e.model_copy(update={"confidence": 1 / 3}) for e in predicted], source={"origin": "unsure"})
    need = review_priority(teacher, [agreed, disputed, unsure])
    f1 = entity_f1(sure[1:], predicted)
    assert need[disputed.id] - need[agreed.id] == pytest.approx((1 - f1) / 3, abs=1e-5)
    assert need[unsure.id] - need[agreed.id] == pytest.approx(2 / 9, abs=1e-5)
