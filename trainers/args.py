"""`TrainingArgs`: every knob of teacher and student training in one validated model, and the
settings by owner that a run config holds.

`TrainingArgs.from_any(obj)` accepts a `TrainingArgs`, a dict, or any object with the same
field names; unknown fields are ignored there. It is what the trainer takes, for a teacher or a
student. A run config holds the same fields by owner, each defined once (here, in
`TrainingArgs`): `TeacherSettings` (the teacher's training and the windows), `StudentSettings`
(its size, and its own optimizer settings, each None for "as the teacher") and `DistillSettings`
(the KD method, alpha, temperature, teachers' combination, transfer set). `teacher_args` and
`student_args` put them together; the teacher's depend on its own section alone, so a student
or KD setting never retrains it.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model, field_validator

from distill_ner.data.errors import DistillError
from distill_ner.trainers.kd import check_kd, kd_names

def default(field: str) -> Any:
    """The default of a `TrainingArgs` field (for CLI options and run configs)."""
    return TrainingArgs.model_fields[field].default


def _registered_kd(cls: Any, value: str) -> str:
    """Validator: `value` names a registered KD method."""
    try:
        return check_kd(value)
    except DistillError as err:
        raise ValueError(str(err)) from None


class TrainingArgs(BaseModel):
    """Hyper-parameters for `train_teacher` and `train_student` (defaults suit MiniLM on CPU)."""

    model_config = ConfigDict(extra="forbid")

    encoder: str | None = Field(None, description="HF name or local path; None: the offline MiniLM")
    student_layers: int = Field(3, ge=1, description="layers taken from the teacher for the student")
    student_encoder: str | None = Field(None, description="another (small) encoder for the student instead of teacher layers")
    kd: str = Field("hinton", description=f"KD method: {', '.join(kd_names())} (trainers/kd/)")
    alpha: float | None = Field(None, ge=0, le=1, description="KD weight; None: from the pruning fraction (0.5 on all data)")
    temperature: float = Field(2.0, gt=0)
    hidden_weight: float = Field(1.0, ge=0, description="KD hinton_hidden: weight of the loss between the student's hidden states and the teacher layers it stands for")
    anneal_max_temperature: float = Field(4.0, ge=1, description="Annealing-KD: T_max; phase 1 steps T down by one per epoch, so it takes ceil(T_max) epochs")
    anneal_epoch_share: float = Field(0.0, ge=0, le=4, description="Annealing-KD: phase 1 takes at least this share of `epochs` (then T stays at 1)")
    epochs: int | None = Field(None, ge=1, description="at most this many epochs (early stopping on dev); None: enough for about `step_budget` optimizer steps, 3 to 20 epochs")
    step_budget: int = Field(2000, ge=1, description="optimizer steps to aim for when `epochs` is None (small data: more epochs, large data: fewer)")
    equal_steps: bool = Field(True, description="a student on a pruned fraction f trains epochs/f epochs (at most 4x) with patience/f, so it takes as many steps as on all the data")
    patience: int = Field(4, ge=1, description="dev evaluations without improvement before a phase stops")
    min_train_share: float = Field(0.5, ge=0, le=1, description="no early stop before this share of a phase's planned steps: a dev score that "
                                   "peaks early, by chance or before the learning rate decays, does not end training (the best state is kept either way)")
    eval_every: int = Field(500, ge=1, description="optimizer steps between dev evaluations inside an epoch (the dev split is also scored at every epoch end)")
    batch_size: int = Field(8, ge=1)
    learning_rate: float = Field(1e-4, gt=0)
    head_learning_rate: float = Field(1e-3, gt=0, description="learning rate of the new NER/RE heads")
    warmup_ratio: float = Field(0.1, ge=0, lt=1)
    weight_decay: float = Field(0.01, ge=0)
    ema_decay: float = Field(0.0, ge=0, lt=1, description="dev scoring and the saved model use an exponential moving average of the weights, "
                             "decay min(ema_decay, (1 + n) / (10 + n)) at step n of a phase, e.g. 0.995; 0: the weights as trained")
    silver_weight: float = Field(0.5, ge=0, le=1, description="weight of the training examples whose review status is silver (LLM labels no human "
                                 "reviewed, `review.budget`) against reviewed ones; 0: silver examples are left out of training")
    max_length: int = Field(256, ge=16, description="word pieces per window; longer texts are split into windows")
    subword_labels: Literal["first", "all"] = Field("first", description="tag the first word piece of each word (others ignored) or every piece")
    stride: int = Field(32, ge=0, description="word pieces shared by consecutive windows")
    teachers: int = Field(1, ge=1, description="teachers trained (seeds seed, seed+1, ...); the student learns their combined logits")
    teacher_weighting: Literal["equal", "gold_loss"] = Field("equal", description="several teachers: equal weights, or per window softmax of minus each teacher's loss on the gold labels")
    llm_teacher: bool = Field(True, description="transfer texts that the LLM annotated (silver, pruned away, llm.n_unlabeled): its annotation (k-sample agreement as "
                              "confidence) is one more teacher on them; texts without one (distill train --transfer FILE) keep the model teacher alone")
    transfer: bool = Field(True, description="run config: the student also learns the teacher's soft targets on unreviewed texts (pruned away, never reviewed, llm.n_unlabeled); "
                           "no effect with kd none")
    search: bool = Field(False, description="first try a learning rate x epochs grid (teachers scored on dev only) and train with the best")
    search_learning_rates: list[float] = Field([5e-5, 1e-4, 2e-4], min_length=1, description="`search`: learning rates to try")
    search_epochs: list[int] = Field([], description="`search`: epochs to try; empty: the step budget's epochs and half of them")
    search_seeds: int = Field(2, ge=1, description="`search`: seeds per setting (the mean dev score decides)")
    relations: bool = Field(True, description="train the relation head when the data has relations")
    seed: int = 0
    threads: int | None = Field(None, ge=1, description="torch CPU threads; None: all cores")
    device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:\d+)?|mps)$", description="auto, cpu, cuda[:N] or mps")
    eval_batch_size: int = Field(64, ge=1)
    progress: bool = True

    @field_validator("kd")
    @classmethod
    def _registered(cls, value: str) -> str:
        return _registered_kd(cls, value)

    @classmethod
    def from_any(cls, obj: Any = None, **overrides: Any) -> TrainingArgs:
        """Build from a TrainingArgs, a dict or a pydantic model with (some of) the same fields."""
        if obj is None:
            values: dict[str, Any] = {}
        elif isinstance(obj, dict):
            values = dict(obj)
        elif hasattr(obj, "model_dump"):
            values = obj.model_dump()
        else:
            values = dict(vars(obj))
        values.update(overrides)
        return cls.model_validate({k: v for k, v in values.items() if k in cls.model_fields})


def parse_settings(items: list[str]) -> dict[str, Any]:
    """`-s key=value` items as training arguments, values read as YAML (`-s lr_schedule=linear`,
    `-s llm_teacher=true`); a one-line error names an item that is not `key=value` with a known key."""
    import yaml

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or key.strip() not in TrainingArgs.model_fields:
            raise DistillError(f"-s {item}: use key=value with a training argument ({', '.join(TrainingArgs.model_fields)})")
        out[key.strip()] = yaml.safe_load(value)
    return out


# --- settings by owner ----------------------------------------------------------------------
OPTIMIZER_FIELDS = ("epochs", "step_budget", "patience", "min_train_share", "eval_every", "batch_size", "learning_rate", "head_learning_rate", "warmup_ratio", "weight_decay", "ema_decay")
STUDENT_FIELDS = ("student_layers", "student_encoder", "equal_steps", *OPTIMIZER_FIELDS)
DISTILL_FIELDS = ("kd", "alpha", "temperature", "hidden_weight", "anneal_max_temperature", "anneal_epoch_share", "teacher_weighting", "llm_teacher", "transfer")
TEACHER_FIELDS = tuple(f for f in TrainingArgs.model_fields if f not in STUDENT_FIELDS and f not in DISTILL_FIELDS) + OPTIMIZER_FIELDS


def _settings(name: str, doc: str, fields: tuple[str, ...], as_teacher: tuple[str, ...] = ()) -> type[BaseModel]:
    """A model of `fields` of `TrainingArgs` with their types, bounds, defaults and descriptions;
    those in `as_teacher` default to None, which means the teacher's value."""
    definitions: dict[str, Any] = {}
    for field in fields:
        info = TrainingArgs.model_fields[field]
        if field in as_teacher:
            definitions[field] = (info.annotation | None, Field(None, description=f"{info.description or field}; None: the teacher's"))
        else:
            definitions[field] = (info.annotation, info)
    validators = {"registered_kd": field_validator("kd")(_registered_kd)} if "kd" in fields else {}
    return create_model(name, __config__=ConfigDict(extra="forbid"), __doc__=doc, __validators__=validators, **definitions)


TeacherSettings = _settings("TeacherSettings", "The run config's `teacher:` section: what the teacher stage is keyed on.", TEACHER_FIELDS)
StudentSettings = _settings("StudentSettings", "The run config's `student:` section: its size and optimizer (None: as the teacher).", STUDENT_FIELDS, OPTIMIZER_FIELDS)
DistillSettings = _settings("DistillSettings", "The run config's `distill:` section: how the student learns from the teacher(s).", DISTILL_FIELDS)


def owner_of(field: str) -> str:
    """The section a `TrainingArgs` field belongs to (`teacher`, `student` or `distill`); a
    shared optimizer field (learning rate, epochs, ...) is the teacher's, which the student follows."""
    if field in DISTILL_FIELDS:
        return "distill"
    return "student" if field in STUDENT_FIELDS and field not in OPTIMIZER_FIELDS else "teacher"


def teacher_args(teacher: BaseModel) -> TrainingArgs:
    """The trainer's arguments for the teacher: its section alone."""
    return TrainingArgs.model_validate(teacher.model_dump())


def student_args(teacher: BaseModel, student: BaseModel, distill: BaseModel) -> TrainingArgs:
    """The trainer's arguments for the student: the teacher's, then the student's own settings
    that are set, then the KD settings."""
    own = {k: v for k, v in student.model_dump().items() if v is not None or k not in OPTIMIZER_FIELDS}
    return TrainingArgs.model_validate({**teacher.model_dump(), **own, **distill.model_dump()})
