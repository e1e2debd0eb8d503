"""Export the NER part of a trained model as a plain transformers token-classification model.

    export_transformers(model_dir, out_dir, spec=None) -> Path

The folder loads with `AutoModelForTokenClassification.from_pretrained(out_dir)` and works in
`pipeline("token-classification", model=out_dir, aggregation_strategy="first")`, with no
distill-ner installed: the encoder and the tag head are copied, `id2label` holds the BIO tags.
The relation head has no transformers equivalent and is not exported (use the spaCy export).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from transformers import AutoConfig, AutoModelForTokenClassification

from distill_ner.data.errors import DistillError
from distill_ner.trainers.modeling import load_model


def export_transformers(model_dir: str | Path, out_dir: str | Path, spec: Any = None) -> Path:
    """Write `out_dir` as a transformers token-classification model; return `out_dir`."""
    loaded = load_model(model_dir)
    if spec is not None and set(spec.entity_labels) != set(loaded.meta.entity_labels):
        raise DistillError(f"{model_dir}: the model's entity labels {loaded.meta.entity_labels} differ from the spec's {spec.entity_labels}")
    tags = loaded.tags
    config = AutoConfig.from_pretrained(Path(model_dir) / "encoder", num_labels=len(tags), id2label=dict(enumerate(tags)), label2id={t: i for i, t in enumerate(tags)})
    model = AutoModelForTokenClassification.from_config(config)
    base = getattr(model, model.base_model_prefix)
    missing, _ = base.load_state_dict(loaded.model.encoder.state_dict(), strict=False)
    classifier = getattr(model, "classifier", None)
    if missing or not isinstance(classifier, type(loaded.model.ner_head)):
        raise DistillError(f"{model_dir}: this encoder ({config.model_type}) does not map onto a transformers token classifier")
    classifier.load_state_dict(loaded.model.ner_head.state_dict())
    out_dir = Path(out_dir)
    model.save_pretrained(out_dir)
    loaded.tokenizer.save_pretrained(out_dir)
    return out_dir
