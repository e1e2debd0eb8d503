"""Knowledge distillation: Hinton KD, Annealing-KD, and the teacher-logits cache.

- `hinton_loss(student, teacher, labels, alpha, temperature)`:
  `alpha * T^2 * KL(softmax(teacher/T) || softmax(student/T)) + (1 - alpha) * CE(student, labels)`,
  averaged over positions whose label is not -100 (word pieces for NER, pairs for RE).
- `annealing_factor(step, total_steps, t_max)`: Annealing-KD (Jafari et al., 2021) phase 1 uses
  `phi(T) = 1 - (T - 1) / t_max` with T stepping down from t_max to 1, so phi rises step by step
  from 1/t_max to 1; `annealing_loss` regresses the student's logits on `phi * teacher logits`
  (MSE). Phase 2 is plain cross-entropy on the hard labels.
- `cached_teacher_logits(teacher_dir, inputs, compute)`: teacher logits computed once per
  teacher and feature set (keyed by a hash of the teacher weights and every input id), stored
  under `teacher_dir/logits_cache/`, so KD costs little more than plain training.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F

IGNORE = -100


def _mask(labels: torch.Tensor) -> torch.Tensor:
    return labels != IGNORE


def hinton_loss(student: torch.Tensor, teacher: torch.Tensor, labels: torch.Tensor, alpha: float, temperature: float) -> torch.Tensor:
    """Hinton KD loss on logits [..., C] with hard labels [...] (-100 = ignored position)."""
    mask = _mask(labels)
    s, t, y = student[mask].float(), teacher[mask].float(), labels[mask]
    if s.numel() == 0:
        return student.sum() * 0.0
    ce = F.cross_entropy(s, y)
    if alpha == 0:
        return ce
    kl = F.kl_div(F.log_softmax(s / temperature, -1), F.log_softmax(t / temperature, -1), log_target=True, reduction="batchmean")
    return alpha * temperature**2 * kl + (1 - alpha) * ce


def annealing_temperature(step: int, total_steps: int, t_max: float) -> float:
    """Phase-1 temperature: t_max for the first 1/t_max of the steps, then one lower each stretch, down to 1."""
    levels = max(1, math.ceil(t_max))
    stretch = max(1, math.ceil(total_steps / levels))
    return max(1.0, t_max - step // stretch)


def annealing_factor(step: int, total_steps: int, t_max: float) -> float:
    """phi(T) = 1 - (T - 1) / t_max: 1/t_max at the first step, 1 at the last stretch."""
    return 1.0 - (annealing_temperature(step, total_steps, t_max) - 1.0) / t_max


def annealing_loss(student: torch.Tensor, teacher: torch.Tensor, labels: torch.Tensor, factor: float) -> torch.Tensor:
    """Phase-1 Annealing-KD loss: MSE between student logits and `factor * teacher logits`."""
    mask = _mask(labels)
    s, t = student[mask].float(), teacher[mask].float()
    if s.numel() == 0:
        return student.sum() * 0.0
    return F.mse_loss(s, factor * t)


def kd_loss(kind: str, student: torch.Tensor, teacher: torch.Tensor | None, labels: torch.Tensor, *, alpha: float, temperature: float, factor: float | None = None) -> torch.Tensor:
    """The training loss of one batch for KD `kind` (none | hinton | annealing phase 1 when `factor`)."""
    if kind == "none" or teacher is None:
        return hinton_loss(student, student.detach(), labels, 0.0, 1.0)
    if kind == "annealing":
        if factor is None:  # phase 2: hard labels only
            return hinton_loss(student, teacher, labels, 0.0, 1.0)
        return annealing_loss(student, teacher, labels, factor)
    return hinton_loss(student, teacher, labels, alpha, temperature)


# --- teacher-logits cache -----------------------------------------------------------------
def fingerprint(teacher_dir: str | Path, inputs: Sequence[Sequence[int]], extra: str = "") -> str:
    """Hash of the teacher's weight files (size and mtime) and every input sequence."""
    h = hashlib.sha1(extra.encode())
    for path in sorted(Path(teacher_dir).rglob("*")):
        if path.is_file() and "logits_cache" not in path.parts and path.suffix in (".safetensors", ".bin", ".pt"):
            stat = path.stat()
            h.update(f"{path.name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    for ids in inputs:
        h.update(len(ids).to_bytes(4, "little"))
        h.update(b"".join(int(i).to_bytes(4, "little", signed=True) for i in ids))
    return h.hexdigest()[:20]


def cached_teacher_logits(
    teacher_dir: str | Path,
    inputs: Sequence[Sequence[int]],
    compute: Callable[[], dict[str, list[torch.Tensor]]],
    name: str = "logits",
) -> dict[str, list[torch.Tensor]]:
    """Teacher logits for `inputs` (named lists of tensors), from `teacher_dir/logits_cache/` or
    computed once and saved (as float16)."""
    key = fingerprint(teacher_dir, inputs, name)
    path = Path(teacher_dir) / "logits_cache" / f"{name}-{key}.pt"
    if path.exists():
        return torch.load(path, weights_only=True)
    logits = {k: [t.detach().to("cpu", torch.float16) for t in v] for k, v in compute().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(logits, tmp)
    tmp.replace(path)
    return logits
