"""Pruning the verified train split as composable, recorded steps.

A step takes the train examples that are left and returns what it keeps and what it removes,
each removed example with a reason, so that nothing silently disappears. Steps:

- `Dedup`: exact and near-duplicate texts (`data.dedup.dedup`).
- `DropRejected`: examples a reviewer rejected (and, if asked, ones never reviewed).
- `MinConfidence`: examples whose LLM confidence is below a threshold (no confidence: kept).
- `ClassBalance`: caps over-represented groups (an example's group is its rarest entity label).
- `ToFraction`: keeps exactly `round(fraction * n)` examples, at random or by hardness scores
  passed in as `{example id: score}` (computed by `trainers.scores`; data never trains a model).

`prune_splits` runs the steps on the train split only: dev and test are gold and are never
pruned (train examples whose text is also in dev or test are dropped as leaks, with a reason).
`save_pruned` writes the result as a DatasetDict, `removed.jsonl` and `report.json`.
`STEPS` maps the step names of the command line and run configs to builders; a new step is one
class plus one entry there (or `register_step`, or an entry point in the group
`distill_ner.pruning_steps`, see `data/registry.py`).
"""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from distill_ner.data.dedup import dedup, normalize_text
from distill_ner.data.errors import DistillError
from distill_ner.data.registry import Registry
from distill_ner.data.example import Example
from distill_ner.data.formats import atomic_write, save_splits

Kept = list[Example]
RemovedPairs = list[tuple[Example, str]]


class Step(Protocol):
    """One pruning step: `name` for the records, and a call that splits examples into kept/removed."""

    name: str

    def __call__(self, examples: list[Example]) -> tuple[Kept, RemovedPairs]: ...


@dataclass(frozen=True)
class Removed:
    """An example taken out of the train split, by which step and why."""

    example: Example
    step: str
    reason: str

    def to_json(self) -> str:
        """One line of `removed.jsonl`: id, step, reason and the whole example."""
        return json.dumps({"id": self.example.id, "step": self.step, "reason": self.reason, "example": self.example.model_dump(mode="json")})


@dataclass
class PruneResult:
    """Pruned splits, every removed example with its reason, and counts per step."""

    splits: dict[str, list[Example]]
    removed: list[Removed] = field(default_factory=list)
    steps: list[dict] = field(default_factory=list)  # {"step", "before", "after", "removed"} in order

    @property
    def fraction_kept(self) -> float:
        """Kept train examples over train examples before pruning."""
        before = self.steps[0]["before"] if self.steps else len(self.splits.get("train", []))
        return len(self.splits.get("train", [])) / before if before else 1.0

    def report(self) -> dict:
        """Counts per step and per reason kind (the reason up to its first space or colon)."""
        kinds = Counter(_reason_kind(r.reason) for r in self.removed)
        return {
            "splits": {name: len(items) for name, items in self.splits.items()},
            "fraction_kept": round(self.fraction_kept, 4),
            "steps": self.steps,
            "removed_by_reason": dict(sorted(kinds.items())),
        }


def _reason_kind(reason: str) -> str:
    return reason.replace(":", " ").split(" ", 1)[0]


# --- steps ------------------------------------------------------------------------------
@dataclass
class Dedup:
    """Exact and near-duplicate texts: the first of each group is kept (`data.dedup.dedup`)."""

    threshold: float = 0.9
    name: str = "dedup"

    def __call__(self, examples: list[Example]) -> tuple[Kept, RemovedPairs]:
        return dedup(examples, self.threshold)


@dataclass
class DropRejected:
    """Examples a reviewer rejected; with `drop_pending`, also examples nobody reviewed."""

    drop_pending: bool = False
    name: str = "rejected"

    def __call__(self, examples: list[Example]) -> tuple[Kept, RemovedPairs]:
        dropped = {"rejected"} | ({"pending"} if self.drop_pending else set())
        kept = [e for e in examples if e.review.status not in dropped]
        removed = [(e, f"review_{e.review.status}" + (f" by {e.review.annotator}" if e.review.annotator else "")) for e in examples if e.review.status in dropped]
        return kept, removed


@dataclass
class MinConfidence:
    """Examples whose LLM confidence (`source.confidence`) is below `threshold`.

    Examples without a confidence (brought-in gold, CoNLL imports) are kept.
    """

    threshold: float = 0.5
    name: str = "confidence"

    def __call__(self, examples: list[Example]) -> tuple[Kept, RemovedPairs]:
        def low(e: Example) -> bool:
            return e.source.confidence is not None and e.source.confidence < self.threshold

        kept = [e for e in examples if not low(e)]
        removed = [(e, f"low_confidence {e.source.confidence:.3f} < {self.threshold}") for e in examples if low(e)]
        return kept, removed


def balance_group(example: Example, label_counts: Counter) -> str:
    """An example's group for balancing: its rarest entity label (by `label_counts`), or `NONE`."""
    labels = {e.label for e in example.entities}
    if not labels:
        return "NONE"
    return min(labels, key=lambda label: (label_counts[label], label))


@dataclass
class ClassBalance:
    """Caps every group at `max_ratio` times the smallest group (random, seeded, within a group).

    An example's group is its rarest entity label, so examples that carry rare labels are the
    last to go; examples without entities form the group `NONE`.
    """

    max_ratio: float = 3.0
    seed: int = 0
    name: str = "balance"

    def __call__(self, examples: list[Example]) -> tuple[Kept, RemovedPairs]:
        if self.max_ratio < 1:
            raise DistillError(f"class balance: max_ratio must be >= 1, got {self.max_ratio}")
        label_counts = Counter(e.label for x in examples for e in x.entities)
        groups: dict[str, list[int]] = {}
        for i, e in enumerate(examples):
            groups.setdefault(balance_group(e, label_counts), []).append(i)
        if len(groups) < 2:
            return list(examples), []
        cap = max(1, int(self.max_ratio * min(len(members) for members in groups.values())))
        rng = random.Random(self.seed)
        removed: dict[int, str] = {}
        for group, members in sorted(groups.items()):
            if len(members) > cap:
                drop = rng.sample(members, len(members) - cap)
                removed.update({i: f"class_balance group {group} capped at {cap} of {len(members)}" for i in drop})
        return _split_by_index(examples, removed)


@dataclass
class ToFraction:
    """Keeps exactly `round(fraction * n)` of the `n` examples it gets (at least one if n > 0).

    `random` samples with `seed`. The score methods rank examples by `scores[id]` (a hardness:
    teacher loss, EL2N, or LLM-vs-teacher disagreement) and keep the hardest (`keep="hard"`) or
    the easiest (`keep="easy"`); ties are broken by a seeded shuffle.
    """

    fraction: float
    method: str = "random"
    scores: dict[str, float] | None = None
    keep: Literal["hard", "easy"] = "hard"
    seed: int = 0
    name: str = "fraction"

    def __post_init__(self) -> None:
        if not 0 < self.fraction <= 1:
            raise DistillError(f"pruning fraction must be in (0, 1], got {self.fraction}")
        if self.method != "random" and self.scores is None:
            raise DistillError(f"pruning by {self.method} needs per-example scores (compute them with the teacher first)")

    def __call__(self, examples: list[Example]) -> tuple[Kept, RemovedPairs]:
        n = len(examples)
        n_keep = target_count(n, self.fraction)
        order = list(range(n))
        random.Random(self.seed).shuffle(order)
        if self.method != "random":
            missing = [e.id for e in examples if e.id not in self.scores]
            if missing:
                raise DistillError(f"pruning by {self.method}: no score for example {missing[0]} ({len(missing)} examples lack one)")
            sign = -1.0 if self.keep == "hard" else 1.0
            order.sort(key=lambda i: sign * self.scores[examples[i].id])  # stable: seeded tie-break
        rank = {i: r for r, i in enumerate(order)}
        removed = {i: self._reason(examples[i], rank[i], n, n_keep) for i in order[n_keep:]}
        return _split_by_index(examples, removed)

    def _reason(self, example: Example, rank: int, n: int, n_keep: int) -> str:
        head = f"fraction {self.fraction:g} by {self.method}"
        if self.method == "random":
            return f"{head} (seed {self.seed}): not among the {n_keep} of {n} sampled"
        return f"{head}: score {self.scores[example.id]:.4g}, rank {rank + 1} of {n} ({self.keep}est {n_keep} kept)"


def target_count(n: int, fraction: float) -> int:
    """How many of `n` examples a fraction keeps: `round(fraction * n)`, at least 1 when n > 0."""
    return min(n, max(1 if n else 0, round(fraction * n)))


def _split_by_index(examples: list[Example], removed: dict[int, str]) -> tuple[Kept, RemovedPairs]:
    kept = [e for i, e in enumerate(examples) if i not in removed]
    return kept, [(examples[i], reason) for i, reason in sorted(removed.items())]


# --- running steps over splits ----------------------------------------------------------
def prune_examples(examples: list[Example], steps: Iterable[Step]) -> PruneResult:
    """Run the steps in order over one list of examples (the train split)."""
    current = list(examples)
    result = PruneResult(splits={})
    for step in steps:
        kept, removed = step(current)
        if len(kept) + len(removed) != len(current):
            raise DistillError(f"pruning step {step.name}: kept {len(kept)} + removed {len(removed)} != {len(current)} examples in")
        result.steps.append({"step": step.name, "before": len(current), "after": len(kept), "removed": len(removed)})
        result.removed += [Removed(e, step.name, reason) for e, reason in removed]
        current = kept
    result.splits["train"] = current
    return result


def prune_splits(splits: dict[str, list[Example]], steps: Iterable[Step], drop_eval_overlap: bool = True) -> PruneResult:
    """Prune the train split with `steps`; every other split is passed through untouched.

    With `drop_eval_overlap`, train examples whose normalized text also occurs in another split
    are removed first (reason `eval_overlap`), so that dev/test scores are not inflated.
    """
    if "train" not in splits:
        raise DistillError(f"no train split to prune (splits: {', '.join(splits) or 'none'})")
    steps = list(steps)
    if drop_eval_overlap:
        steps.insert(0, EvalOverlap({normalize_text(e.text): (name, e.id) for name, items in splits.items() if name != "train" for e in items}))
    result = prune_examples(splits["train"], steps)
    result.splits = {name: (result.splits["train"] if name == "train" else list(items)) for name, items in splits.items()}
    return result


@dataclass
class EvalOverlap:
    """Train examples whose normalized text is also in dev or test (a leak into evaluation)."""

    eval_texts: dict[str, tuple[str, str]]  # normalized text -> (split, id)
    name: str = "eval_overlap"

    def __call__(self, examples: list[Example]) -> tuple[Kept, RemovedPairs]:
        removed = {}
        for i, e in enumerate(examples):
            hit = self.eval_texts.get(normalize_text(e.text))
            if hit:
                removed[i] = f"eval_overlap with {hit[0]} example {hit[1]}"
        return _split_by_index(examples, removed)


def save_pruned(result: PruneResult, out_dir: str | Path) -> Path:
    """Write `out_dir/` (DatasetDict of the pruned splits), `removed.jsonl` and `report.json`."""
    out_dir = Path(out_dir)
    save_splits(result.splits, out_dir)
    atomic_write(out_dir / "removed.jsonl", "".join(r.to_json() + "\n" for r in result.removed))
    atomic_write(out_dir / "report.json", json.dumps(result.report(), indent=2) + "\n")
    return out_dir


def read_removed(path: str | Path) -> list[Removed]:
    """Read a `removed.jsonl` back (the examples with their step and reason)."""
    path = Path(path)
    if not path.exists():
        raise DistillError(f"{path}: file not found")
    out = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                row = json.loads(line)
                out.append(Removed(Example.model_validate(row["example"]), row["step"], row["reason"]))
            except (ValueError, KeyError) as err:
                raise DistillError(f"{path}:{number}: not a removed-example record ({err})") from None
    return out


# --- steps from short text specs (CLI, flow config) -------------------------------------
StepBuilder = Callable[[list[str], dict[str, dict[str, float]], int], Step]  # (arguments after the name, scores by method, seed)


def _fraction(args: list[str], scores: dict[str, dict[str, float]], seed: int) -> Step:
    method = args[1] if len(args) > 1 else "random"
    keep = args[2] if len(args) > 2 else "hard"
    if keep not in ("hard", "easy"):
        raise DistillError(f"keep must be 'hard' or 'easy', got {keep!r}")
    return ToFraction(float(args[0]), method, scores.get(method), keep, seed)  # type: ignore[arg-type]


STEPS: Registry[StepBuilder] = Registry("pruning step", "distill_ner.pruning_steps", {
    "dedup": lambda args, scores, seed: Dedup(float(args[0]) if args else 0.9),
    "rejected": lambda args, scores, seed: DropRejected(drop_pending=bool(args and args[0] == "pending")),
    "confidence": lambda args, scores, seed: MinConfidence(float(args[0]) if args else 0.5),
    "balance": lambda args, scores, seed: ClassBalance(float(args[0]) if args else 3.0, seed=seed),
    "fraction": _fraction,
})
STEP_HELP = "dedup[:0.9], rejected[:pending], confidence:0.6, balance[:3], fraction:0.5[:random|<score method>[:hard|easy]]"


def register_step(name: str, build: StepBuilder) -> None:
    """Make `name[:args]` a pruning step of the command line and run configs."""
    STEPS.register(name, build)


def parse_step(spec: str, scores: dict[str, dict[str, float]] | None = None, seed: int = 0) -> Step:
    """Build a step from text: `dedup[:0.9]`, `rejected[:pending]`, `confidence:0.6`,
    `balance[:3]`, `fraction:0.5[:method[:easy|hard]]`, or any name in `STEPS`.

    `scores` maps a method name (e.g. `teacher_loss`, `el2n`, `disagreement`) to `{id: score}`.
    """
    name, *args = spec.strip().split(":")
    if name not in STEPS:
        raise DistillError(f"unknown pruning step {spec!r} (registered: {', '.join(STEPS)})")
    try:
        return STEPS[name](args, scores or {}, seed)
    except (ValueError, IndexError):
        raise DistillError(f"pruning step {spec!r}: bad or missing number") from None
    except DistillError as err:
        raise DistillError(f"pruning step {spec!r}: {err}") from None


# --- one call for a run (flows/, `distill prune`) ---------------------------------------
class PruneSettings(BaseModel):
    """How a run prunes its train split (the run config's `prune` section)."""

    model_config = ConfigDict(extra="forbid")

    method: str = Field("random", description="random, or a hardness score computed by the teacher (teacher_loss, el2n, disagreement)")
    fraction: float = Field(1.0, gt=0, le=1, description="share of the clean train split to keep")
    min_confidence: float | None = Field(None, ge=0, le=1)
    near_duplicate_threshold: float | None = Field(None, gt=0, le=1, description="dedup the train split again at this similarity; null: no (generation has removed duplicates already)")
    seed: int = 0

    @property
    def needs_scores(self) -> bool:
        """Whether this pruning ranks examples by scores (which the flow computes with the teacher)."""
        return self.fraction < 1 and self.method != "random"


def cleaning_steps(settings: PruneSettings) -> list[Step]:
    """Dedup (if set), rejected and (if set) the confidence threshold."""
    steps: list[Step] = [Dedup(settings.near_duplicate_threshold)] if settings.near_duplicate_threshold is not None else []
    steps.append(DropRejected())
    if settings.min_confidence is not None:
        steps.append(MinConfidence(settings.min_confidence))
    return steps


def cleaned_train(splits: dict[str, list[Example]], settings: PruneSettings) -> list[Example]:
    """The train split after the cleaning steps: what score-based pruning ranks."""
    return prune_splits(splits, cleaning_steps(settings)).splits["train"]


def prune_run(splits: dict[str, list[Example]], out_dir: str | Path, settings: PruneSettings, scores: dict[str, float] | None = None) -> dict:
    """Clean the train split, keep `settings.fraction` of it by `settings.method`, save to `out_dir`.

    Score-based methods need `scores` (`{example id: hardness}` of the cleaned train split, from
    `trainers.scores.compute_scores`); they are saved to `out_dir/scores.json`.
    Returns the report (also in `out_dir/report.json`).
    """
    steps = cleaning_steps(settings)
    if settings.needs_scores and scores is None:
        raise DistillError(f"pruning by {settings.method} needs per-example scores from the teacher (none given)")
    if settings.fraction < 1:
        steps.append(ToFraction(settings.fraction, settings.method, scores, seed=settings.seed))
    result = prune_splits(splits, steps)
    save_pruned(result, out_dir)
    if settings.needs_scores:
        atomic_write(Path(out_dir) / "scores.json", json.dumps({settings.method: scores}) + "\n")
    return result.report()
