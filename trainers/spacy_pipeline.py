"""The spaCy component `distill_ner_re`: the trained student inside a spaCy pipeline.

Registered through the `spacy_factories` entry point (pyproject.toml), so `spacy.load(path)`
finds it in any process where distill-ner is installed. spaCy tokenizes; the component runs the
HF model on the raw text (word pieces with char offsets, windows for long texts) once per batch:
BIO tags become char spans -> `doc.char_span(..., alignment_mode="expand")` -> `doc.ents`, and
the entity pairs whose labels `allowed_pairs` permits are classified from the same encoder pass
-> `doc._.relations`, a list of `(head Span, tail Span, label, score)`. `nlp.pipe` batches (`batch_size`). `to_disk` copies the
model directory into the pipeline; `from_disk` loads it.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from spacy.language import Language
from spacy.tokens import Doc
from spacy.util import filter_spans, minibatch

from data.errors import DistillError

FACTORY = "distill_ner_re"
MODEL_FILES = ("encoder", "heads.pt", "model.json")

if not Doc.has_extension("relations"):
    Doc.set_extension("relations", default=None)


class DistillNerRe:
    """Entities and relations from a distill-ner model directory."""

    def __init__(self, nlp: Language, name: str, batch_size: int, labels: list[str], relation_labels: list[str], allowed_pairs: list[list[str]], device: str) -> None:
        self.nlp, self.name = nlp, name
        self.cfg = {"batch_size": batch_size, "labels": list(labels), "relation_labels": list(relation_labels), "allowed_pairs": [list(p) for p in allowed_pairs], "device": device}
        self.loaded = None
        self.model_dir: Path | None = None

    @property
    def labels(self) -> tuple[str, ...]:
        """Entity labels (spaCy puts them in meta.json)."""
        return tuple(self.cfg["labels"])

    def load(self, model_dir: str | Path) -> DistillNerRe:
        """Load the model directory (encoder/, heads.pt, model.json) to predict with."""
        from trainers.modeling import load_model

        self.loaded = load_model(model_dir, device=self.cfg["device"])
        self.model_dir = Path(model_dir)
        meta = self.loaded.meta
        self.cfg["labels"] = self.cfg["labels"] or list(meta.entity_labels)
        self.cfg["relation_labels"] = self.cfg["relation_labels"] or list(meta.relation_labels)
        if not self.cfg["allowed_pairs"]:
            self.cfg["allowed_pairs"] = [list(p) for p in meta.allowed_pairs]
        return self

    def __call__(self, doc: Doc) -> Doc:
        return self._process([doc])[0]

    def pipe(self, stream: Iterable[Doc], batch_size: int | None = None) -> Iterator[Doc]:
        for batch in minibatch(stream, size=batch_size or self.cfg["batch_size"]):
            yield from self._process(list(batch))

    def _process(self, docs: list[Doc]) -> list[Doc]:
        from trainers.modeling import predict

        if self.loaded is None:
            raise DistillError(f"spaCy component {self.name}: no model loaded (export it with `distill export-spacy`)")
        predicted = predict(self.loaded, [d.text for d in docs], self.cfg["batch_size"], allowed=self.cfg["allowed_pairs"])
        for doc, example in zip(docs, predicted):
            spans = [doc.char_span(e.start, e.end, label=e.label, alignment_mode="expand") for e in example.entities]
            doc.ents = filter_spans([s for s in spans if s is not None])
            kept = set(doc.ents)
            doc._.relations = [
                (spans[r.head], spans[r.tail], r.label, r.confidence) for r in example.relations if spans[r.head] in kept and spans[r.tail] in kept
            ]
        return docs

    # --- serialization --------------------------------------------------------------------
    def to_disk(self, path: str | Path, exclude: Iterable[str] = ()) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        if self.model_dir is None:
            raise DistillError(f"spaCy component {self.name}: no model to save")
        target = path / "model"
        if target.resolve() != self.model_dir.resolve():
            if target.exists():
                shutil.rmtree(target)
            target.mkdir()
            for name in MODEL_FILES:
                src = self.model_dir / name
                (shutil.copytree if src.is_dir() else shutil.copy2)(src, target / name)
        (path / "cfg.json").write_text(json.dumps(self.cfg, indent=1) + "\n", encoding="utf-8")

    def from_disk(self, path: str | Path, exclude: Iterable[str] = ()) -> DistillNerRe:
        path = Path(path)
        cfg = path / "cfg.json"
        if cfg.exists():
            self.cfg.update(json.loads(cfg.read_text(encoding="utf-8")))
        return self.load(path / "model")

    def initialize(self, get_examples: Any = None, nlp: Language | None = None) -> None:
        """Nothing to initialise: the model is trained by `distill train`."""


@Language.factory(
    FACTORY,
    default_config={"batch_size": 64, "labels": [], "relation_labels": [], "allowed_pairs": [], "device": "cpu"},
)
def make_component(nlp: Language, name: str, batch_size: int, labels: list[str], relation_labels: list[str], allowed_pairs: list[list[str]], device: str) -> DistillNerRe:
    """spaCy factory of `distill_ner_re` (registered by entry point)."""
    return DistillNerRe(nlp, name, batch_size, labels, relation_labels, allowed_pairs, device)
