"""One typed config drives a run: a YAML file plus `key.sub=value` overrides."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from distill_ner.annotators.grounding import GroundingRules
from distill_ner.annotators.llm_settings import ClientSettings
from distill_ner.annotators.truth import CONVENTION_DRIFT
from distill_ner.data.errors import DistillError, validation_message
from distill_ner.data.prune import PruneSettings
from distill_ner.data.run_layout import RunLayout
from distill_ner.trainers.args import DistillSettings, StudentSettings, TeacherSettings, TrainingArgs, owner_of, student_args, teacher_args
from distill_ner.trainers.kd import parse_kd_setting

CONFIGS_DIR = Path(__file__).parent / "configs"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LLMSection(ClientSettings):
    """The run's LLM: the client's settings (`annotators/llm_settings.py`) and the run's own."""

    base_url: str | None = Field(None, description="OpenAI-compatible URL; null starts the mock LLM in-process")
    model: str = "mock-species"
    n: int = Field(300, ge=1, description="examples to generate")
    n_unlabeled: int = Field(0, ge=0, description="extra examples generated for the student's transfer set (distill.transfer), never sent for review")
    k_samples: int = Field(1, ge=1, description="annotation samples per example; >1 gives confidences")
    seed: int = 0
    error_rate: float = Field(0.25, ge=0, le=1, description="mock only: share of answers with annotation errors")
    factual_error_rate: float = Field(0.25, ge=0, le=1, description="mock only: share of texts with a factual error (a careful reviewer rejects them)")
    truth_file: str | None = Field(None, description="an external mock's truth file, for the simulated annotator")
    replay: str | None = Field(None, description="mock only: a gold file (JSONL, CoNLL, DocBin) whose annotations the mock replays, through its error model, for the texts it is asked to annotate; the simulated reviewer takes the gold as truth")
    examples_per_call: int | None = Field(None, ge=1, le=50, description="null: the spec's examples_per_call")
    max_failure_share: float = Field(0.5, ge=0, le=1, description="a run rejecting a larger share of examples fails and the flow stops")
    grounding: GroundingRules = GroundingRules()

    def client_settings(self) -> dict[str, Any]:
        """The `LLMConfig` fields this section sets."""
        return {name: getattr(self, name) for name in ClientSettings.model_fields}


class AnnotateSection(_Section):
    """The user's own texts, annotated by the LLM (`source: annotate` or `both`; `distill annotate`)."""

    input: str | None = Field(None, description="the texts: .txt, .jsonl, .csv, CoNLL or DocBin")
    field: str = Field("text", description=".jsonl: the field that holds the text")
    column: str = Field("text", description=".csv: the column that holds the text")
    paragraphs: bool = Field(False, description=".txt: blank-line-separated paragraphs are the texts (default: one a line)")
    window_chars: int = Field(1000, ge=20, description="longest window of whole sentences in one request")
    dedup_threshold: float = Field(1.0, ge=0, le=1, description="1: exact duplicate texts only")


class ReviewSection(_Section):
    mode: Literal["simulated", "human", "none"] = "simulated"
    label_studio_url: str | None = Field(None, description="null: the local server of `distill label-studio up`")
    accuracy: float = Field(0.95, ge=0, le=1, description="simulated annotator: chance to fix an LLM error")
    convention_drift: float = Field(
        CONVENTION_DRIFT, ge=0, le=1,
        description="simulated annotator: chance per entity to leave an LLM span convention or draw a boundary its own way (annotators/truth.py)",
    )
    annotators: int = Field(1, ge=1, description="simulated annotators per task")
    budget: float | None = Field(
        None, gt=0,
        description="send only this share (<= 1) or count (> 1) of the examples to Label Studio, the least confident first; the rest stay "
        "LLM-labelled (silver: never in dev or test; the teacher learns them at `teacher.silver_weight`, the student as transfer texts with `distill.transfer`); null: all",
    )
    rounds: int = Field(
        1, ge=1,
        description="active learning: after the first student, each further round sends `budget` more examples, those that most need a human "
        "(the student's doubt, its disagreement with the LLM, the LLM's own doubt), then trains again (RUN/rounds/<r>/); needs `budget`; with `mode: human` each round waits for people (distill resume NAME)",
    )

    @model_validator(mode="after")
    def _rounds_need_a_budget(self) -> ReviewSection:
        if self.rounds > 1 and self.budget is None:
            raise ValueError("review.rounds > 1 needs review.budget (how many examples each round sends)")
        if self.rounds > 1 and self.mode == "none":
            raise ValueError("review.rounds > 1 sends texts to people each round: use review.mode simulated or human, not none")
        return self
    timeout_hours: float = Field(72, gt=0, description="human review: how long the flow waits before giving up")


class SplitSection(_Section):
    dev: float = Field(0.15, ge=0, lt=1)
    test: float = Field(0.15, gt=0, lt=1, description="the gold test split the models are scored on")
    seed: int = 0
    gold_from: Literal["any", "corpus"] = Field("any", description="corpus: dev and test texts come only from the user's texts (the student will meet real text)")
    blind_test: bool = Field(
        False,
        description="the test texts (`test` of the generated ones) are chosen before review and sent to Label Studio without the LLM's "
        "pre-annotation, so people label them from scratch: the test gold is not anchored to the LLM, and 'student minus LLM' is fair; "
        "outside `review.budget`; no effect with review.mode none",
    )


class PruneSection(PruneSettings):
    """`data.prune.PruneSettings`, with the method checked against the registered hardness scores."""

    @field_validator("method")
    @classmethod
    def _registered_method(cls, name: str) -> str:
        return check_score_methods([name])[0]


class SweepSection(_Section):
    """Optional pruning sweep after the main student: students over fractions x methods x KD."""

    enabled: bool = False
    fractions: list[float] = Field([1.0, 0.7, 0.5, 0.3, 0.1], min_length=1)
    methods: list[str] = Field(["random", "teacher_loss", "el2n", "disagreement"], min_length=1, description="random or registered hardness scores (trainers/scores.py)")
    kd: list[str] = Field(["none", "hinton"], min_length=1, description="registered KD methods (trainers/kd/); METHOD+transfer adds the pruned-away examples as a transfer set")
    seeds: list[int] = Field([0], min_length=1, description="Each seed repeats the grid; several give mean and std of F1.")

    @field_validator("kd")
    @classmethod
    def _registered_kd(cls, names: list[str]) -> list[str]:
        for name in names:
            try:
                parse_kd_setting(name)
            except DistillError as err:
                raise ValueError(str(err)) from None
        return names

    @field_validator("methods")
    @classmethod
    def _registered_methods(cls, names: list[str]) -> list[str]:
        return check_score_methods(names)


def check_score_methods(names: list[str]) -> list[str]:
    """`names` when each is `random` or a registered hardness score (the registry imports torch:
    only looked at when a score is asked for)."""
    scored = [n for n in names if n != "random"]
    if scored:
        from distill_ner.trainers.scores import SCORERS

        unknown = [n for n in scored if n not in SCORERS]
        if unknown:
            raise ValueError(f"unknown pruning method {unknown[0]!r} (known: random, {', '.join(SCORERS)})")
    return names


class RunConfig(_Section):
    """Everything a `distill` flow run needs."""

    name: str = Field("demo", pattern=r"^[A-Za-z0-9_.-]+$")
    spec: str = Field("species", description="spec name in data/specs/ or a path to a YAML spec")
    runs_dir: str = "runs"
    task_runner: Literal["thread", "dask"] = "thread"
    dask_address: str | None = Field(None, description="dask scheduler; null starts a local cluster")
    generation_batches: int = Field(4, ge=1, description="mapped generation tasks")
    source: Literal["generate", "annotate", "both"] = Field("generate", description="the texts: written by the LLM, yours annotated by it (annotate.input), or both")
    llm: LLMSection = LLMSection()
    annotate: AnnotateSection = AnnotateSection()
    review: ReviewSection = ReviewSection()
    split: SplitSection = SplitSection()
    prune: PruneSection = PruneSection()
    teacher: TeacherSettings = TeacherSettings()  # type: ignore[valid-type]
    student: StudentSettings = StudentSettings()  # type: ignore[valid-type]
    distill: DistillSettings = DistillSettings()  # type: ignore[valid-type]
    sweep: SweepSection = SweepSection()

    @model_validator(mode="before")
    @classmethod
    def _train_section_by_owner(cls, raw: Any) -> Any:
        """The old `train:` section (one settings object for teacher and student): each key goes
        to its owner's section (`load_run_config` prints a deprecation note)."""
        if isinstance(raw, dict) and isinstance(raw.get("train"), dict):
            raw = dict(raw)
            for key, value in raw.pop("train").items():
                owner = owner_of(key) if key in TrainingArgs.model_fields else "teacher"  # an unknown key fails there, by name
                raw[owner] = {**(raw.get(owner) or {}), key: value}
        return raw

    def teacher_args(self) -> TrainingArgs:
        """The trainer's arguments for the teacher(s): the `teacher` section alone."""
        return teacher_args(self.teacher)

    def student_args(self) -> TrainingArgs:
        """The trainer's arguments for the student: `teacher`, then `student`'s own, then `distill`."""
        return student_args(self.teacher, self.student, self.distill)

    @property
    def uses_transfer(self) -> bool:
        """The student learns the teacher's soft targets on unreviewed texts: `distill.transfer`
        with a KD method (a student without a teacher has nothing to learn from them)."""
        return self.distill.transfer and self.distill.kd != "none"

    @model_validator(mode="after")
    def _source_has_input(self) -> RunConfig:
        if self.source != "generate" and not self.annotate.input:
            raise ValueError(f"annotate.input: source {self.source!r} needs the file of texts to annotate")
        return self

    @property
    def run_dir(self) -> Path:
        return Path(self.runs_dir) / self.name

    @property
    def layout(self) -> RunLayout:
        """Every path of the run folder (`data/run_layout.py`)."""
        return RunLayout(self.run_dir)

    def part(self, source: str) -> RunConfig:
        """With `source: both`, the LLM's texts (`generate`, in RUN/llm/) or yours (`annotate`, in
        RUN/corpus/), each written like a run of its own and combined into RUN/generated.jsonl."""
        name = "llm" if source == "generate" else "corpus"
        return self.model_copy(update={"runs_dir": str(self.run_dir), "name": name, "source": source})

    def unlabeled_config(self) -> RunConfig:
        """The generation of `llm.n_unlabeled` transfer-set texts: other seeds, in RUN/unlabeled/."""
        llm = self.llm.model_copy(update={"n": self.llm.n_unlabeled, "seed": self.llm.seed + UNLABELED_SEED_OFFSET})
        return self.model_copy(update={"runs_dir": str(self.run_dir), "name": "unlabeled", "llm": llm, "source": "generate"})


UNLABELED_SEED_OFFSET = 1000  # the unlabeled generation plans its requests with seed + 1000: other texts


def parse_override(item: str) -> tuple[list[str], Any]:
    """`distill.kd=annealing` -> (["distill", "kd"], "annealing"); the value is parsed as YAML."""
    key, sep, value = item.partition("=")
    if not sep or not key:
        raise DistillError(f"override {item!r} is not key=value (e.g. distill.kd=annealing)")
    return key.strip().split("."), yaml.safe_load(value)


def _owner_key(key: str) -> str:
    """`train.kd` -> `distill.kd` (where a deprecated key's errors are reported); other keys as they are."""
    section, _, field = key.partition(".")
    return f"{owner_of(field)}.{field}" if section == "train" and field in TrainingArgs.model_fields else key


def load_run_config(path: str | Path | None = None, overrides: list[str] | dict[str, Any] | None = None) -> RunConfig:
    """Load and validate a run config; the first mistake is reported in one line."""
    raw: dict[str, Any] = {}
    where = "config"
    if path is not None:
        path = Path(path)
        if not path.exists() and not path.suffix:
            path = CONFIGS_DIR / f"{path}.yaml"
        if not path.exists():
            raise DistillError(f"{path}: config file not found")
        where = str(path)
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as err:
            raise DistillError(f"{path}: not valid YAML ({getattr(err, 'problem', err)})") from None
        if not isinstance(raw, dict):
            raise DistillError(f"{path}: a config is a YAML mapping")
    items = list(overrides.items() if isinstance(overrides, dict) else (parse_override(o) for o in overrides or []))
    given: dict[str, str] = {}
    for key, value in items:
        keys = key.split(".") if isinstance(key, str) else key
        given[".".join(keys)] = f"{'.'.join(keys)}={value}"
        node = raw
        for part in keys[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise DistillError(f"override {'.'.join(keys)}: {part} is not a section")
        node[keys[-1]] = value
    old_keys = list(raw["train"]) if isinstance(raw.get("train"), dict) else []
    given = {_owner_key(key): text for key, text in given.items()}
    try:
        config = RunConfig.model_validate(raw)
        if old_keys:  # after validation: a bad config gets its one error line alone
            moved = ", ".join(f"train.{k} -> {owner_of(k)}.{k}" for k in old_keys)
            print(f"note: the train section is deprecated; its keys now belong to teacher, student or distill ({moved})", file=sys.stderr)
        return config
    except ValidationError as err:
        loc = ".".join(str(p) for p in err.errors()[0]["loc"])
        override = next((text for key, text in given.items() if loc == key or loc.startswith(key + ".")), None)
        where = f"override -s {override}" if override else where
        raise DistillError(f"{where}: {validation_message(err)}") from None
