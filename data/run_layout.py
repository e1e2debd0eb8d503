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
    "stages": RunFile("stages", "every stage", ("every stage",), "what each finished stage was keyed on"),
    "config": RunFile("config.json", "flow", ("distill resume",), "the run config, as validated"),
    "report": RunFile("report.md", "report", (), "the run's report (and report.html)"),
}


class RunLayout:
    """The paths of the run folder `root` (see `FILES`)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def _path(self, name: str) -> Path:
        return self.root / FILES[name].path

    def part(self, name: str) -> RunLayout:
        """A run folder inside this one (`llm`, `corpus`, `unlabeled`), laid out the same."""
        return RunLayout(self.root / name)

    @property
    def generated(self) -> Path:
        return self._path("generated")

    @property
    def rejected(self) -> Path:
        return self._path("rejected")

    @property
    def generate_summary(self) -> Path:
        return self._path("generate_summary")

    @property
    def mock_truth(self) -> Path:
        return self._path("mock_truth")

    @property
    def llm_cache(self) -> Path:
        return self._path("llm_cache")

    @property
    def verified(self) -> Path:
        return self._path("verified")

    @property
    def review_summary(self) -> Path:
        return self._path("review_summary")

    @property
    def correctness(self) -> Path:
        return self._path("correctness")

    @property
    def review_resumed(self) -> Path:
        return self._path("review_resumed")

    @property
    def flow_run(self) -> Path:
        return self._path("flow_run")

    @property
    def verified_splits(self) -> Path:
        return self._path("verified_splits")

    @property
    def pruned(self) -> Path:
        return self._path("pruned")

    @property
    def models(self) -> Path:
        return self._path("models")

    @property
    def teacher(self) -> Path:
        return self._path("teacher")

    @property
    def student(self) -> Path:
        return self._path("student")

    @property
    def spacy_pipeline(self) -> Path:
        return self._path("spacy_pipeline")

    @property
    def sweep(self) -> Path:
        return self._path("sweep")

    @property
    def stages(self) -> Path:
        return self._path("stages")

    @property
    def config(self) -> Path:
        return self._path("config")

    @property
    def report(self) -> Path:
        return self._path("report")
