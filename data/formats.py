"""Reading and writing `Example`s: JSONL (native), HF `datasets` splits, CoNLL BIO, spaCy DocBin.

JSONL and the `datasets` splits hold everything. CoNLL holds text, tokens and entities (the
original spacing is kept in a `# text = ...` comment) but not relations: writing relations to
CoNLL is an error unless you ask to drop them. DocBin holds entities, and relations in
`doc.user_data["relations"]`.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
from collections.abc import Collection, Iterable, Iterator
from pathlib import Path

from pydantic import ValidationError

from distill_ner.data.errors import DistillError, validation_message
from distill_ner.data.example import Entity, Example, Relation, Source
from distill_ner.data.words import doc_from_words, doc_words, own_words, tokenize, words_of

SPLITS = ("train", "dev", "test")
CONLL_SUFFIXES = {".conll", ".bio", ".tsv", ".iob"}


# --- text files --------------------------------------------------------------------------
def read_text(path: str | Path) -> str:
    """The file's text: UTF-8 (a byte-order mark is dropped); a binary file or another encoding is
    one error naming the line."""
    path = Path(path)
    if not path.exists():
        raise DistillError(f"{path}: file not found")
    if path.is_dir():
        raise DistillError(f"{path}: is a folder; give a file")
    data = path.read_bytes()
    if b"\x00" in data[:8192]:
        raise DistillError(f"{path}: is a binary file, not text")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise DistillError(f"{path}:{line}: is not UTF-8 (byte 0x{data[err.start]:02x}); convert the file to UTF-8 first") from None


# --- JSONL ------------------------------------------------------------------------------
def iter_jsonl(path: str | Path) -> Iterator[Example]:
    """Yield examples from a JSONL file; a bad line raises an error naming the file and line."""
    path = Path(path)
    for number, line in enumerate(read_text(path).split("\n"), 1):  # not splitlines(): JSON strings may hold U+2028
        if not line.strip():
            continue
        try:
            yield Example.model_validate_json(line)
        except ValidationError as err:
            raise DistillError(f"{path}:{number}: {validation_message(err)}") from None


def read_jsonl(path: str | Path) -> list[Example]:
    """All examples of a JSONL file."""
    return list(iter_jsonl(path))


def write_jsonl(path: str | Path, examples: Iterable[Example]) -> Path:
    """Write examples atomically (a killed write leaves the old file intact)."""
    return atomic_write(Path(path), "".join(e.model_dump_json() + "\n" for e in examples))


def atomic_write(path: Path, content: str) -> Path:
    """Write to a temporary file beside `path`, then rename: the old file stays until the new one is whole."""
    check_writable(path)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(content)
        os.replace(tmp, path)
    except OSError as err:
        raise DistillError(f"{path}: cannot write it ({err.strerror})") from None
    return path


def check_writable(path: str | Path, folder: bool = False) -> Path:
    """Raise one line if `path` (a file, or a `folder`) cannot be written; create its parent folders."""
    path = Path(path)
    if folder and path.exists() and not path.is_dir():
        raise DistillError(f"{path}: is a file; give a folder")
    if not folder and path.is_dir():
        raise DistillError(f"{path}: is a folder; give a file name")
    parent = path if folder else path.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise DistillError(f"{parent}: cannot create this folder ({err.strerror})") from None
    if not os.access(parent, os.W_OK):
        raise DistillError(f"{parent}: this folder is not writable")
    return path


# --- splits and HF datasets ----------------------------------------------------------------
def split_examples(
    examples: list[Example], dev: float = 0.1, test: float = 0.1, seed: int = 0, gold_from: str | None = None,
    test_texts: Collection[str] | None = None,
) -> dict[str, list[Example]]:
    """Seeded train/dev/test split; examples with the same text always land in the same split.

    A fraction of 0 leaves that split empty on purpose; a split asked for gets at least one
    text, and one that cannot (too few texts) is an error, never an empty split by accident.
    `gold_from` (e.g. "corpus"): dev and test texts are drawn only from examples of that
    `source.origin` (their sizes are still the fractions of all texts); the rest is train.
    `test_texts`: the test split is exactly the examples with these texts (a blind test split,
    chosen before review: `blind_test_ids`), and `test` is not used; dev is drawn from the rest.
    """
    if not examples:
        raise DistillError("cannot split an empty set of examples")
    if dev < 0 or test < 0 or dev + test >= 1:
        raise DistillError(f"dev ({dev}) and test ({test}) fractions must be >= 0 and sum to less than 1")
    texts = sorted({e.text for e in examples})
    fixed = None if test_texts is None else set(test_texts)
    needed = 1 + (dev > 0) + (test > 0 or fixed is not None)
    if len(texts) < needed:
        raise DistillError(
            f"{len(texts)} distinct text(s) cannot fill {needed} splits (train{', dev' if dev else ''}{', test' if test else ''}): "
            "add examples, or set a fraction to 0 to leave that split empty"
        )
    random.Random(seed).shuffle(texts)
    if fixed is not None:
        chosen = [t for t in texts if t in fixed]
        if not chosen:
            raise DistillError("no blind test text is among the reviewed examples (all rejected, or not reviewed yet): nothing to test on")
        texts = chosen + [t for t in texts if t not in fixed]  # the blind texts first: they are the test split
    n_test, n_dev = len(chosen) if fixed is not None else round(len(texts) * test), round(len(texts) * dev)
    n_test, n_dev = max(n_test, 1 if test else 0), max(n_dev, 1 if dev else 0)  # every split asked for is non-empty
    while n_test + n_dev >= len(texts):  # and train keeps at least one text
        if (n_dev >= n_test or fixed is not None) and n_dev > 1:
            n_dev -= 1
        elif fixed is None:
            n_test -= 1
        else:
            raise DistillError(f"{len(chosen)} blind test texts of {len(texts)} leave no text for dev and train: generate more, or lower split.test")
    gold = texts
    if gold_from is not None:
        eligible = {e.text for e in examples if e.source.origin == gold_from}
        gold = [t for t in texts if t in eligible or (fixed is not None and t in fixed)]
        if len(gold) < n_test + n_dev:
            raise DistillError(
                f"dev and test need {n_test + n_dev} texts of origin {gold_from!r} (split.gold_from), and there are {len(gold)}: "
                "annotate more of your texts, lower the fractions, or take gold from any text"
            )
    split_of = {t: "test" for t in gold[:n_test]}
    split_of.update({t: "dev" for t in gold[n_test : n_test + n_dev]})
    out: dict[str, list[Example]] = {s: [] for s in SPLITS}
    for e in examples:
        out[split_of.get(e.text, "train")].append(e)
    return out


def blind_test_ids(examples: list[Example], test: float, seed: int = 0, gold_from: str | None = None) -> set[str]:
    """The ids of the examples a blind test split takes, chosen before review so that people label
    them without seeing the LLM's answer (`split.blind_test`); `split_examples(test_texts=...)`
    makes them the test split once they are reviewed."""
    return {e.id for e in split_examples(examples, dev=0.0, test=test, seed=seed, gold_from=gold_from)["test"]}


def _features():
    from datasets import Features, List, Value

    span = {"start": Value("int32"), "end": Value("int32"), "label": Value("string"), "confidence": Value("float32")}
    link = {"head": Value("int32"), "tail": Value("int32"), "label": Value("string"), "confidence": Value("float32")}
    return Features(
        {
            "id": Value("string"),
            "text": Value("string"),
            "entities": List(span),
            "relations": List(link),
            "source": Value("string"),  # JSON: nested, optional fields
            "review": Value("string"),
            "words": Value("string"),  # JSON: [[start, end], ...] of a pre-tokenized text, or ""
        }
    )


def _to_row(e: Example) -> dict:
    return {
        "id": e.id,
        "text": e.text,
        "entities": [x.model_dump() for x in e.entities],
        "relations": [x.model_dump() for x in e.relations],
        "source": e.source.model_dump_json(),
        "review": e.review.model_dump_json(),
        "words": json.dumps(e.words) if e.words is not None else "",
    }


def _from_row(row: dict) -> Example:
    return Example(
        id=row["id"],
        text=row["text"],
        entities=row["entities"],
        relations=row["relations"],
        source=json.loads(row["source"]),
        review=json.loads(row["review"]),
        words=json.loads(row["words"]) if row.get("words") else None,
    )


def to_dataset_dict(splits: dict[str, list[Example]]):
    """A `datasets.DatasetDict` with one row per example (source and review as JSON strings)."""
    from datasets import Dataset, DatasetDict

    features = _features()

    def columns(items: list[Example]) -> dict[str, list]:  # column-wise, so an empty split keeps its schema
        rows = [_to_row(e) for e in items]
        return {name: [row[name] for row in rows] for name in features}

    return DatasetDict({name: Dataset.from_dict(columns(items), features=features) for name, items in splits.items()})


def save_splits(splits: dict[str, list[Example]], out_dir: str | Path) -> Path:
    """Save splits as a DatasetDict on disk (`datasets.load_from_disk` reads it too)."""
    from datasets.utils.logging import disable_progress_bar

    disable_progress_bar()
    out_dir = Path(out_dir)
    check_writable(out_dir.parent, folder=True)
    if out_dir.exists() and not out_dir.is_dir():
        raise DistillError(f"{out_dir}: is a file; give a folder")
    tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}."))
    try:
        dd = to_dataset_dict(splits)
        empty = {name: 1 for name, ds in dd.items() if len(ds) == 0}  # else an empty split gets no file and does not load
        dd.save_to_disk(str(tmp), num_shards=empty or None)
        replace_dir(tmp, out_dir)
    except OSError as err:
        raise DistillError(f"{out_dir}: cannot save the splits ({err.strerror})") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def replace_dir(new: Path, target: Path) -> None:
    """Put folder `new` in the place of `target`; the old `target` is removed only once `new` is in."""
    old = target.with_name(f".{target.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        target.rename(old)
    new.rename(target)
    shutil.rmtree(old, ignore_errors=True)


def load_splits(path: str | Path) -> dict[str, list[Example]]:
    """Load splits saved by `save_splits` (any DatasetDict with the same columns)."""
    from datasets import load_from_disk

    path = Path(path)
    if not (path / "dataset_dict.json").exists():
        raise DistillError(f"{path}: not a saved DatasetDict (no dataset_dict.json)")
    dd = load_from_disk(str(path))
    return {name: [_from_row(row) for row in ds] for name, ds in dd.items()}


# --- CoNLL BIO -----------------------------------------------------------------------------
def bio_tokens(example: Example) -> list[tuple[str, str, int, int]]:
    """(token, BIO tag, start, end) for an example, on its words (`data.words.words_of`).

    Without own words the entity edges are always token edges (the text around an entity is
    tokenized on its own); with them (a pre-tokenized file) a word belongs to the entity it overlaps.
    """
    if example.words is not None:
        return _tags_on_words(example)
    out, cursor = [], 0
    for e in sorted(example.entities, key=lambda x: x.start):
        out += [(example.text[s:t], "O", s, t) for s, t in tokenize(example.text, cursor, e.start)]
        inside = tokenize(example.text, e.start, e.end)
        if not inside:
            raise DistillError(f"example {example.id}: entity {example.span(e)!r} has no word in it")
        out += [(example.text[s:t], ("B-" if i == 0 else "I-") + e.label, s, t) for i, (s, t) in enumerate(inside)]
        cursor = e.end
    out += [(example.text[s:t], "O", s, t) for s, t in tokenize(example.text, cursor)]
    return out


def _tags_on_words(example: Example) -> list[tuple[str, str, int, int]]:
    words = words_of(example)
    tags = ["O"] * len(words)
    for e in example.entities:
        inside = [i for i, (s, t) in enumerate(words) if s < e.end and t > e.start and tags[i] == "O"]
        if not inside:
            raise DistillError(f"example {example.id}: entity {example.span(e)!r} has no word in it")
        for k, i in enumerate(inside):
            tags[i] = ("B-" if k == 0 else "I-") + e.label
    return [(example.text[s:t], tag, s, t) for (s, t), tag in zip(words, tags)]


def write_conll(path: str | Path, examples: Iterable[Example], drop_relations: bool = False) -> Path:
    """Write token<TAB>tag lines, a blank line between examples, `# id`/`# text` comments first."""
    blocks = []
    for e in examples:
        if e.relations and not drop_relations:
            raise DistillError(
                f"example {e.id}: CoNLL cannot hold relations ({len(e.relations)} here); "
                "use JSONL or a DatasetDict, or drop them explicitly (--drop-relations)"
            )
        lines = [f"# id = {e.id}", f"# text = {e.text}"] + [f"{tok}\t{tag}" for tok, tag, _, _ in bio_tokens(e)]
        blocks.append("\n".join(lines) + "\n")
    return atomic_write(Path(path), "\n".join(blocks))


def read_conll(path: str | Path) -> list[Example]:
    """Read CoNLL BIO (token<TAB>tag or token tag; `-DOCSTART-` and `#` comments allowed).

    With a `# text = ...` comment the original text is restored exactly; without one the
    tokens are joined with single spaces. IOB1 `I-` tags that open an entity are accepted, and
    so are BIOES/BILOU tags (`S-`/`U-` one-token entity, `E-`/`L-` its last token).
    """
    path = Path(path)
    examples, block, meta, first_line = [], [], {}, 1
    for number, raw in enumerate(read_text(path).splitlines() + [""], 1):
        line = raw.rstrip("\n")
        if line.startswith("# ") and " = " in line and not block:
            key, _, value = line[2:].partition(" = ")
            meta[key.strip()] = value
            continue
        if not line.strip() or line.startswith("-DOCSTART-"):
            if block:
                examples.append(_conll_example(path, first_line, block, meta))
            block, meta = [], {}
            continue
        if not block:
            first_line = number
        parts = line.split("\t") if "\t" in line else line.split()
        if len(parts) < 2:
            raise DistillError(f"{path}:{number}: expected 'token<TAB>tag', got {line!r}")
        block.append((number, parts[0], parts[-1]))
    return examples


def _conll_example(path: Path, line: int, block: list[tuple[int, str, str]], meta: dict[str, str]) -> Example:
    text = meta.get("text")
    offsets, cursor = [], 0
    if text is not None:
        for number, token, _ in block:
            start = text.find(token, cursor)
            if start < 0:
                raise DistillError(f"{path}:{number}: token {token!r} is not in the '# text' line above it")
            offsets.append((start, start + len(token)))
            cursor = start + len(token)
    else:
        for _, token, _ in block:
            offsets.append((cursor, cursor + len(token)))
            cursor += len(token) + 1
        text = " ".join(token for _, token, _ in block)
    entities, current = [], None
    for (number, _, tag), (start, end) in zip(block, offsets):
        prefix, _, label = tag.partition("-")
        if tag == "O":
            current = None
            continue
        if prefix not in {"B", "I", "E", "L", "S", "U"} or not label:
            raise DistillError(f"{path}:{number}: tag {tag!r} is not O, B-LABEL or I-LABEL (or BIOES: E-, S-; BILOU: L-, U-)")
        if prefix in {"I", "E", "L"} and current is not None and current["label"] == label:
            current["end"] = end
        else:
            current = {"start": start, "end": end, "label": label}
            entities.append(current)
        if prefix in {"E", "L", "S", "U"}:  # the entity ends here
            current = None
    source = Source(origin=f"conll:{path.name}")
    return Example(id=meta.get("id", ""), text=text, entities=[Entity(**e) for e in entities], source=source, words=own_words(text, offsets))


# --- spaCy DocBin --------------------------------------------------------------------------
def to_docbin(examples: Iterable[Example], path: str | Path, lang: str = "en") -> Path:
    """Write a spaCy DocBin: `doc.ents` from the entities, relations in `doc.user_data`."""
    import spacy
    from spacy.tokens import DocBin

    nlp = spacy.blank(lang)
    docbin = DocBin(store_user_data=True)
    for e in examples:
        doc = doc_from_words(nlp.vocab, e.text, words_of(e))
        spans = []
        for ent in e.entities:
            span = doc.char_span(ent.start, ent.end, label=ent.label)
            if span is None:
                raise DistillError(
                    f"example {e.id}: entity {e.span(ent)!r} [{ent.start}, {ent.end}) does not fall on spaCy token boundaries"
                )
            spans.append(span)
        doc.ents = spans
        doc.user_data["id"] = e.id
        doc.user_data["relations"] = [
            (e.entities[r.head].start, e.entities[r.head].end, e.entities[r.tail].start, e.entities[r.tail].end, r.label)
            for r in e.relations
        ]
        docbin.add(doc)
    path = check_writable(path)
    try:
        docbin.to_disk(path)
    except OSError as err:
        raise DistillError(f"{path}: cannot write it ({err.strerror})") from None
    return path


def from_docbin(path: str | Path, lang: str = "en") -> list[Example]:
    """Read a DocBin written by `to_docbin` (or any DocBin with `doc.ents`)."""
    import spacy
    from spacy.tokens import DocBin

    docs = DocBin().from_disk(path).get_docs(spacy.blank(lang).vocab)
    out = []
    for doc in docs:
        entities = [Entity(start=s.start_char, end=s.end_char, label=s.label_) for s in doc.ents]
        index = {(x.start, x.end): i for i, x in enumerate(entities)}
        relations = [
            Relation(head=index[(hs, he)], tail=index[(ts, te)], label=label)
            for hs, he, ts, te, label in doc.user_data.get("relations", [])
        ]
        words = own_words(doc.text, doc_words(doc))
        out.append(Example(id=doc.user_data.get("id", ""), text=doc.text, entities=entities, relations=relations, words=words))
    return out


# --- any format by path ---------------------------------------------------------------------
def read_examples(path: str | Path) -> list[Example]:
    """Examples from a JSONL, CoNLL or DocBin file (by suffix), or all splits of a DatasetDict dir."""
    path = Path(path)
    if path.is_dir():
        return [e for items in load_splits(path).values() for e in items]
    if path.suffix == ".jsonl":
        return read_jsonl(path)
    if path.suffix in CONLL_SUFFIXES:
        return read_conll(path)
    if path.suffix == ".spacy":
        return from_docbin(path)
    raise DistillError(f"{path}: unknown format (use .jsonl, .conll/.bio/.iob/.tsv, .spacy or a DatasetDict folder)")


def write_examples(path: str | Path, examples: list[Example], drop_relations: bool = False) -> Path:
    """Write examples in the format the path's suffix names (a folder without suffix: DatasetDict)."""
    path = Path(path)
    if path.suffix == ".jsonl":
        return write_jsonl(path, examples)
    if path.suffix in CONLL_SUFFIXES:
        return write_conll(path, examples, drop_relations=drop_relations)
    if path.suffix == ".spacy":
        return to_docbin(examples, path)
    if not path.suffix:
        return save_splits({"train": examples}, path)
    raise DistillError(f"{path}: unknown format (use .jsonl, .conll/.bio/.iob/.tsv, .spacy or a folder)")


def word_cuts(examples: Iterable[Example]) -> tuple[int, str | None]:
    """(entities whose start or end falls inside a word, the first such example's id): the mark of
    offsets counted in bytes or UTF-16 units by another tool, which no model can learn."""
    count, first = 0, None
    for e in examples:
        text = e.text
        for ent in e.entities:
            cut_start = 0 < ent.start < len(text) and text[ent.start - 1].isalnum() and text[ent.start].isalnum()
            cut_end = 0 < ent.end < len(text) and text[ent.end - 1].isalnum() and text[ent.end].isalnum()
            if cut_start or cut_end:
                count += 1
                first = first or e.id
    return count, first


def word_cut_warning(examples: Iterable[Example], where: str | Path) -> str | None:
    """One line saying how many entities of `where` cut a word in half and which example first, or None."""
    count, first = word_cuts(examples)
    if not count:
        return None
    return (f"warning: {where}: {count} entit{'y' if count == 1 else 'ies'} cut a word in half (first in example {first}); "
            "were the offsets counted in bytes or UTF-16 units by another tool? Offsets here are characters (code points).")


def check_labels(examples: Iterable[Example], entity_labels: Iterable[str], relation_labels: Iterable[str] = ()) -> None:
    """Raise an error naming the first example that uses a label outside the given ones."""
    entity_labels, relation_labels = set(entity_labels), set(relation_labels)
    for e in examples:
        for ent in e.entities:
            if ent.label not in entity_labels:
                raise DistillError(f"example {e.id}: unknown entity label {ent.label!r} (known: {', '.join(sorted(entity_labels))})")
        for rel in e.relations:
            if rel.label not in relation_labels:
                raise DistillError(f"example {e.id}: unknown relation label {rel.label!r} (known: {', '.join(sorted(relation_labels)) or 'none'})")
