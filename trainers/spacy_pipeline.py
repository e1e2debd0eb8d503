"""The spaCy component `distill_ner_re`: the trained student inside a spaCy pipeline.

Registered through the `spacy_factories` entry point (pyproject.toml), so `spacy.load(path)`
finds it in any process where distill-ner is installed. The exported pipeline's tokenizer cuts
raw text into the project's words (`data.words.words_tokenizer`, as in training); a Doc made from a file's own tokens (`Doc(nlp.vocab, words=...)`) keeps them. The component runs the
HF model on the doc's text (word pieces with char offsets, windows for long texts) once per batch
and reads the tags on the doc's tokens (`data.words.read_on`: another tokenizer's cuts inside a
project word are undone), so every entity starts and ends on a token:
BIO tags become char spans -> `doc.char_span(...)` -> `doc.ents`, and
the entity pairs whose labels `allowed_pairs` permits are classified from the same encoder pass
-> `doc._.relations`, a list of `(head Span, tail Span, label, score)`. `nlp.pipe` batches (`batch_size`).

Relations are stored on the Doc in a serializable form, `doc._.relation_data`: a list of
`(head_start, head_end, head_label, tail_start, tail_end, tail_label, label, score)` (character
offsets, plain values; a msgpack round trip may give them back as lists or a tuple, read either), so `Doc.to_bytes`, `DocBin(store_user_data=True)` and
`nlp.pipe(n_process=2)` carry them. `doc._.relations` is built from it on access (and setting it
to `(Span, Span, label, score)` tuples writes it), so it reads as before.

Serialization like a built-in component: `to_disk` copies the model directory into the
pipeline and `from_disk` loads it; `to_bytes` packs the model directory's files (msgpack of
`{relative path: bytes}`) and `from_bytes` unpacks them into a temporary directory (removed with
the component) and loads it.

Runtimes (`runtime` in the component's config): `torch` (default) runs the model directory's torch
weights; `onnx` runs its `onnx/` graphs on ONNX Runtime (`distill export-spacy --runtime onnx
[--quantize int8]`, see `trainers.onnx_runtime`; the folder then holds no torch weights and needs
onnxruntime installed), with the same windows, decoding and relation candidates. The ONNX files
travel with `to_disk` and `to_bytes` like the others.

Scores: `nlp.evaluate` calls the registered scorer `distill_ner_re_scorer.v1`: `ents_p/r/f`,
`ents_per_type` (spaCy's own NER scorer) and `rel_micro_p/r/f`, `rel_per_type` (strict: a
predicted relation counts when head and tail character offsets, entity labels and the relation
label all equal a gold one in the reference doc's `doc._.relation_data`).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import weakref
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import srsly
from spacy import registry
from spacy.language import Language
from spacy.scorer import PRFScore, get_ner_prf
from spacy.tokens import Doc, Span
from spacy.training import Example as SpacyExample
from spacy.util import filter_spans, minibatch

from distill_ner.data.errors import DistillError
from distill_ner.data.example import Example
from distill_ner.data.words import doc_words, read_on
from distill_ner.trainers.inference import MODEL_FILES

FACTORY = "distill_ner_re"
SCORER = "distill_ner_re_scorer.v1"
RELATION_DATA = "relation_data"


def _relation_rows(doc: Doc, relations: Iterable[tuple[Span, Span, str, float]] | None) -> list[list[Any]] | None:
    """`(head Span, tail Span, label, score)` tuples -> plain rows of `doc._.relation_data`."""
    if relations is None:
        return None
    return [(h.start_char, h.end_char, h.label_, t.start_char, t.end_char, t.label_, str(label), float(score)) for h, t, label, score in relations]


def _get_relations(doc: Doc) -> list[tuple[Span, Span, str, float]] | None:
    """`doc._.relations`: Spans built from `doc._.relation_data` (None when nothing set it)."""
    rows = doc._.get(RELATION_DATA)
    if rows is None:
        return None
    out = []
    for hs, he, hl, ts, te, tl, label, score in rows:
        head = doc.char_span(hs, he, label=hl, alignment_mode="expand")
        tail = doc.char_span(ts, te, label=tl, alignment_mode="expand")
        if head is not None and tail is not None:
            out.append((head, tail, label, score))
    return out


def _set_relations(doc: Doc, relations: Iterable[tuple[Span, Span, str, float]] | None) -> None:
    doc._.set(RELATION_DATA, _relation_rows(doc, relations))


if not Doc.has_extension(RELATION_DATA):
    Doc.set_extension(RELATION_DATA, default=None)
if not Doc.has_extension("relations") or Doc.get_extension("relations")[2] is not _get_relations:
    Doc.set_extension("relations", getter=_get_relations, setter=_set_relations, force=True)


def relation_keys(doc: Doc) -> set[tuple[Any, ...]]:
    """Strict relation keys of a doc: (head start, end, label, tail start, end, label, relation label)."""
    return {tuple(row[:7]) for row in doc._.get(RELATION_DATA) or []}


def score_relations(examples: Iterable[SpacyExample]) -> dict[str, Any]:
    """`rel_micro_p/r/f` and `rel_per_type` of predicted against reference `doc._.relation_data`."""
    micro, per_type = PRFScore(), {}
    for eg in examples:
        gold, pred = relation_keys(eg.reference), relation_keys(eg.predicted)
        for key in gold | pred:
            score = per_type.setdefault(key[6], PRFScore())
            hit = (key in gold) + 2 * (key in pred)  # 3: both, 1: gold only (fn), 2: predicted only (fp)
            for prf in (micro, score):
                prf.tp += hit == 3
                prf.fn += hit == 1
                prf.fp += hit == 2
    return {
        "rel_micro_p": micro.precision, "rel_micro_r": micro.recall, "rel_micro_f": micro.fscore,
        "rel_per_type": {label: prf.to_dict() for label, prf in sorted(per_type.items())},
    }


def score_ner_re(examples: Iterable[SpacyExample], **kwargs: Any) -> dict[str, Any]:
    """The component's scores: spaCy's NER scores (`ents_p/r/f`, `ents_per_type`) and relation P/R/F1."""
    examples = list(examples)
    return {**get_ner_prf(examples, **kwargs), **score_relations(examples)}


@registry.scorers(SCORER)
def make_scorer() -> Callable[..., dict[str, Any]]:
    """Registered scorer of `distill_ner_re` (`[components.distill_ner_re.scorer]`)."""
    return score_ner_re


class DistillNerRe:
    """Entities and relations from a distill-ner model directory."""

    def __init__(
        self, nlp: Language, name: str, batch_size: int, labels: list[str], relation_labels: list[str], allowed_pairs: list[list[str]], device: str,
        scorer: Callable[..., dict[str, Any]] | None = score_ner_re, runtime: str = "torch",
    ) -> None:
        self.nlp, self.name = nlp, name
        self.cfg = {
            "batch_size": batch_size, "labels": list(labels), "relation_labels": list(relation_labels), "allowed_pairs": [list(p) for p in allowed_pairs], "device": device,
            "runtime": runtime,
        }
        self.scorer = scorer
        self.loaded = None
        self.model_dir: Path | None = None
        self._unpacked: weakref.finalize | None = None  # the temporary model directory of `from_bytes`
        self._pid = os.getpid()

    @property
    def labels(self) -> tuple[str, ...]:
        """Entity labels (spaCy puts them in meta.json)."""
        return tuple(self.cfg["labels"])

    def load(self, model_dir: str | Path) -> DistillNerRe:
        """Load the model directory (encoder/, heads.pt, model.json; or onnx/ for the ONNX runtime) to predict with."""
        from distill_ner.trainers.onnx_runtime import load_runtime

        self.loaded = load_runtime(model_dir, device=self.cfg["device"], runtime=self.cfg.get("runtime", "torch"))
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
        from distill_ner.trainers.inference import predict

        if self.loaded is None:
            raise DistillError(f"spaCy component {self.name}: no model loaded (export it with `distill export-spacy`)")
        if os.getpid() != self._pid:
            # A forked worker of `nlp.pipe(n_process=N)`: the parent's OpenMP thread pool does not
            # survive a fork and torch would hang in it; one thread per worker process (an ONNX
            # Runtime session is made anew in the worker, with one thread too).
            if hasattr(self.loaded.model, "set_threads"):
                self.loaded.model.set_threads(1)
            else:
                import torch

                torch.set_num_threads(1)
            self._pid = os.getpid()
        inputs = [Example(text=d.text, words=read_on(d.text, doc_words(d))) for d in docs]
        predicted = predict(self.loaded, inputs, self.cfg["batch_size"], allowed=self.cfg["allowed_pairs"])
        for doc, example in zip(docs, predicted):
            spans = [doc.char_span(e.start, e.end, label=e.label, alignment_mode="expand") for e in example.entities]  # on token edges already
            doc.ents = filter_spans([s for s in spans if s is not None])
            kept = set(doc.ents)
            doc._.relations = [
                (spans[r.head], spans[r.tail], r.label, r.confidence) for r in example.relations if spans[r.head] in kept and spans[r.tail] in kept
            ]
        return docs

    def score(self, examples: Iterable[SpacyExample], **kwargs: Any) -> dict[str, Any]:
        """Entity and relation scores of `examples` (called by `nlp.evaluate`)."""
        return self.scorer(examples, **kwargs) if self.scorer is not None else {}

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
                if not src.exists():
                    continue
                (shutil.copytree if src.is_dir() else shutil.copy2)(src, target / name)
        (path / "cfg.json").write_text(json.dumps(self.cfg, indent=1) + "\n", encoding="utf-8")

    def from_disk(self, path: str | Path, exclude: Iterable[str] = ()) -> DistillNerRe:
        path = Path(path)
        cfg = path / "cfg.json"
        if cfg.exists():
            self.cfg.update(json.loads(cfg.read_text(encoding="utf-8")))
        return self.load(path / "model")

    def to_bytes(self, *, exclude: Iterable[str] = ()) -> bytes:
        """The config and the model directory's files, as msgpack bytes."""
        if self.model_dir is None:
            raise DistillError(f"spaCy component {self.name}: no model to save")
        files = {}
        for name in MODEL_FILES:
            src = self.model_dir / name
            for path in sorted(src.rglob("*")) if src.is_dir() else [src]:
                if path.is_file():
                    files[path.relative_to(self.model_dir).as_posix()] = path.read_bytes()
        return srsly.msgpack_dumps({"cfg": self.cfg, "model": files})

    def from_bytes(self, bytes_data: bytes, *, exclude: Iterable[str] = ()) -> DistillNerRe:
        """Unpack `to_bytes` into a temporary model directory (removed with the component) and load it."""
        msg = srsly.msgpack_loads(bytes_data)
        self.cfg.update(msg["cfg"])
        root = Path(tempfile.mkdtemp(prefix="distill_ner_re-"))
        for rel, content in msg["model"].items():
            target = (root / rel).resolve()
            if root.resolve() not in target.parents:
                raise DistillError(f"spaCy component {self.name}: bad file name {rel!r} in the serialized model")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)
        if self._unpacked is not None:
            self._unpacked()
        self._unpacked = weakref.finalize(self, shutil.rmtree, str(root), True)
        return self.load(root)

    def initialize(self, get_examples: Any = None, nlp: Language | None = None) -> None:
        """Nothing to initialise: the model is trained by `distill train`."""


@Language.factory(
    FACTORY,
    default_config={"batch_size": 64, "labels": [], "relation_labels": [], "allowed_pairs": [], "device": "cpu", "scorer": {"@scorers": SCORER}, "runtime": "torch"},
    assigns=["doc.ents", "token.ent_iob", "token.ent_type", f"doc._.{RELATION_DATA}", "doc._.relations"],
    default_score_weights={"ents_f": 0.5, "ents_p": 0.0, "ents_r": 0.0, "ents_per_type": None, "rel_micro_f": 0.5, "rel_micro_p": 0.0, "rel_micro_r": 0.0, "rel_per_type": None},
)
def make_component(
    nlp: Language, name: str, batch_size: int, labels: list[str], relation_labels: list[str], allowed_pairs: list[list[str]], device: str,
    scorer: Callable[..., dict[str, Any]] | None = score_ner_re, runtime: str = "torch",
) -> DistillNerRe:
    """spaCy factory of `distill_ner_re` (registered by entry point); `scorer` defaults to `distill_ner_re_scorer.v1`
    and `runtime` to `torch` (config written by an older export has neither key and gets the defaults)."""
    return DistillNerRe(nlp, name, batch_size, labels, relation_labels, allowed_pairs, device, scorer, runtime)
