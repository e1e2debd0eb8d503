"""Training: the teacher (full encoder) and the student (fewer layers or a small encoder, with KD).

    train_teacher(train, dev, out_dir, args=None, spec=None) -> Path
    train_student(train, dev, teacher_dir, out_dir, args=None, kd=None, alpha=None,
                  temperature=None, fraction=1.0) -> Path

Both train NER (BIO tags on word pieces) and, when the data has relations, relation
classification (span pairs, with "no_relation") on one shared encoder: every batch of windows
gives both losses from one forward pass. Training runs the phases of the KD method (`trainers/kd/`;
the teacher's is plain cross-entropy), each with a fresh AdamW and linear warm-up and decay;
after each epoch the dev split is scored (mean of entity micro F1 and relation weighted F1), a
phase may stop after `args.patience` epochs without improvement (not before `args.min_train_share`
of its steps), and every phase ends on its best epoch (the next phase starts there). With
`args.ema_decay`, what is scored and kept is an exponential moving average of the weights. Seeded
and repeatable.
Examples with `review.status == "rejected"` are dropped. `args` is a `TrainingArgs` or anything
`TrainingArgs.from_any` takes (e.g. a dict).
"""

from __future__ import annotations

import copy
import math
import os
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch.optim.swa_utils import AveragedModel
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeElapsedColumn
from rich.text import Text
from transformers import get_linear_schedule_with_warmup, set_seed

from distill_ner.data.errors import DistillError
from distill_ner.data.dedup import normalize_text
from distill_ner.data.example import Example, check_gold, usable
from distill_ner.data.formats import check_labels
from distill_ner.data.words import words_of
from distill_ner.trainers.args import TrainingArgs
from distill_ner.trainers.kd import kd_method
from distill_ner.trainers.kd.alpha import kd_alpha_for_fraction
from distill_ner.trainers.kd.base import IGNORE, SOFT_ONLY, KDMethod, Phase
from distill_ner.trainers.kd.ensemble import combine_teachers
from distill_ner.trainers.kd.hidden import hidden_loss, matched_teacher_layers
from distill_ner.trainers.kd.llm_teacher import llm_log_probs, llm_taught
from distill_ner.trainers.encoders import layer_list, load_encoder, resolve_encoder, truncate_layers
from distill_ner.trainers.evaluate import ner_scores, relation_scores
from distill_ner.trainers.inference import Loaded, ModelInfo, predict_entities, read_meta
from distill_ner.trainers.modeling import NerReModel, load_model, ner_batch, pair_batch, pick_device, save_model, window_outputs
from distill_ner.trainers.ner import N_SPECIAL, Encoded, NerFeature, content_positions, ner_features, tag_names, word_starts
from distill_ner.trainers.relations import NO_RELATION, Pairs, allowed_pairs_from_examples, allowed_pairs_from_spec, relation_pairs
from distill_ner.trainers.teacher_cache import cached_teacher_logits


# --- data checks ------------------------------------------------------------------------------
def check_split(name: str, examples: Sequence[Example]) -> None:
    if not examples:
        raise DistillError(f"the {name} split is empty (after dropping rejected examples): nothing to train or score on")


def check_disjoint(train: Sequence[Example], other: Sequence[Example], name: str) -> None:
    """A dev or test split must share no text with training (scores would be inflated)."""
    seen = {normalize_text(e.text) for e in train}
    shared = [e for e in other if normalize_text(e.text) in seen]
    if shared:
        raise DistillError(f"the {name} split shares {len(shared)} text(s) with training (e.g. example {shared[0].id}); split without overlap (distill split)")


def label_sets(train: Sequence[Example], dev: Sequence[Example], spec: Any = None) -> tuple[list[str], list[str], list[tuple[str, str]]]:
    """Entity labels, relation labels (no_relation first) and allowed pairs, from a spec or the data."""
    if spec is not None:
        check_labels([*train, *dev], spec.entity_labels, spec.relation_labels)
        return list(spec.entity_labels), [NO_RELATION, *spec.relation_labels], allowed_pairs_from_spec(spec)
    entities = sorted({x.label for e in [*train, *dev] for x in e.entities})
    relations = sorted({r.label for e in [*train, *dev] for r in e.relations})
    if not entities:
        raise DistillError("the training data has no entities at all: nothing to learn")
    return entities, [NO_RELATION, *relations], allowed_pairs_from_examples(train)


# --- features ---------------------------------------------------------------------------------
@dataclass
class Features:
    ner: list[NerFeature]
    pairs: Pairs  # relation candidates, each located in one NER window
    windows_split: int  # texts longer than one window
    transfer: list[tuple[Example, Encoded]] = field(default_factory=list)  # transfer texts (window .example - n_labelled)
    n_labelled: int = 0
    silver: frozenset[int] = frozenset()  # the training examples (indices) whose review status is silver


def build_features(tokenizer: Any, examples: Sequence[Example], meta: ModelInfo, with_relations: bool, transfer: Sequence[Example] = ()) -> Features:
    """NER windows and (when asked) relation pairs of the examples, with what was windowed or
    skipped; then the windows of the `transfer` texts, whose tagged positions are SOFT_ONLY."""
    ner, encoded = ner_features(tokenizer, examples, meta.tags, meta.max_length, meta.stride, meta.subword_labels)
    windowed = len({f.example for f in ner if f.first_token > 0})
    pairs = relation_pairs(ner, encoded, examples, meta.entity_labels, meta.allowed_pairs, meta.relation_labels) if with_relations else Pairs()
    silver = frozenset(i for i, e in enumerate(examples) if e.review.status == "silver")
    if not transfer:
        return Features(ner, pairs, windowed, n_labelled=len(examples), silver=silver)
    soft, encoded_transfer = ner_features(tokenizer, transfer, meta.tags, meta.max_length, meta.stride, meta.subword_labels)
    ner += [replace(f, example=len(examples) + f.example, labels=[IGNORE if y == IGNORE else SOFT_ONLY for y in f.labels]) for f in soft]
    return Features(ner, pairs, windowed, list(zip(transfer, encoded_transfer, strict=True)), len(examples), silver)


# --- public API -------------------------------------------------------------------------------
def train_teacher(train: Sequence[Example], dev: Sequence[Example], out_dir: str | Path, args: Any = None, spec: Any = None) -> Path:
    """Fine-tune the full encoder on the training split; save it to `out_dir`; return `out_dir`."""
    args = TrainingArgs.from_any(args)
    train, dev = _prepare(train, dev, args.silver_weight)
    entity_labels, relation_labels, allowed = label_sets(train, dev, spec)
    _setup(args)
    encoder, tokenizer = load_encoder(args.encoder)
    meta = _meta("teacher", entity_labels, relation_labels, allowed, args, source=resolve_encoder(args.encoder))
    model = NerReModel(encoder, len(meta.tags), len(relation_labels), len(entity_labels))
    return _train_and_save(model, tokenizer, meta, train, dev, args, out_dir, teachers=[], method=kd_method("none"))


def train_student(
    train: Sequence[Example],
    dev: Sequence[Example],
    teacher_dir: str | Path,
    out_dir: str | Path,
    args: Any = None,
    kd: str | None = None,
    alpha: float | None = None,
    temperature: float | None = None,
    fraction: float = 1.0,
    transfer: Sequence[Example] = (),
    extra_teachers: Sequence[str | Path] = (),
) -> Path:
    """Train a smaller student with KD from the teacher in `teacher_dir`; save to `out_dir`.

    The student is `args.student_layers` of the teacher's layers (heads copied too), or
    `args.student_encoder` when set (it must share the teacher's vocabulary for KD). `kd`,
    `alpha`, `temperature` override `args`; with `args.search`, the learning rate and epochs the
    teacher's search chose are used (`trainers/teachers.py`); alpha None follows the pruning `fraction`
    (`trainers.kd.alpha.kd_alpha_for_fraction`: 0.5 on all the data). With `args.equal_steps`, a
    pruned student trains for `epochs / fraction` epochs (`equal_step_epochs`).
    `transfer`: texts no human labelled (their annotations are ignored); the student learns the
    teacher's soft targets on them, next to teacher + gold labels on `train` (a KD method that
    uses the teacher is needed). Texts also in train or dev are left out.
    `extra_teachers`: more teachers (same labels and vocabulary); the soft targets are their and
    `teacher_dir`'s logits combined per window by `args.teacher_weighting` (`trainers/kd/ensemble.py`).
    """
    args = TrainingArgs.from_any(args, **{k: v for k, v in (("kd", kd), ("alpha", alpha), ("temperature", temperature)) if v is not None})
    if args.alpha is None:
        args = args.model_copy(update={"alpha": kd_alpha_for_fraction(fraction)})
    found = read_meta(teacher_dir).search if args.search else None
    if found:  # the teacher's `--search` chose the learning rate and epochs
        args = args.model_copy(update=found["best"])
    scale = min(1 / fraction, MAX_STEP_SCALE) if args.equal_steps and fraction < 1 else 1.0
    if scale > 1:
        update = {"patience": equal_step_epochs(args.patience, fraction)}
        if args.epochs is not None:
            update["epochs"] = equal_step_epochs(args.epochs, fraction)
        args = args.model_copy(update=update)
    method = kd_method(args.kd)
    train, dev = _prepare(train, dev, args.silver_weight)
    transfer = transfer_texts(transfer, [*train, *dev])
    if transfer and not method.uses_teacher:
        raise DistillError(f"a transfer set is learned from the teacher's soft targets: use a KD method with a teacher, not --kd {args.kd}")
    _setup(args)
    teacher = load_model(teacher_dir, device=str(pick_device(args.device)))
    tm = teacher.meta
    for e in [*train, *dev]:
        for ent in e.entities:
            if ent.label not in tm.entity_labels:
                raise DistillError(f"example {e.id}: entity label {ent.label!r} is unknown to the teacher {teacher_dir}")
    teachers = [teacher, *(load_model(t, device=str(pick_device(args.device))) for t in extra_teachers)]
    for other in teachers[1:]:
        if (other.meta.tags, other.meta.relation_labels) != (tm.tags, tm.relation_labels) or other.tokenizer.get_vocab() != teacher.tokenizer.get_vocab():
            raise DistillError(f"teacher {other.path}: its labels or vocabulary differ from those of {teacher_dir}; several teachers must share them")
    if getattr(method, "matches_layers", False) and args.student_encoder:
        raise DistillError(f"--kd {args.kd} matches the student's layers to the teacher's: the student must be made of teacher layers (no student_encoder)")
    model, tokenizer, source = _student_model(teacher, args)
    meta = _meta("student", tm.entity_labels, tm.relation_labels, tm.allowed_pairs, args, source=source).model_copy(
        update={"teacher": str(teacher_dir), "kd": args.kd, "alpha": args.alpha, "temperature": args.temperature, "fraction": fraction,
                "teacher_parameters": tm.parameters, "n_transfer": len(transfer),
                "n_transfer_llm": sum(llm_taught(transfer, args.llm_teacher)), "teachers": [str(t.path) for t in teachers]}
    )
    return _train_and_save(model, tokenizer, meta, train, dev, args, out_dir, teachers=teachers, method=method, epoch_scale=scale, transfer=transfer)


def transfer_texts(examples: Sequence[Example], labelled: Sequence[Example]) -> list[Example]:
    """The transfer set: `examples` one per text, none whose text is in `labelled`, without relations
    or review; their entities (the LLM's, with k-sample confidences, where `source.model` says an LLM
    annotated them) are used only as the LLM teacher."""
    seen = {normalize_text(e.text) for e in labelled}
    out = []
    for e in examples:
        key = normalize_text(e.text)
        if e.text.strip() and key not in seen:
            seen.add(key)
            out.append(Example(id=e.id, text=e.text, entities=e.entities, words=e.words, source=e.source))  # entities and source serve `llm_teacher` only; a file's own tokens stay
    return out


MAX_STEP_SCALE = 4.0
MIN_EPOCHS, MAX_EPOCHS = 3, 20  # the range of epochs the step budget may choose


def budget_epochs(batches_per_epoch: int, step_budget: int, scale: float = 1.0) -> int:
    """Epochs for about `step_budget` optimizer steps, between MIN_EPOCHS and MAX_EPOCHS (both times
    `scale`, the equal-steps factor of a pruned student): 200 examples get many epochs, 20,000 few."""
    epochs = math.ceil(step_budget / max(1, batches_per_epoch) - 1e-9)
    return max(math.ceil(MIN_EPOCHS * scale), min(math.ceil(MAX_EPOCHS * scale), epochs))


def equal_step_epochs(epochs: int, fraction: float) -> int:
    """Epochs (or evaluations of patience) on a kept `fraction` of the data that take about the
    optimizer steps of `epochs` on all of it (at most `MAX_STEP_SCALE` times more): pruning saves
    data, not learning."""
    return max(1, math.ceil(epochs * min(1 / fraction, MAX_STEP_SCALE) - 1e-9))


# --- internals --------------------------------------------------------------------------------
def _prepare(train: Sequence[Example], dev: Sequence[Example], silver_weight: float = 0.0) -> tuple[list[Example], list[Example]]:
    """Usable train and dev examples (silver training examples only with a `silver_weight`); an
    empty dev split means no early stopping (all epochs, the last kept)."""
    train, dev = [e for e in usable(train) if silver_weight or e.review.status != "silver"], usable(dev)
    check_split("train", train)
    check_gold("dev", dev)
    check_disjoint(train, dev, "dev")
    return train, dev


def _setup(args: TrainingArgs) -> None:
    torch.set_num_threads(args.threads or max(1, os.cpu_count() or 1))
    set_seed(args.seed)
    random.seed(args.seed)


def _meta(role: str, entity_labels: list[str], relation_labels: list[str], allowed: list[tuple[str, str]], args: TrainingArgs, source: str) -> ModelInfo:
    return ModelInfo(
        role=role, entity_labels=entity_labels, tags=tag_names(entity_labels), relation_labels=relation_labels, allowed_pairs=list(allowed),
        max_length=args.max_length, stride=args.stride, subword_labels=args.subword_labels, source_encoder=source, kd="none", args=args.model_dump(),
    )


def _student_model(teacher: Loaded, args: TrainingArgs) -> tuple[NerReModel, Any, str]:
    n_tags, n_rel = len(teacher.meta.tags), len(teacher.meta.relation_labels)
    if args.student_encoder:
        encoder, tokenizer = load_encoder(args.student_encoder)
        if args.kd != "none" and tokenizer.get_vocab() != teacher.tokenizer.get_vocab():
            raise DistillError(f"student encoder {args.student_encoder}: KD on word pieces needs the teacher's vocabulary; use --kd none or layers of the teacher")
        return NerReModel(encoder, n_tags, n_rel, len(teacher.meta.entity_labels)), tokenizer, resolve_encoder(args.student_encoder)
    model = copy.deepcopy(teacher.model).cpu()
    truncate_layers(model.encoder, args.student_layers)
    return model, teacher.tokenizer, f"{teacher.path} (layers {args.student_layers} of {teacher.model.encoder.config.num_hidden_layers})"


def _teacher_logits(teacher: Loaded, feats: Features, args: TrainingArgs) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """The teacher's tag logits per window and relation logits per pair (cached on disk)."""
    inputs = [f.input_ids for f in feats.ner] + [[p.feature, *p.head, *p.tail, *p.labels] for p in feats.pairs.pairs]
    out = cached_teacher_logits(teacher.path, inputs, lambda: dict(zip(("ner", "re"), window_outputs(teacher, feats.ner, feats.pairs, args.eval_batch_size))), "ner-re")
    return out["ner"], out["re"]


def _soft_targets(teachers: list[Loaded], feats: Features, args: TrainingArgs, tags: list[str]) -> tuple[list[torch.Tensor], list[torch.Tensor], list[float]]:
    """Tag and relation logits of one teacher, or of several combined per window (and each
    teacher's mean weight); with `args.llm_teacher`, the windows of transfer texts the LLM annotated
    also average in its k-sample soft annotation (`trainers/kd/llm_teacher.py`)."""
    outputs = [_teacher_logits(t, feats, args) for t in teachers]
    if len(outputs) == 1:
        ner, re, weights = outputs[0][0], outputs[0][1], [1.0]
    else:
        ner, re, weights = combine_teachers([o[0] for o in outputs], [o[1] for o in outputs], [f.labels for f in feats.ner], [p.feature for p in feats.pairs.pairs], args.teacher_weighting)
    taught = llm_taught([example for example, _ in feats.transfer], args.llm_teacher)
    if any(taught):
        ner = [_with_llm(logits, f, feats, tags) if f.example >= feats.n_labelled and taught[f.example - feats.n_labelled] else logits
               for logits, f in zip(ner, feats.ner, strict=True)]
    return ner, re, weights


def _with_llm(logits: torch.Tensor, feature: NerFeature, feats: Features, tags: list[str]) -> torch.Tensor:
    """A transfer window's soft target: the mean of the teacher's and the LLM's log-probabilities."""
    example, enc = feats.transfer[feature.example - feats.n_labelled]
    n = len(feature.input_ids) - N_SPECIAL
    window = slice(feature.first_token, feature.first_token + n)
    llm = torch.zeros(len(feature.input_ids), len(tags))  # special tokens: no target (their labels are IGNORE)
    llm[content_positions(None, n)] = llm_log_probs(example.entities, enc.offsets[window], word_starts(words_of(example), enc.offsets)[window], tags)
    return (torch.log_softmax(logits.float(), -1) + llm) / 2


def _train_and_save(model: NerReModel, tokenizer: Any, meta: ModelInfo, train: list[Example], dev: list[Example], args: TrainingArgs, out_dir: str | Path,
                    teachers: list[Loaded], method: KDMethod, epoch_scale: float = 1.0, transfer: Sequence[Example] = ()) -> Path:
    """Train `model` through the KD method's phases, keep the best dev epoch, save to `out_dir`."""
    with_re = args.relations and len(meta.relation_labels) > 1 and bool(meta.allowed_pairs)
    feats = build_features(tokenizer, train, meta, with_re, transfer)
    if args.epochs is None:
        args = args.model_copy(update={"epochs": budget_epochs(math.ceil(len(feats.ner) / args.batch_size), args.step_budget, epoch_scale)})
        meta = meta.model_copy(update={"args": args.model_dump()})
    teacher_ner, teacher_re, weights = _soft_targets(teachers, feats, args, meta.tags) if teachers and method.uses_teacher else ([], [], [])
    if len(teachers) > 1:
        meta = meta.model_copy(update={"teacher_weights": weights})
    device = pick_device(args.device)
    model.to(device)
    start = time.perf_counter()
    fit = _Fit(model, tokenizer, meta, feats, dev, args, device, teacher_ner, teacher_re, teachers[0] if teachers else None)
    for phase in method.phases(args):
        fit.run(phase)
    meta = meta.model_copy(update={
        "train_seconds": round(time.perf_counter() - start, 1), "n_train": len(train), "n_dev": len(dev), "texts_in_windows": feats.windows_split,
        "relation_pairs": len(feats.pairs.pairs), "relation_pairs_skipped": feats.pairs.skipped, "history": fit.history,
        "best_epoch": fit.best_epoch, "dev": fit.best_scores, "stop_reasons": fit.stop_reasons,
    })
    model.cpu()
    return save_model(model, tokenizer, meta, out_dir)


class _Fit:
    """The epoch loop shared by teacher and student: the KD method's phases, each ending on its best dev epoch."""

    def __init__(self, model: NerReModel, tokenizer: Any, meta: ModelInfo, feats: Features, dev: list[Example], args: TrainingArgs, device: torch.device,
                 teacher_ner: list, teacher_re: list, teacher: Loaded | None = None) -> None:
        self.model, self.tokenizer, self.meta, self.feats, self.dev, self.args, self.device = model, tokenizer, meta, feats, dev, args, device
        self.teacher_ner, self.teacher_re, self.teacher = teacher_ner, teacher_re, teacher
        self.taps: tuple[_LayerTaps, _LayerTaps] | None = None  # student and teacher layer outputs, for hidden-state KD
        self.pairs_of = feats.pairs.by_feature()
        self.history: list[dict[str, Any]] = []
        self.stop_reasons: list[str] = []
        self.step, self.stale = 0, 0
        self.best_score, self.best_epoch, self.best_state, self.best_scores = -1.0, 0, None, {}
        self.epoch = 0
        self.ema: AveragedModel | None = None  # the averaged weights of the phase in training (`args.ema_decay`)

    def _batches(self, epoch: int) -> list[list[int]]:
        """Window index batches in a seeded order (each batch also carries its windows' pairs)."""
        g = torch.Generator().manual_seed(self.args.seed * 1000 + epoch)
        order = torch.randperm(len(self.feats.ner), generator=g).tolist()
        return [order[i : i + self.args.batch_size] for i in range(0, len(order), self.args.batch_size)]

    def _optimizer(self, steps: int) -> tuple[torch.optim.Optimizer, Any]:
        def decay(name: str) -> bool:
            return not any(k in name for k in ("bias", "LayerNorm", "layer_norm", "norm.weight"))

        groups = [
            {"params": [p for n, p in self.model.encoder.named_parameters() if decay(n)], "lr": self.args.learning_rate, "weight_decay": self.args.weight_decay},
            {"params": [p for n, p in self.model.encoder.named_parameters() if not decay(n)], "lr": self.args.learning_rate, "weight_decay": 0.0},
            {"params": [p for n, p in self.model.named_parameters() if not n.startswith("encoder.")], "lr": self.args.head_learning_rate, "weight_decay": 0.0},
        ]
        optimizer = torch.optim.AdamW(groups)
        return optimizer, get_linear_schedule_with_warmup(optimizer, int(self.args.warmup_ratio * steps), steps)

    def _loss(self, idx: list[int], phase: Phase, step: int, steps: int) -> torch.Tensor:
        """NER loss of the windows `idx` plus the relation loss of their pairs, from one forward pass."""
        b = ner_batch([self.feats.ner[i] for i in idx], self.tokenizer.pad_token_id or 0, self.device)
        chosen = [k for i in idx for k in self.pairs_of.get(i, [])]
        pb = pair_batch([self.feats.pairs.pairs[k] for k in chosen], {i: row for row, i in enumerate(idx)}, self.device)
        if phase.hidden_weight:
            student_taps, teacher_taps = self._taps()
            with teacher_taps, torch.no_grad():
                self.teacher.model(b["ids"], b["mask"])
            with student_taps:
                tags, rels = self.model(b["ids"], b["mask"], pb)
        else:
            tags, rels = self.model(b["ids"], b["mask"], pb)
        teacher = self._stack([self.teacher_ner[i] for i in idx], tags.shape) if self.teacher_ner else None
        silver = torch.tensor([self.feats.ner[i].example in self.feats.silver for i in idx], device=self.device)

        def phase_loss(outputs: torch.Tensor, teacher: torch.Tensor | None, labels: torch.Tensor) -> torch.Tensor:
            return phase.loss(outputs, teacher, labels, step, steps)

        loss = silver_weighted(phase_loss, silver, self.args.silver_weight, tags, teacher, b["labels"])
        if phase.hidden_weight:
            matched = [teacher_taps.outputs[k] for k in matched_teacher_layers(len(teacher_taps.outputs), len(student_taps.outputs))]
            loss = loss + phase.hidden_weight * hidden_loss(student_taps.outputs, matched, b["mask"].bool())
        if rels is not None:
            teacher_re = torch.stack([self.teacher_re[k] for k in chosen]).to(self.device).float() if self.teacher_re else None
            loss = loss + silver_weighted(phase_loss, silver[pb["rows"]], self.args.silver_weight, rels, teacher_re, pb["target"])
        return loss

    def _taps(self) -> tuple[_LayerTaps, _LayerTaps]:
        if self.teacher is None:
            raise DistillError("hidden-state KD needs the teacher model")
        if self.taps is None:
            self.teacher.model.to(self.device).eval()
            self.taps = (_LayerTaps(self.model.encoder), _LayerTaps(self.teacher.model.encoder))
        return self.taps

    def _stack(self, rows: list[torch.Tensor], shape: torch.Size) -> torch.Tensor:
        out = torch.zeros(shape, device=self.device)
        for i, r in enumerate(rows):
            out[i, : r.shape[0]] = r.to(self.device).float()
        return out

    def run(self, phase: Phase) -> None:
        """Train one phase with a fresh optimizer and end it on its best dev evaluation (the next
        phase starts from there). The dev split is scored at every epoch end and every
        `args.eval_every` steps; with `phase.early_stop`, the phase stops after `args.patience`
        evaluations without improvement, once `args.min_train_share` of its steps are done. Why
        it stopped goes to `stop_reasons`."""
        epochs = phase.epochs
        per_epoch = len(self._batches(0))
        steps = epochs * per_epoch
        optimizer, scheduler = self._optimizer(steps)
        self.step, self.stale = 0, 0
        self.best_score, self.best_state = -1.0, None
        self.ema = AveragedModel(self.model, avg_fn=_ema_update(self.args.ema_decay)) if self.args.ema_decay else None
        label = f"{self.meta.role} {phase.name}" + (f" (KD {self.args.kd})" if self.teacher_ner else "")
        reason = f"{phase.name}: all {epochs} epochs ({steps} steps) done"
        with _progress(self.args.progress) as progress:
            task = progress.add_task(label, total=steps, loss=float("nan"))
            for _ in range(epochs):
                self.epoch += 1
                self.model.train()
                total, n = 0.0, 0
                for k, idx in enumerate(self._batches(self.epoch), 1):
                    loss = self._loss(idx, phase, self.step, steps)
                    optimizer.zero_grad()
                    loss.backward()
                    torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
                    optimizer.step()
                    scheduler.step()
                    if self.ema is not None:
                        self.ema.update_parameters(self.model)
                    self.step += 1
                    total, n = total + loss.item(), n + 1
                    progress.update(task, advance=1, loss=total / n)
                    if k == per_epoch or self.step % self.args.eval_every == 0:
                        self._evaluate(phase, label, total / n, progress)
                        self.model.train()
                        if phase.early_stop and self.dev and self.stale >= self.args.patience and self.step >= self.args.min_train_share * steps:
                            reason = (f"{phase.name}: early stop at epoch {self.epoch} (step {self.step} of {steps}): no dev improvement in "
                                      f"{self.args.patience} evaluations")
                            break
                else:
                    continue
                break
        if self.dev:
            reason += f"; best dev score {self.best_score:.4f} at epoch {self.best_epoch}"
        self.stop_reasons.append(reason)
        if self.args.progress:
            progress.console.print(f"{label}: {reason}")
        if self.ema is not None and not self.dev:  # no dev split: the last averaged weights are kept
            self.best_state = copy.deepcopy(self.ema.module.state_dict())
        self.restore_best()
        self.ema = None

    def _evaluate(self, phase: Phase, label: str, loss: float, progress: Progress) -> None:
        """Score dev, log it in `history`, keep the best state; without a dev split the last state is kept."""
        scored = self.model if self.ema is None else self.ema.module
        scores = self.score_dev(scored) if self.dev else {"dev_f1": None, "dev_relation_f1": None, "score": None}
        self.history.append({"epoch": self.epoch, "step": self.step, "loss": round(loss, 5), "phase": phase.name, **scores})
        if self.args.progress and self.dev:
            rel = "" if scores["dev_relation_f1"] is None else f", dev relation F1 {scores['dev_relation_f1']:.3f}"
            progress.console.print(f"{label} epoch {self.epoch} step {self.step}: loss {loss:.4f}, dev entity F1 {scores['dev_f1']:.3f}{rel}")
        if not self.dev:  # no dev split: no early stopping, the last state is kept
            self.best_epoch = self.epoch
            return
        if scores["score"] > self.best_score:
            self.best_score, self.best_epoch, self.best_scores = scores["score"], self.epoch, scores
            self.best_state = {k: v.detach().cpu().clone() for k, v in scored.state_dict().items()}
            self.stale = 0
        else:
            self.stale += 1

    def score_dev(self, model: NerReModel) -> dict[str, float]:
        """Dev entity micro F1, relation weighted F1 and their mean (the early-stopping score) of
        `model` (the one in training or its moving average)."""
        model.eval()
        loaded = Loaded(model, self.tokenizer, self.meta, Path("."))
        predicted = predict_entities(loaded, self.dev, self.args.eval_batch_size)
        ner = ner_scores(self.dev, predicted)["f1"]
        re = relation_scores(loaded, self.dev, self.args.eval_batch_size).get("weighted_f1") if self.feats.pairs.pairs else None
        score = ner if re is None else (ner + re) / 2
        return {"dev_f1": ner, "dev_relation_f1": re, "score": round(score, 5)}

    def restore_best(self) -> None:
        if self.best_state is not None:
            self.model.load_state_dict(self.best_state)


def silver_weighted(loss: Callable[..., torch.Tensor], silver: torch.Tensor, weight: float, outputs: torch.Tensor, teacher: torch.Tensor | None,
                    labels: torch.Tensor) -> torch.Tensor:
    """`loss(outputs, teacher, labels)` where the rows marked in `silver` (from silver examples)
    count `weight` times as much as the others: (1 - s) * loss(other rows) + s * weight * loss(silver
    rows), s the silver share of the rows; without silver rows, the loss as it is."""
    if not silver.any():
        return loss(outputs, teacher, labels)

    def part(rows: torch.Tensor) -> torch.Tensor:
        return loss(outputs[rows], None if teacher is None else teacher[rows], labels[rows]) if rows.any() else outputs.sum() * 0.0

    share = silver.float().mean()
    return (1 - share) * part(~silver) + share * weight * part(silver)


def _ema_update(decay: float) -> Any:
    """AveragedModel's `avg_fn` for an exponential moving average whose decay warms up as in
    TensorFlow's ExponentialMovingAverage (with num_updates): min(decay, (1 + n) / (10 + n)) at
    update n, so the average follows the recent tenth of training however short the phase is."""
    def update(averaged: torch.Tensor, current: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
        d = min(decay, (1 + float(n)) / (10 + float(n)))
        return averaged + (current - averaged) * (1 - d)
    return update


class _LayerTaps:
    """The outputs of an encoder's transformer layers, captured by forward hooks inside `with taps:`."""

    def __init__(self, encoder: torch.nn.Module) -> None:
        self.outputs: list[torch.Tensor] = []
        self.active = False
        for layer in layer_list(encoder):
            layer.register_forward_hook(self._keep)

    def _keep(self, module: torch.nn.Module, inputs: Any, output: Any) -> None:
        if self.active:
            self.outputs.append(output[0] if isinstance(output, tuple) else output)

    def __enter__(self) -> _LayerTaps:
        self.outputs, self.active = [], True
        return self

    def __exit__(self, *exc: Any) -> None:
        self.active = False


class _SpeedColumn(ProgressColumn):
    def render(self, task: Any) -> Text:
        return Text(f"{task.speed:.1f} batch/s" if task.speed else "")


def _progress(enabled: bool) -> Progress:
    """A progress bar with the running mean loss and batches per second."""
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("loss {task.fields[loss]:.4f}"),
        _SpeedColumn(), TimeElapsedColumn(), disable=not enabled,
    )

