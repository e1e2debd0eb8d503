"""Evaluation on gold data.

- `evaluate(model_dir, test, out_dir=None) -> dict`: entity-level (seqeval, strict spans on the
  example's words, `data.words.words_of`: a CoNLL file's own tokens) precision/recall/F1 per label, micro and macro; token-level
  macro F1 over the entity types; relation classification on gold entities (per relation and
  weighted F1, "no_relation" left out); parameters, size on disk, CPU sentences per second.
  Writes `metrics.json` and `metrics.md` into `out_dir` (default: the model directory).
- `ner_scores(gold, predicted)`, `relation_scores(loaded, examples)`, `speed(loaded, texts)`.
- `f1_interval(y_true, y_pred)`: the 95% bootstrap interval of strict span F1 over the test
  texts (`f1_low`, `f1_high` in the scores): how far the test split's sampling alone moves it.
  `f1_difference(gold, a, b)`: two predictions on the same texts, with a paired interval.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from seqeval.metrics import classification_report
from seqeval.scheme import IOB2, Entities
from sklearn.metrics import f1_score, precision_recall_fscore_support

from distill_ner.data.errors import DistillError
from distill_ner.data.example import Entity, Example, check_gold, llm_entities, usable
from distill_ner.data.formats import bio_tokens
from distill_ner.data.tables import markdown_table
from distill_ner.trainers.inference import Loaded, predict, predict_entities
from distill_ner.trainers.modeling import load_model, window_outputs
from distill_ner.trainers.ner import ner_features
from distill_ner.trainers.relations import NO_RELATION, relation_pairs


def word_tags(example: Example) -> list[str]:
    """BIO tag per word (the example's own words when it has them, see `data.formats.bio_tokens`)."""
    return [tag for _, tag, _, _ in bio_tokens(example)]


def predicted_tags(gold: Sequence[Example], predicted: Sequence[Sequence[Entity]]) -> list[list[str]]:
    """BIO tag per word of each gold text (its own words), from the entities predicted for it."""
    return [word_tags(Example(id=g.id, text=g.text, entities=list(p), words=g.words)) for g, p in zip(gold, predicted, strict=True)]


def llm_scores(test: Sequence[Example]) -> dict[str, Any]:
    """The LLM's own pre-annotations scored like a model on the gold test examples (the reviewers'
    corrections undone from each, see `data.example.llm_entities`): what the students must beat."""
    test = usable(test)
    return {"n_test": len(test), **ner_scores(test, [llm_entities(e) for e in test])}


def ner_scores(gold: Sequence[Example], predicted: Sequence[Sequence[Entity]]) -> dict[str, Any]:
    """Entity-level strict seqeval scores (micro, macro, per label), token-level macro F1 and the
    false-alarm rate (the share of texts with no gold entity in which an entity is predicted;
    None when every text has one)."""
    y_true = [word_tags(g) for g in gold]
    y_pred = predicted_tags(gold, predicted)
    report = classification_report(y_true, y_pred, mode="strict", scheme=IOB2, output_dict=True, zero_division=0)
    labels = sorted(k for k in report if k not in ("micro avg", "macro avg", "weighted avg"))
    flat_true = [t.split("-", 1)[-1] for seq in y_true for t in seq]
    flat_pred = [t.split("-", 1)[-1] for seq in y_pred for t in seq]
    types = sorted({t for t in flat_true if t != "O"})
    micro = report.get("micro avg", {"precision": 0.0, "recall": 0.0, "f1-score": 0.0})
    low, high = f1_interval(y_true, y_pred)
    return {
        "precision": round(float(micro["precision"]), 4),
        "recall": round(float(micro["recall"]), 4),
        "f1": round(float(micro["f1-score"]), 4),
        "f1_low": low,
        "f1_high": high,
        "overlap_f1": overlap_f1(gold, predicted),
        "macro_f1": round(float(report.get("macro avg", {}).get("f1-score", 0.0)), 4),
        "token_macro_f1": round(float(f1_score(flat_true, flat_pred, labels=types, average="macro", zero_division=0)), 4) if types else 0.0,
        "false_alarms": false_alarms(gold, predicted),
        "per_label": {
            k: {"precision": round(float(report[k]["precision"]), 4), "recall": round(float(report[k]["recall"]), 4), "f1": round(float(report[k]["f1-score"]), 4), "support": int(report[k]["support"])}
            for k in labels
        },
    }


def false_alarms(gold: Sequence[Example], predicted: Sequence[Sequence[Entity]]) -> float | None:
    """The share of texts without a gold entity in which an entity is predicted (None: no such text)."""
    empty = [bool(p) for g, p in zip(gold, predicted, strict=True) if not g.entities]
    return round(sum(empty) / len(empty), 4) if empty else None


def span_counts(y_true: Sequence[Sequence[str]], y_pred: Sequence[Sequence[str]]) -> np.ndarray:
    """Per text: (strict spans right, spans predicted, gold spans), seqeval's IOB2 spans; [n_texts, 3]."""
    gold, pred = Entities(list(y_true), IOB2).entities, Entities(list(y_pred), IOB2).entities
    return np.array([(len(set(g) & set(p)), len(p), len(g)) for g, p in zip(gold, pred, strict=True)], dtype=float).reshape(-1, 3)


def _resampled_f1(counts: np.ndarray, picks: np.ndarray) -> np.ndarray:
    tp, n_pred, n_gold = counts[picks].sum(axis=1).T
    return 2 * tp / np.maximum(n_pred + n_gold, 1)


def _picks(n: int, resamples: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, n, size=(resamples, n))


def f1_interval(y_true: Sequence[Sequence[str]], y_pred: Sequence[Sequence[str]], resamples: int = 1000, seed: int = 0) -> tuple[float, float]:
    """95% bootstrap interval of strict span micro F1, resampling whole texts."""
    counts = span_counts(y_true, y_pred)
    if not len(counts):
        return 0.0, 0.0
    f1 = _resampled_f1(counts, _picks(len(counts), resamples, seed))
    return round(float(np.percentile(f1, 2.5)), 4), round(float(np.percentile(f1, 97.5)), 4)


def f1_difference(gold: Sequence[Example], a: Sequence[Sequence[Entity]], b: Sequence[Sequence[Entity]], resamples: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """Strict span F1 of predictions `a` minus that of `b` on the same gold texts, with its paired
    95% bootstrap interval (both resampled on the same texts): (difference, low, high)."""
    if not gold:
        return 0.0, 0.0, 0.0
    y_true = [word_tags(g) for g in gold]
    ca, cb = span_counts(y_true, predicted_tags(gold, a)), span_counts(y_true, predicted_tags(gold, b))
    whole = np.arange(len(gold))[None, :]
    picks = _picks(len(gold), resamples, seed)
    diff = _resampled_f1(ca, picks) - _resampled_f1(cb, picks)
    point = float(_resampled_f1(ca, whole)[0] - _resampled_f1(cb, whole)[0])
    return round(point, 4), round(float(np.percentile(diff, 2.5)), 4), round(float(np.percentile(diff, 97.5)), 4)


def overlap_f1(gold: Sequence[Example], predicted: Sequence[Sequence[Entity]]) -> float:
    """Entity F1 where a prediction counts when it overlaps a gold entity of the same label (each
    gold entity matched once): the score without boundary disagreements, next to the strict one."""
    matched, n_pred, n_gold = 0, 0, 0
    for g, pred in zip(gold, predicted, strict=True):
        free = list(g.entities)
        n_pred, n_gold = n_pred + len(pred), n_gold + len(free)
        for p in pred:
            hit = next((x for x in free if x.label == p.label and x.start < p.end and p.start < x.end), None)
            if hit is not None:
                free.remove(hit)
                matched += 1
    return round(2 * matched / (n_pred + n_gold), 4) if n_pred + n_gold else 0.0


def relation_scores(loaded: Loaded, examples: Sequence[Example], batch_size: int = 64) -> dict[str, Any]:
    """Relation classification of the gold entity pairs: per relation and weighted F1."""
    labels = loaded.relation_labels
    allowed = [tuple(p) for p in loaded.meta.allowed_pairs]
    if len(labels) < 2 or not allowed:
        return {}
    features, encoded = ner_features(loaded.tokenizer, examples, loaded.tags, loaded.meta.max_length, loaded.meta.stride)
    feats = relation_pairs(features, encoded, examples, loaded.meta.entity_labels, allowed, labels)
    y_true = [labels[p.label] for p in feats.pairs]
    y_pred = [labels[int(l.argmax())] for l in window_outputs(loaded, features, feats, batch_size)[1]] if feats.pairs else []
    # gold relations whose label pair the model never considers are reported, not scored
    missed = sum(1 for e in examples for r in e.relations if (e.entities[r.head].label, e.entities[r.tail].label) not in set(allowed))
    positive = [l for l in labels if l != NO_RELATION]
    present = [l for l in positive if l in y_true or l in y_pred]
    if not present:
        return {"weighted_f1": 0.0, "per_relation": {}, "pairs": len(y_true), "skipped_pairs": feats.skipped, "uncovered_gold": missed}
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=present, zero_division=0)
    weighted = f1_score(y_true, y_pred, labels=present, average="weighted", zero_division=0)
    return {
        "weighted_f1": round(float(weighted), 4),
        "per_relation": {l: {"precision": round(float(a), 4), "recall": round(float(b), 4), "f1": round(float(c), 4), "support": int(d)} for l, a, b, c, d in zip(present, p, r, f, s)},
        "pairs": len(y_true),
        "skipped_pairs": feats.skipped,
        "uncovered_gold": missed,
    }


def speed(loaded: Loaded, texts: Sequence[str], batch_size: int = 64, sentences: int = 256, repeats: int = 2) -> float:
    """Sentences per second of full prediction (entities and relations), batched: the best of
    `repeats` timed passes over a sample of `sentences` test texts (repeated when there are fewer).
    A sample, so that scoring costs far less than training; `bench/` measures speed at length."""
    if not texts:
        return 0.0
    sample = (list(texts) * max(1, -(-sentences // len(texts))))[:sentences]
    predict(loaded, sample[:batch_size], batch_size)  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        predict(loaded, sample, batch_size)
        best = min(best, time.perf_counter() - start)
    return round(len(sample) / best, 1)


def size_on_disk(model_dir: str | Path) -> int:
    """Bytes of the model directory (weights, tokenizer, metadata; not the logits cache)."""
    return sum(p.stat().st_size for p in Path(model_dir).rglob("*") if p.is_file() and "logits_cache" not in p.parts and p.name not in ("metrics.json", "metrics.md"))


def evaluate(
    model_dir: str | Path, test: Sequence[Example], out_dir: str | Path | None = None, batch_size: int = 64, measure_speed: bool = True, against_llm: bool = False,
) -> dict[str, Any]:
    """All metrics of a model directory on a gold test split; written as metrics.json and metrics.md.
    `against_llm`: also `vs_llm`, the model's strict span F1 minus that of the LLM's own annotations
    of the same texts (`data.example.llm_entities`), with its paired 95% bootstrap interval."""
    test = usable(test)
    if not test:
        raise DistillError(f"evaluate {model_dir}: the test split is empty")
    check_gold("test", test)
    loaded = load_model(model_dir, device="cpu")
    known = set(loaded.meta.entity_labels)
    for e in test:
        for ent in e.entities:
            if ent.label not in known:
                raise DistillError(f"example {e.id}: entity label {ent.label!r} is unknown to the model {model_dir} (knows {', '.join(sorted(known))})")
    torch.manual_seed(0)
    predicted = predict_entities(loaded, test, batch_size)
    metrics: dict[str, Any] = {
        "model": str(model_dir),
        "role": loaded.meta.role,
        "kd": loaded.meta.kd,
        "n_test": len(test),
        **ner_scores(test, predicted),
        "relations": relation_scores(loaded, test, batch_size),
        "parameters": loaded.meta.parameters,
        "layers": loaded.model.encoder.config.num_hidden_layers,
        "size_mb": round(size_on_disk(model_dir) / 1e6, 1),
        "train_seconds": loaded.meta.train_seconds,
    }
    metrics["relation_f1"] = metrics["relations"].get("weighted_f1") if metrics["relations"] else None
    if against_llm:
        metrics["vs_llm"] = dict(zip(("difference", "low", "high"), f1_difference(test, predicted, [llm_entities(e) for e in test]), strict=True))
    metrics["sentences_per_second"] = speed(loaded, [e.text for e in test], batch_size) if measure_speed else None
    write_metrics(metrics, out_dir or model_dir)
    return metrics


def write_metrics(metrics: dict[str, Any], out_dir: str | Path) -> None:
    """metrics.json and metrics.md."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n", encoding="utf-8")
    (out_dir / "metrics.md").write_text(metrics_markdown(metrics), encoding="utf-8")


def metrics_markdown(m: dict[str, Any]) -> str:
    """Markdown tables: entities per label, summary, relations per label."""
    per_label = [{"label": k, **v} for k, v in m["per_label"].items()]
    per_label += [{"label": "**micro**", "precision": m["precision"], "recall": m["recall"], "f1": m["f1"]}, {"label": "macro", "f1": m["macro_f1"]}]
    summary = {
        "overlap span F1": m.get("overlap_f1"), "token macro F1": m["token_macro_f1"], "relation weighted F1": m.get("relation_f1"),
        "parameters": f"{m['parameters']:,}", "layers": m["layers"], "size (MB)": m["size_mb"],
        "sentences/s (CPU)": _fmt(m.get("sentences_per_second"), 1), "training s": _fmt(m.get("train_seconds"), 1),
    }
    parts = [f"# Metrics: {m['model']}\n", markdown_table(per_label, ["label", "precision", "recall", "f1", "support"]), markdown_table([summary])]
    if m.get("relations", {}).get("per_relation"):
        parts.append(markdown_table([{"relation": k, **v} for k, v in m["relations"]["per_relation"].items()], ["relation", "precision", "recall", "f1", "support"]))
    return "\n".join(parts)


def _fmt(value: Any, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"
