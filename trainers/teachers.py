"""Training the teachers: `--search`, an honest learning-rate and epoch finder, and several teachers.

    teacher_dir = train_teacher_searched(train, dev, out_dir, args, spec=None)
    teacher_dirs = train_teachers(train, dev, out_dir, args, spec=None)      # args.teachers of them

With `args.search`, a teacher is trained for every (learning rate, epochs) of a small grid and
`args.search_seeds` seeds on the training split, and scored on the dev split only (its best dev
evaluation, as early stopping keeps it); the setting with the best mean dev score trains the final
teacher. The grid, every dev score and the choice go into the teacher's `model.json` (`search`),
and a student trained with `args.search` from that teacher takes the same learning rate and epochs.
The test split is never looked at. Without `args.search` this is `train_teacher`.

With `args.teachers` N > 1, N teachers are trained on the same data with seeds seed, seed+1, ...
(the first in `out_dir`, the others in `out_dir-2`, `out_dir-3`, ...; they take the settings the
first one's search chose), and a student learns their combined logits (`trainers/kd/ensemble.py`).
"""

from __future__ import annotations

import math
import shutil
import statistics
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from distill_ner.data.errors import DistillError
from distill_ner.data.example import Example, usable
from distill_ner.trainers.args import TrainingArgs
from distill_ner.trainers.inference import read_meta, write_meta
from distill_ner.trainers.trainer import budget_epochs, train_teacher


def search_grid(args: TrainingArgs, n_train: int) -> list[tuple[float, int]]:
    """(learning rate, epochs) settings to try; without `search_epochs`, the epochs of the step
    budget (texts counted as one window each) and half of them."""
    if args.search_epochs:
        epochs = args.search_epochs
    else:
        full = args.epochs or budget_epochs(math.ceil(n_train / args.batch_size), args.step_budget)
        epochs = [math.ceil(full / 2), full]
    return [(lr, e) for lr in args.search_learning_rates for e in dict.fromkeys(epochs)]


def search_settings(train: Sequence[Example], dev: Sequence[Example], args: TrainingArgs, spec: Any = None) -> dict[str, Any]:
    """Score every grid setting on dev (mean over seeds); return the grid with its scores and the best setting."""
    if not usable(dev):
        raise DistillError("--search chooses settings on the dev split, and it is empty: give --dev or a dev share")
    trials = []
    with tempfile.TemporaryDirectory(prefix="distill-search-") as tmp:
        for lr, epochs in search_grid(args, len(usable(train))):
            scores = []
            for k in range(args.search_seeds):
                trial = args.model_copy(update={"learning_rate": lr, "epochs": epochs, "seed": args.seed + k, "search": False, "progress": False})
                model_dir = train_teacher(train, dev, Path(tmp) / f"lr{lr:g}-e{epochs}-s{trial.seed}", trial, spec=spec)
                scores.append(read_meta(model_dir).dev["score"])
                shutil.rmtree(model_dir)
            trials.append({"learning_rate": lr, "epochs": epochs, "dev_scores": scores, "mean_dev_score": round(statistics.mean(scores), 5)})
            if args.progress:
                print(f"search: learning rate {lr:g}, {epochs} epochs: dev score {trials[-1]['mean_dev_score']:.4f} (seeds {', '.join(f'{s:.4f}' for s in scores)})")
    best = max(trials, key=lambda t: t["mean_dev_score"])  # the first of equal ones, in grid order
    return {"seeds": args.search_seeds, "grid": trials, "best": {"learning_rate": best["learning_rate"], "epochs": best["epochs"]}}


def train_teacher_searched(train: Sequence[Example], dev: Sequence[Example], out_dir: str | Path, args: Any = None, spec: Any = None) -> Path:
    """`train_teacher`, after the grid search when `args.search` is set (the search goes into model.json)."""
    args = TrainingArgs.from_any(args)
    if not args.search:
        return train_teacher(train, dev, out_dir, args, spec=spec)
    found = search_settings(train, dev, args, spec)
    if args.progress:
        print(f"search: training the teacher with learning rate {found['best']['learning_rate']:g}, {found['best']['epochs']} epochs")
    path = train_teacher(train, dev, out_dir, args.model_copy(update=found["best"]), spec=spec)
    write_meta(path, read_meta(path).model_copy(update={"search": found}))
    return path


def teacher_dirs(out_dir: str | Path, n: int) -> list[Path]:
    """Where `train_teachers` puts N teachers: `out_dir`, then `out_dir-2`, `out_dir-3`, ..."""
    out_dir = Path(out_dir)
    return [out_dir, *(out_dir.with_name(f"{out_dir.name}-{k}") for k in range(2, n + 1))]


def train_teachers(train: Sequence[Example], dev: Sequence[Example], out_dir: str | Path, args: Any = None, spec: Any = None) -> list[Path]:
    """`args.teachers` teachers (seeds seed, seed+1, ...), the first after `--search` when set; their folders."""
    args = TrainingArgs.from_any(args)
    dirs = teacher_dirs(out_dir, args.teachers)
    first = train_teacher_searched(train, dev, dirs[0], args, spec=spec)
    found = read_meta(first).search
    chosen = found["best"] if found else {}
    others = [train_teacher(train, dev, d, args.model_copy(update={"seed": args.seed + k, "search": False, **chosen}), spec=spec) for k, d in enumerate(dirs[1:], 1)]
    return [first, *others]
