"""The one training pipeline: teacher(s), then a student, with one cache of finished models.

`distill train`, the flow's teacher and student stages, the pruning sweep and `bench/train.py`
all train through `teachers` and `student` here. A finished model's `model.json` records the key
of what made it (`cache_key`: the settings that matter for its role, the examples it learned from
and, for a student, its teachers' weights); asked for the same model in the same folder again,
any of them reuses it instead of training, and says so.

- `teachers(train, dev, out_dir, args, spec=None) -> list[Path]` (`args.teachers` of them)
- `student(train, dev, teacher_dir, out_dir, args, fraction=1.0, transfer=(), extra_teachers=()) -> Path`
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from distill_ner.data.digest import content_key, inputs_key
from distill_ner.data.example import Example
from distill_ner.trainers.args import TEACHER_FIELDS, TrainingArgs
from distill_ner.trainers.inference import model_files, read_meta, write_meta

NOT_IN_KEY = ("threads", "device", "eval_batch_size", "progress")  # how fast or where, not what is learned


def examples_key(examples: Sequence[Example]) -> str:
    """A digest of the examples as training sees them: ids, texts, entities, relations, review status."""
    return inputs_key([[e.id, e.text, [x.model_dump(mode="json") for x in e.entities], [r.model_dump(mode="json") for r in e.relations], e.review.status]
                       for e in examples])


def teacher_key(train: Sequence[Example], dev: Sequence[Example], args: TrainingArgs, spec: Any = None) -> str:
    """What makes a teacher: the teacher's own settings (never a student or KD setting), the data and the spec's labels."""
    settings = {f: getattr(args, f) for f in TEACHER_FIELDS if f not in NOT_IN_KEY}
    labels = None if spec is None else [list(spec.entity_labels), [r.model_dump(mode="json") for r in spec.relations]]
    return inputs_key(["teacher", settings, examples_key(train), examples_key(dev), labels])


def student_key(train: Sequence[Example], dev: Sequence[Example], teacher_dirs: Sequence[str | Path], args: TrainingArgs, fraction: float,
                transfer: Sequence[Example]) -> str:
    """What makes a student: every setting that is not about speed, the data, the transfer texts and the teachers' weights."""
    settings = args.model_dump(mode="json", exclude=set(NOT_IN_KEY))
    teachers = [content_key(model_files(t)) for t in teacher_dirs]
    return inputs_key(["student", settings, fraction, examples_key(train), examples_key(dev), examples_key(transfer), teachers])


def _cached(dirs: Sequence[Path], key: str, train: Callable[[], list[Path]], log: Callable[[str], None]) -> list[Path]:
    """`dirs` when each holds its model made from `key` (the k-th records `key-k`); else `train()`,
    then record the keys in what it trained."""
    if all((d / "model.json").exists() and read_meta(d).cache_key == f"{key}-{k}" for k, d in enumerate(dirs)):
        log(f"reusing {', '.join(map(str, dirs))}: trained before from the same settings and data")
        return list(dirs)
    trained = train()
    for k, d in enumerate(trained):
        write_meta(d, read_meta(d).model_copy(update={"cache_key": f"{key}-{k}"}))
    return trained


def teachers(train: Sequence[Example], dev: Sequence[Example], out_dir: str | Path, args: Any = None, spec: Any = None,
             log: Callable[[str], None] = print) -> list[Path]:
    """`args.teachers` teachers in `out_dir` (and `out_dir`-2, ...), trained unless they already were from the same inputs."""
    from distill_ner.trainers.teachers import teacher_dirs, train_teachers

    args = TrainingArgs.from_any(args)
    return _cached(teacher_dirs(out_dir, args.teachers), teacher_key(train, dev, args, spec), lambda: train_teachers(train, dev, out_dir, args, spec=spec), log)


def student(train: Sequence[Example], dev: Sequence[Example], teacher_dir: str | Path, out_dir: str | Path, args: Any = None, fraction: float = 1.0,
            transfer: Sequence[Example] = (), extra_teachers: Sequence[str | Path] = (), log: Callable[[str], None] = print) -> Path:
    """A KD student of `teacher_dir` (and `extra_teachers`) in `out_dir`, trained unless it already was from the same inputs."""
    from distill_ner.trainers.trainer import train_student

    args = TrainingArgs.from_any(args)
    key = student_key(train, dev, [teacher_dir, *extra_teachers], args, fraction, transfer)
    return _cached([Path(out_dir)], key, lambda: [train_student(train, dev, teacher_dir, out_dir, args, fraction=fraction, transfer=transfer,
                                                                extra_teachers=extra_teachers)], log)[0]
