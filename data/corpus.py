"""A user's own texts in: documents read from a file, and windows of sentences that fit a prompt.

`read_documents` reads `.txt` (one text a line, or blank-line-separated paragraphs), `.jsonl` (a
text field), `.csv` (a text column), CoNLL and DocBin (their raw text). `windows` splits each
document into windows of whole sentences of at most `max_chars` characters; each window keeps its
document id and its character offset in the document, so nothing is truncated and an entity found
in a window maps back to `offset + start` in the document. A sentence longer than a window is cut
at the last space that fits (counted); a run of characters with no space that is longer than a
window cannot be cut and is an error.

Bad input is one line (`DistillError`) naming the file and, where there is one, the line: an empty
input, a missing field or column, a binary file, text that is not UTF-8, a CoNLL file with no
text. A UTF-8 byte-order mark (Windows editors write one) is read, not refused.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from distill_ner.data.errors import DistillError
from distill_ner.data.formats import CONLL_SUFFIXES, read_text

TEXT_SUFFIXES = {".txt", ".text", ".md"}
INPUT_FORMATS = ".txt (one text a line, or --paragraphs), .jsonl (--field), .csv (--column), .conll/.bio/.iob/.tsv or .spacy"


class Document(BaseModel):
    """One text of the user's input, with its id (a given id, else `line N` / `row N` / `sentence N`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    text: str
    file: str


class Window(BaseModel):
    """A window of whole sentences of a document: its text and where it starts in the document."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    document: str
    offset: int
    text: str
    file: str


@dataclass
class WindowStats:
    """What windowing did: documents, windows, sentences cut at a space because they were too long."""

    documents: int = 0
    windows: int = 0
    split_sentences: int = 0
    longest_document: int = 0
    per_document: Counter = field(default_factory=Counter)


# --- reading ---------------------------------------------------------------------------------
def read_documents(path: str | Path, field: str = "text", column: str = "text", paragraphs: bool = False) -> list[Document]:
    """The texts of a `.txt`, `.jsonl`, `.csv`, CoNLL or DocBin file (by suffix), empty ones skipped.
    Raises `DistillError` for an input with no text at all."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".spacy":
        docs = _docbin_documents(path)
    elif suffix in CONLL_SUFFIXES:
        docs = _conll_documents(path)
    elif suffix == ".jsonl":
        docs = _jsonl_documents(path, field)
    elif suffix == ".csv":
        docs = _csv_documents(path, column)
    elif suffix in TEXT_SUFFIXES or not suffix:
        docs = _text_documents(path, paragraphs)
    else:
        raise DistillError(f"{path}: unknown input format {suffix!r} (use {INPUT_FORMATS})")
    if not docs:
        raise DistillError(f"{path}: holds no text to annotate")
    return docs


def _text_documents(path: Path, paragraphs: bool) -> list[Document]:
    text = read_text(path)
    name = str(path)
    if not paragraphs:
        return [Document(id=f"line {n}", text=line.strip(), file=name) for n, line in enumerate(text.split("\n"), 1) if line.strip()]
    docs, line = [], 1
    for block in re.split(r"(\n[ \t]*\n\s*)", text):
        if block.strip() and not re.fullmatch(r"\s*", block):
            lead = len(block) - len(block.lstrip())
            docs.append(Document(id=f"line {line + block[:lead].count(chr(10))}", text=block.strip(), file=name))
        line += block.count("\n")
    return docs


def _jsonl_documents(path: Path, field: str) -> list[Document]:
    docs = []
    for n, line in enumerate(read_text(path).split("\n"), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise DistillError(f"{path}:{n}: not valid JSON ({err.msg})") from None
        if not isinstance(row, dict) or field not in row:
            keys = ", ".join(list(row)[:8]) if isinstance(row, dict) else type(row).__name__
            raise DistillError(f"{path}:{n}: has no field {field!r} (it has: {keys}); choose the text field with --field")
        if not isinstance(row[field], str):
            raise DistillError(f"{path}:{n}: field {field!r} is not a string")
        if row[field].strip():
            given = row.get("id")
            docs.append(Document(id=str(given) if isinstance(given, (str, int)) else f"line {n}", text=row[field].strip(), file=str(path)))
    return docs


def _csv_documents(path: Path, column: str) -> list[Document]:
    reader = csv.DictReader(io.StringIO(read_text(path), newline=""))
    if not reader.fieldnames or column not in reader.fieldnames:
        raise DistillError(f"{path}: has no column {column!r} (it has: {', '.join(reader.fieldnames or []) or 'none'}); choose it with --column")
    docs = []
    try:
        for n, row in enumerate(reader, 2):
            value = (row.get(column) or "").strip()
            if value:
                given = row.get("id")
                docs.append(Document(id=given if given else f"row {n}", text=value, file=str(path)))
    except csv.Error as err:
        raise DistillError(f"{path}:{reader.line_num}: not valid CSV ({err})") from None
    return docs


def _conll_documents(path: Path) -> list[Document]:
    from distill_ner.data.formats import read_conll

    examples = read_conll(path)
    return [Document(id=e.id if e.id else f"sentence {n}", text=e.text, file=str(path)) for n, e in enumerate(examples, 1) if e.text.strip()]


def _docbin_documents(path: Path) -> list[Document]:
    from distill_ner.data.formats import from_docbin

    if not path.exists():
        raise DistillError(f"{path}: file not found")
    try:
        examples = from_docbin(path)
    except (ValueError, KeyError, OSError) as err:
        raise DistillError(f"{path}: not a spaCy DocBin ({str(err).splitlines()[0][:120]})") from None
    return [Document(id=e.id if e.id else f"doc {n}", text=e.text, file=str(path)) for n, e in enumerate(examples, 1) if e.text.strip()]


# --- windows ---------------------------------------------------------------------------------
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+(?=[\"'(\[]?[A-Z0-9])|\n[ \t]*\n\s*")


def sentences(text: str) -> list[tuple[int, int]]:
    """Sentence spans of `text` (char offsets, surrounding whitespace left out): a break after
    . ! or ? followed by whitespace and a capital letter or digit, and at blank lines."""
    spans, start = [], 0
    for m in _SENTENCE_END.finditer(text):
        spans.append((start, m.start() + len(m.group(0).rstrip()) if m.group(0).strip() else m.start()))
        start = m.end()
    spans.append((start, len(text)))
    out = []
    for s, e in spans:
        while s < e and text[s].isspace():
            s += 1
        while e > s and text[e - 1].isspace():
            e -= 1
        if e > s:
            out.append((s, e))
    return out


def _pieces(doc: Document, start: int, end: int, max_chars: int, stats: WindowStats) -> list[tuple[int, int]]:
    """A sentence as pieces of at most `max_chars`, cut at the last space that fits."""
    text, out = doc.text, []
    while end - start > max_chars:
        cut = text.rfind(" ", start + 1, start + max_chars + 1)
        if cut <= start:
            cut = max((text.rfind(ws, start + 1, start + max_chars + 1) for ws in "\t\n"), default=-1)
        if cut <= start:
            raise DistillError(
                f"{doc.file}: document {doc.id!r}: {min(end - start, 10**6)} characters without a space from offset {start} "
                f"cannot fit a window of {max_chars} (--window-chars)"
            )
        out.append((start, cut))
        stats.split_sentences += 1
        start = cut + 1
        while start < end and text[start].isspace():
            start += 1
    out.append((start, end))
    return out


def windows(documents: list[Document], max_chars: int = 1000, stats: WindowStats | None = None) -> list[Window]:
    """Each document as windows of consecutive whole sentences, each at most `max_chars` long
    (the whitespace between them kept as in the document)."""
    if max_chars < 20:
        raise DistillError(f"--window-chars must be at least 20 (got {max_chars})")
    stats = stats if stats is not None else WindowStats()
    out: list[Window] = []
    for doc in documents:
        stats.documents += 1
        stats.longest_document = max(stats.longest_document, len(doc.text))
        pieces = [p for s, e in sentences(doc.text) for p in _pieces(doc, s, e, max_chars, stats)]
        spans: list[tuple[int, int]] = []
        for s, e in pieces:
            if spans and e - spans[-1][0] <= max_chars:
                spans[-1] = (spans[-1][0], e)
            else:
                spans.append((s, e))
        out += [Window(document=doc.id, offset=s, text=doc.text[s:e], file=doc.file) for s, e in spans]
        stats.per_document[doc.id] += len(spans)
    stats.windows = len(out)
    return out
