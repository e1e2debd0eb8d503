"""Every KD path is proven by behaviour: the student follows the teacher where the labels say
otherwise, Annealing-KD's phase 1 pulls the student's logits to the teacher's, and prediction
reads every window of a long text. Each test fails when its path is cut (see the docstrings)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from distill_ner.data.example import Example
from tests.trainers.conftest import tiny_args
from distill_ner.trainers.kd.annealing import Annealing
from distill_ner.trainers.inference import predict_entities
from distill_ner.trainers.modeling import load_model, ner_batch
from distill_ner.trainers.ner import ner_features
from distill_ner.trainers.trainer import train_student

pytestmark = pytest.mark.slow


def lying(examples: list[Example]) -> list[Example]:
    """The same texts with every SPECIES labelled HABITAT: labels the teacher disagrees with."""
    return [e.model_copy(update={"entities": [x.model_copy(update={"label": "HABITAT"}) if x.label == "SPECIES" else x for x in e.entities], "relations": []})
            for e in examples]


def species_share(model_dir: Path, examples: list[Example]) -> float:
    """Of the gold SPECIES spans, the share the model predicts as SPECIES (same span)."""
    predicted = predict_entities(load_model(model_dir), [e.text for e in examples])
    gold = [(i, x.start, x.end) for i, e in enumerate(examples) for x in e.entities if x.label == "SPECIES"]
    found = {(i, x.start, x.end) for i, p in enumerate(predicted) for x in p if x.label == "SPECIES"}
    return sum(g in found for g in gold) / len(gold)


@pytest.mark.parametrize("student", ["teacher layers", "fresh"])
def test_a_student_on_pure_kd_follows_the_teacher_not_the_labels(tiny_bert, data, teacher, tmp_path, student):
    """Fails if Hinton KD ignores the teacher's logits: the student then learns the lying labels,
    or, when the KD term carries no gradient, a fresh student (it knows only what it is taught)
    learns nothing, where one made of teacher layers would still look like the teacher."""
    train = lying(data["train"])
    if student == "fresh":
        args, dev = tiny_args(tiny_bert, student_encoder=str(tiny_bert), epochs=6, relations=False), []  # no dev split: each run keeps its last epoch
    else:
        args, dev = tiny_args(tiny_bert, student_layers=1, epochs=4, relations=False), lying(data["dev"])
    kd = train_student(train, dev, teacher, tmp_path / "kd", args, kd="hinton", alpha=1.0, temperature=1.0)
    labels = train_student(train, dev, teacher, tmp_path / "ce", args, kd="hinton", alpha=0.0)
    teacher_share = species_share(teacher, data["test"])
    assert teacher_share > 0.8
    assert species_share(kd, data["test"]) > teacher_share - 0.15  # still the teacher's SPECIES
    assert species_share(labels, data["test"]) < 0.3  # the labels alone teach HABITAT


@torch.inference_mode()
def logit_distance(model_dir: Path, teacher: Path, examples: list[Example]) -> float:
    """Mean squared distance between a model's tag logits and the teacher's on the same windows."""
    student, ref = load_model(model_dir), load_model(teacher)
    feats, _ = ner_features(ref.tokenizer, examples, ref.tags, ref.meta.max_length, ref.meta.stride, ref.meta.subword_labels)
    b = ner_batch(feats, ref.tokenizer.pad_token_id or 0, torch.device("cpu"))
    mask = b["mask"].bool()
    return float(((student.model(b["ids"], b["mask"])[0] - ref.model(b["ids"], b["mask"])[0])[mask] ** 2).mean())


def test_annealing_phase_one_pulls_the_students_logits_to_the_teachers(tiny_bert, data, teacher, tmp_path, monkeypatch):
    """Fails if phase 1 trains on the labels instead of regressing on the (annealed) teacher logits."""
    monkeypatch.setattr(Annealing, "phases", lambda self, args, phases=Annealing.phases: phases(self, args)[:1])  # phase 1 only
    train = lying(data["train"])  # no dev split: each run keeps its last epoch
    args = tiny_args(tiny_bert, student_encoder=str(tiny_bert), epochs=2, anneal_max_temperature=2, anneal_epoch_share=3, relations=False)
    annealed = train_student(train, [], teacher, tmp_path / "anneal", args, kd="annealing")  # 6 epochs of phase 1
    plain = train_student(train, [], teacher, tmp_path / "plain", {**args, "epochs": 6}, kd="none")
    assert logit_distance(annealed, teacher, data["test"]) < 0.5 * logit_distance(plain, teacher, data["test"])
    assert species_share(annealed, data["test"]) > species_share(plain, data["test"])


def test_entities_in_the_last_window_of_a_long_text_are_found(teacher):
    """Fails if prediction reads only the first window (or drops the last one)."""
    sentence = "The kakapo lives in mountain slopes and eats worms. "
    text = sentence * 30  # about 400 word pieces: many 64-piece windows
    (found,) = predict_entities(load_model(teacher), [text])
    head = [x for x in found if x.end <= 3 * len(sentence)]
    tail = [x for x in found if x.start >= len(text) - 3 * len(sentence)]
    assert head and len(tail) >= len(head) // 2  # the last sentences are read as the first ones are


def test_a_transfer_set_teaches_the_student_what_the_teacher_knows(tiny_bert, data, teacher, tmp_path):
    """Fails if the transfer texts are dropped, or carry no soft target (or a hard "O" one)."""
    few, unlabelled = data["train"][:6], data["train"][6:]
    args = tiny_args(tiny_bert, student_encoder=str(tiny_bert), relations=False)  # a fresh student: it knows only what it is taught
    with_transfer = train_student(few, [], teacher, tmp_path / "transfer", {**args, "epochs": 4}, kd="hinton", alpha=0.5, transfer=unlabelled)
    alone = train_student(few, [], teacher, tmp_path / "alone", {**args, "epochs": 32}, kd="hinton", alpha=0.5)  # as many steps
    meta = json.loads((with_transfer / "model.json").read_text())
    assert meta["n_transfer"] == len(unlabelled) and meta["history"][-1]["step"] == 4 * 8
    assert species_share(with_transfer, data["test"]) > species_share(alone, data["test"]) + 0.3


def test_soft_only_positions_get_the_teachers_loss_and_no_gold_loss():
    from distill_ner.trainers.kd.base import SOFT_ONLY, cross_entropy
    from distill_ner.trainers.kd.hinton import hinton_loss

    student, teacher = torch.randn(5, 3), torch.randn(5, 3)
    soft = torch.full((5,), SOFT_ONLY)
    assert float(cross_entropy(student, soft)) == 0.0
    kl = torch.nn.functional.kl_div(student.log_softmax(-1), teacher.log_softmax(-1), log_target=True, reduction="batchmean")
    assert torch.isclose(hinton_loss(student, teacher, soft, alpha=0.5, temperature=1.0), 0.5 * kl)


def test_a_transfer_set_needs_a_teacher(tiny_bert, data, teacher, tmp_path):
    from distill_ner.data.errors import DistillError

    with pytest.raises(DistillError, match="transfer set"):
        train_student(data["train"][:6], [], teacher, tmp_path / "s", tiny_args(tiny_bert, epochs=1), kd="none", transfer=data["train"][6:10])


def test_teacher_weights_favour_the_teacher_that_gets_the_gold_right():
    from distill_ner.trainers.kd.ensemble import combine_teachers, teacher_weights

    right, wrong = torch.tensor([[5.0, 0.0], [0.0, 5.0]]), torch.tensor([[0.0, 5.0], [5.0, 0.0]])
    gold = [0, 1]
    assert teacher_weights([right, wrong], gold, "equal").tolist() == [0.5, 0.5]
    w = teacher_weights([right, wrong], gold, "gold_loss")
    assert w[0] > 0.99 and torch.isclose(w.sum(), torch.tensor(1.0))
    assert teacher_weights([right, wrong], [-1, -100], "gold_loss").tolist() == [0.5, 0.5]  # a transfer window: no gold
    tags, pairs, mean = combine_teachers([[right], [wrong]], [[torch.tensor([1.0, 3.0])], [torch.tensor([3.0, 1.0])]], [gold], [0], "equal")
    assert torch.allclose(tags[0], (right + wrong) / 2) and torch.allclose(pairs[0], torch.tensor([2.0, 2.0])) and mean == [0.5, 0.5]


def test_a_student_learns_from_every_teacher_and_trusts_the_one_that_gets_the_gold_right(tiny_bert, data, teacher, tmp_path):
    """Fails if the extra teachers are ignored (equal weights then change nothing), or if the
    per-example weights ignore the gold labels."""
    from distill_ner.data.spec import load_spec
    from distill_ner.trainers.trainer import train_teacher

    liar = train_teacher(lying(data["train"]), lying(data["dev"]), tmp_path / "liar", tiny_args(tiny_bert), spec=load_spec("species"))
    args = tiny_args(tiny_bert, student_layers=1, epochs=4, relations=False)
    gold = data["train"]  # true labels: the teacher is right on them, the liar is not
    alone = train_student(gold, [], teacher, tmp_path / "alone", args, kd="hinton", alpha=1.0, temperature=1.0)
    equal = train_student(gold, [], teacher, tmp_path / "equal", {**args, "teacher_weighting": "equal"}, kd="hinton", alpha=1.0, temperature=1.0, extra_teachers=[liar])
    weighted = train_student(gold, [], teacher, tmp_path / "weighted", {**args, "teacher_weighting": "gold_loss"}, kd="hinton", alpha=1.0, temperature=1.0, extra_teachers=[liar])
    shares = {name: species_share(path, data["test"]) for name, path in (("alone", alone), ("equal", equal), ("weighted", weighted))}
    assert shares["equal"] < shares["alone"] - 0.2, shares  # the liar's HABITAT logits pull the student away
    assert shares["weighted"] > shares["equal"] + 0.2, shares  # ... unless the weights follow the gold
    weights = json.loads((weighted / "model.json").read_text())["teacher_weights"]
    assert weights[0] > 0.6 and json.loads((equal / "model.json").read_text())["teacher_weights"] == [0.5, 0.5]


@torch.inference_mode()
def hidden_distance(model_dir: Path, teacher: Path, examples: list[Example]) -> float:
    """Mean squared distance between each student layer's output and the teacher layer it stands for."""
    from distill_ner.trainers.kd.hidden import matched_teacher_layers

    student, ref = load_model(model_dir), load_model(teacher)
    feats, _ = ner_features(ref.tokenizer, examples, ref.tags, ref.meta.max_length, ref.meta.stride, ref.meta.subword_labels)
    b = ner_batch(feats, ref.tokenizer.pad_token_id or 0, torch.device("cpu"))
    s = student.model.encoder(input_ids=b["ids"], attention_mask=b["mask"], output_hidden_states=True).hidden_states[1:]
    t = ref.model.encoder(input_ids=b["ids"], attention_mask=b["mask"], output_hidden_states=True).hidden_states[1:]
    mask = b["mask"].bool()
    matched = matched_teacher_layers(len(t), len(s))
    return float(sum(((s[j] - t[k])[mask] ** 2).mean() for j, k in enumerate(matched)) / len(s))


def test_hidden_state_kd_pulls_the_students_layers_to_the_teachers(tiny_bert, data, teacher, tmp_path):
    """Fails if `hinton_hidden` drops its layer loss (it is then Hinton KD with alpha 0 here: the labels alone)."""
    args = tiny_args(tiny_bert, student_layers=1, epochs=4, relations=False)
    matched = train_student(data["train"], [], teacher, tmp_path / "hidden", {**args, "hidden_weight": 10.0}, kd="hinton_hidden", alpha=0.0)
    plain = train_student(data["train"], [], teacher, tmp_path / "plain", args, kd="none")
    assert hidden_distance(matched, teacher, data["test"]) < 0.5 * hidden_distance(plain, teacher, data["test"])


def test_hidden_state_kd_needs_a_student_made_of_teacher_layers(tiny_bert, data, teacher, tmp_path):
    from distill_ner.data.errors import DistillError

    with pytest.raises(DistillError, match="made of teacher layers"):
        train_student(data["train"][:8], [], teacher, tmp_path / "s", tiny_args(tiny_bert, student_encoder=str(tiny_bert), epochs=1), kd="hinton_hidden")


def test_the_llm_is_one_more_teacher_on_the_transfer_texts(tiny_bert, data, teacher, tmp_path):
    """Fails if `llm_teacher` (the default) leaves the LLM's annotation of the transfer texts out of
    their soft targets, or applies it to transfer texts that no LLM annotated (a user's file)."""
    few, unannotated = data["train"][:6], lying(data["train"][6:])
    by_llm = [e.model_copy(update={"source": e.source.model_copy(update={"model": "llm"})}) for e in unannotated]  # an LLM that calls every SPECIES a HABITAT, sure of it
    args = tiny_args(tiny_bert, student_encoder=str(tiny_bert), relations=False, epochs=4)
    model_only = train_student(few, [], teacher, tmp_path / "model", {**args, "llm_teacher": False}, kd="hinton", alpha=1.0, temperature=1.0, transfer=by_llm)
    with_llm = train_student(few, [], teacher, tmp_path / "llm", args, kd="hinton", alpha=1.0, temperature=1.0, transfer=by_llm)
    file_texts = train_student(few, [], teacher, tmp_path / "file", args, kd="hinton", alpha=1.0, temperature=1.0, transfer=unannotated)
    assert species_share(with_llm, data["test"]) < species_share(model_only, data["test"]) - 0.2
    assert species_share(file_texts, data["test"]) == species_share(model_only, data["test"])
    assert [json.loads((d / "model.json").read_text())["n_transfer_llm"] for d in (model_only, with_llm, file_texts)] == [0, len(by_llm), 0]


def test_llm_soft_targets_follow_the_k_sample_agreement():
    from distill_ner.data.example import Entity
    from distill_ner.trainers.kd.llm_teacher import llm_log_probs
    from distill_ner.trainers.ner import tag_names

    tags = tag_names(["HABITAT", "SPECIES"])
    offsets, starts = [(0, 3), (4, 9), (9, 11), (12, 17)], [True, True, False, True]  # "The snowy ##ab ridge"
    probs = llm_log_probs([Entity(start=4, end=17, label="HABITAT", confidence=2 / 3)], offsets, starts, tags).exp()
    assert probs[0, tags.index("O")] > 0.99
    assert torch.isclose(probs[1, tags.index("B-HABITAT")], torch.tensor(2 / 3), atol=0.01) and torch.isclose(probs[1, 0], torch.tensor(1 / 3), atol=0.01)
    assert probs[3, tags.index("I-HABITAT")] > 0.6 and probs[2, 0] > 0.99  # a continuation piece carries no label of its own
