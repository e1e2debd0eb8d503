"""A run folder's layout: every file and folder of a run named once, with the stage that writes it
and the stages that read it.

    layout = RunLayout("runs/demo")
    layout.generated            # runs/demo/generated.jsonl
    layout.part("llm")          # runs/demo/llm/, laid out the same (source: both; also corpus/, unlabeled/)
    FILES["verified"].read_by   # ("split", "student (transfer set)")

`distill annotate`/`generate` write a run folder of their own with the same names, so every
command takes the folder that another wrote.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class RunFile:
    """One entry of a run folder."""

    path: str
    written_by: str
    read_by: tuple[str, ...]
    what: str


FILES: dict[str, RunFile] = {
    "generated": RunFile("generated.jsonl", "generate, annotate or combine", ("review", "student (transfer set)"), "the texts with the LLM's annotation and confidence"),
    "rejected": RunFile("rejected.jsonl", "generate, annotate", (), "answers left out, each with its reason"),
    "generate_summary": RunFile("generate_summary.json", "generate, annotate", ("report",), "calls, tokens, kept and dropped by reason"),
    "mock_truth": RunFile("mock_truth.jsonl", "generate (mock LLM)", ("review (simulated)",), "what the mock meant: the simulated reviewer's truth"),
    "llm_cache": RunFile("llm_cache", "generate, annotate", ("generate, annotate (a rerun)",), "one file per answered LLM request"),
    "verified": RunFile("verified.jsonl", "review", ("split", "student (transfer set)"), "the human verdicts"),
    "silver": RunFile("silver.jsonl", "review", ("teacher (teacher.silver_weight)", "student (transfer set)"), "texts the review budget left LLM-labelled, review status silver"),
    "review_summary": RunFile("review.json", "review", ("report",), "the pull's counts, agreement and warnings"),
    "correctness": RunFile("correctness.md", "review", ("report",), "the LLM's annotation against the human verdicts (and correctness.json)"),
    "review_resumed": RunFile("review_resumed.json", "distill resume", ("review (human)",), "the note that people finished"),
    "flow_run": RunFile("flow_run.json", "review (human)", ("distill resume",), "the paused flow run and the Label Studio project"),
    "verified_splits": RunFile("verified", "split", ("teacher", "prune", "evaluate", "sweep", "student (transfer set)"), "train/dev/test of the verified examples"),
    "pruned": RunFile("pruned", "prune", ("student",), "the pruned train split, dev and test unchanged"),
    "models": RunFile("models", "teacher, student", ("report",), "the trained models"),
    "teacher": RunFile("models/teacher", "teacher", ("prune (scores)", "student", "evaluate", "sweep"), "the teacher (more teachers beside it: teacher-2, ...)"),
    "student": RunFile("models/student", "student", ("evaluate", "export"), "the KD student"),
    "spacy_pipeline": RunFile("student-spacy", "export", (), "the student as a spaCy pipeline"),
    "sweep": RunFile("sweep", "sweep", ("report",), "the pruning sweep's students, table and plots"),
    "rounds": RunFile("rounds", "active-learning rounds", ("report",), "a run folder per round after the first: rounds/<r>/NAME/, laid out the same"),
    "stages": RunFile("stages", "every stage", ("every stage",), "what each finished stage was keyed on"),
    "config": RunFile("config.json", "flow", ("distill resume",), "the run config, as validated"),
    "report": RunFile("report.md", "report", (), "the run's report (and report.html)"),
}


class _Entry:
    """A `RunLayout` attribute: the path of the `FILES` entry of the same name."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, layout: RunLayout, owner: type | None = None) -> Path:
        return layout.root / FILES[self.name].path


class RunLayout:
    """The paths of the run folder `root`: one attribute per `FILES` entry."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def part(self, name: str) -> RunLayout:
        """A run folder inside this one (`llm`, `corpus`, `unlabeled`), laid out the same."""
        return RunLayout(self.root / name)

    generated = _Entry()
    rejected = _Entry()
    generate_summary = _Entry()
    mock_truth = _Entry()
    llm_cache = _Entry()
    verified = _Entry()
    silver = _Entry()
    review_summary = _Entry()
    correctness = _Entry()
    review_resumed = _Entry()
    flow_run = _Entry()
    verified_splits = _Entry()
    pruned = _Entry()
    models = _Entry()
    teacher = _Entry()
    student = _Entry()
    spacy_pipeline = _Entry()
    sweep = _Entry()
    rounds = _Entry()
    stages = _Entry()
    config = _Entry()
    report = _Entry()
