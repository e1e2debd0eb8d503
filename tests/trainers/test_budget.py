"""How long training runs: a step budget scaled to the data, patience counted in dev evaluations,
and the reason each phase stopped recorded in model.json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.trainers.conftest import tiny_args
from distill_ner.trainers.trainer import MAX_EPOCHS, MIN_EPOCHS, budget_epochs, train_student, train_teacher

pytestmark = pytest.mark.slow


def test_the_budget_gives_small_data_more_epochs_and_large_data_fewer():
    assert budget_epochs(25, 2000) == MAX_EPOCHS  # 200 examples at batch 8: capped
    assert budget_epochs(125, 2000) == 16  # 1,000 examples
    assert budget_epochs(2500, 2000) == MIN_EPOCHS  # 20,000 examples
    assert budget_epochs(25, 2000, scale=2.0) == 2 * MAX_EPOCHS  # a half-data student may take twice the epochs


def test_epochs_none_resolves_from_the_budget_and_says_why_training_stopped(tiny_bert, data, tmp_path):
    # 24 windows at batch 8 = 3 steps per epoch; a budget of 12 steps is 4 epochs
    meta = json.loads((train_teacher(data["train"][:24], [], tmp_path / "t", tiny_args(tiny_bert, epochs=None, step_budget=12, patience=1)) / "model.json").read_text())
    assert meta["args"]["epochs"] == 4
    assert [h["epoch"] for h in meta["history"]] == [1, 2, 3, 4]  # no dev split: no early stop
    assert meta["stop_reasons"] == ["train: all 4 epochs (12 steps) done"]


def test_patience_counts_dev_evaluations_inside_an_epoch(tiny_bert, data, teacher, tmp_path):
    # learning rate ~0: the dev score never improves after the first evaluation, so with an
    # evaluation every 2 steps and patience 2 the phase stops after 3 evaluations (6 steps), in epoch 1
    args = tiny_args(tiny_bert, epochs=3, eval_every=2, patience=2, min_train_share=0.0, learning_rate=1e-12, head_learning_rate=1e-12, student_layers=1)
    meta = json.loads((train_student(data["train"], data["dev"], teacher, tmp_path / "s", args, kd="none") / "model.json").read_text())
    assert [h["step"] for h in meta["history"]] == [2, 4, 6]
    assert [h["epoch"] for h in meta["history"]] == [1, 1, 1]
    assert meta["stop_reasons"][0].startswith("train: early stop at epoch 1 (step 6 of 24): no dev improvement in 2 evaluations")
    assert meta["best_epoch"] == 1


def test_no_early_stop_before_the_minimum_share_of_the_steps(tiny_bert, data, teacher, tmp_path):
    # as above, but the default keeps training until half of the 24 planned steps are done
    args = tiny_args(tiny_bert, epochs=3, eval_every=2, patience=2, learning_rate=1e-12, head_learning_rate=1e-12, student_layers=1)
    meta = json.loads((train_student(data["train"], data["dev"], teacher, tmp_path / "s", args, kd="none") / "model.json").read_text())
    assert meta["args"]["min_train_share"] == 0.5 and [h["step"] for h in meta["history"]][-1] == 12
    assert meta["stop_reasons"][0].startswith("train: early stop at epoch 2 (step 12 of 24)")
    assert meta["best_epoch"] == 1  # the best state is still the one kept


def test_search_picks_the_setting_with_the_best_dev_score_and_the_student_follows(tiny_bert, data, tmp_path):
    from distill_ner.trainers.teachers import train_teacher_searched

    # a learning rate of 1e-12 learns nothing: the search must choose 3e-3, on dev scores alone
    args = tiny_args(tiny_bert, search=True, search_learning_rates=[1e-12, 3e-3], search_epochs=[2], search_seeds=2, relations=False)
    teacher = train_teacher_searched(data["train"], data["dev"], tmp_path / "t", args)
    meta = json.loads((teacher / "model.json").read_text())
    grid = meta["search"]["grid"]
    assert [(t["learning_rate"], t["epochs"], len(t["dev_scores"])) for t in grid] == [(1e-12, 2, 2), (3e-3, 2, 2)]
    assert grid[1]["mean_dev_score"] > grid[0]["mean_dev_score"]
    assert meta["search"]["best"] == {"learning_rate": 3e-3, "epochs": 2}
    assert meta["args"]["learning_rate"] == 3e-3 and meta["args"]["epochs"] == 2
    assert not list(tmp_path.glob("*/lr*"))  # the trial models are not left behind
    student = train_student(data["train"], data["dev"], teacher, tmp_path / "s", {**args, "learning_rate": 1e-12, "student_layers": 1}, kd="none")
    assert json.loads((student / "model.json").read_text())["args"]["learning_rate"] == 3e-3


def test_search_without_a_dev_split_is_one_clear_error(tiny_bert, data, tmp_path):
    from distill_ner.data.errors import DistillError
    from distill_ner.trainers.teachers import train_teacher_searched

    with pytest.raises(DistillError, match="dev split"):
        train_teacher_searched(data["train"], [], tmp_path / "t", tiny_args(tiny_bert, search=True))


def test_the_kept_weights_are_the_moving_average_of_the_trained_ones(tiny_bert, data, tmp_path):
    import torch
    from torch.optim.optimizer import register_optimizer_step_post_hook

    from distill_ner.trainers.evaluate import ner_scores
    from distill_ner.trainers.inference import predict_entities
    from distill_ner.trainers.modeling import load_model

    def train(*a, **kw) -> tuple[Path, list[list[torch.Tensor]]]:
        """Train a teacher; return its folder and its head weights after each optimizer step."""
        trained: list[list[torch.Tensor]] = []
        hook = register_optimizer_step_post_hook(lambda optimizer, *_: trained.append([p.detach().clone() for p in optimizer.param_groups[-1]["params"]]))
        try:
            return train_teacher(*a, **kw), trained
        finally:
            hook.remove()

    def head(path: Path) -> list[torch.Tensor]:
        return [p.detach() for n, p in load_model(path).model.named_parameters() if not n.startswith("encoder.")]

    # no dev split: 24 windows at batch 8, 2 epochs = 6 steps, and the last average is kept
    path, trained = train(data["train"][:24], [], tmp_path / "t", tiny_args(tiny_bert, epochs=2, ema_decay=0.5, relations=False))
    assert len(trained) == 6
    average = trained[0]  # the first update copies, then ema = d * ema + (1 - d) * weights, d = min(0.5, (1 + n) / (10 + n))
    for n, step in enumerate(trained[1:], 1):
        d = min(0.5, (1 + n) / (10 + n))
        average = [d * a + (1 - d) * w for a, w in zip(average, step)]
    assert all(torch.allclose(k, a, atol=1e-6) for k, a in zip(head(path), average, strict=True))
    assert not all(torch.allclose(k, w, atol=1e-4) for k, w in zip(head(path), trained[-1]))

    # with a dev split, the averaged weights are scored on dev and saved: none of the trained ones
    path, trained = train(data["train"], data["dev"], tmp_path / "d", tiny_args(tiny_bert, epochs=3, ema_decay=0.9, relations=False))
    assert not any(all(torch.allclose(k, w, atol=1e-4) for k, w in zip(head(path), step)) for step in trained)
    meta = json.loads((path / "model.json").read_text())
    assert meta["args"]["ema_decay"] == 0.9
    assert ner_scores(data["dev"], predict_entities(load_model(path), data["dev"]))["f1"] == pytest.approx(meta["dev"]["dev_f1"], abs=1e-4)
