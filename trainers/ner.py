"""Token classification data: BIO tags on word pieces from char-offset entities, windows, decoding.

Words are the example's words (`data.words.words_of`: a pre-tokenized file's own tokens, else
`data.words.tokenize`). By default only the first word piece of each
word carries its tag (the others are ignored by the loss), as the strongest token classifiers
do: the model then never has to agree with itself inside a word. `subword_labels="all"` tags
every piece instead (B- where the entity starts, I- on the rest). Decoding reads the word-start
pieces, with a constrained Viterbi pass that never yields an invalid BIO sequence (an I-X only
after B-X or I-X), and snaps spans to whole words. Texts longer than the encoder's window are
split into overlapping windows of `max_length` pieces (`stride` shared); at prediction time the
logits of a piece seen in two windows are averaged. Nothing is truncated.

- `tag_names(labels) -> ["O", "B-X", "I-X", ...]`
- `ner_features(tokenizer, examples, tags, max_length, stride, subword_labels="first")`
- `decode_entities(words, offsets, tag_ids, tags) -> list[Entity]` (spans snapped to whole words)
- `viterbi_tags(log_probs, tags) -> list[int]` (the best valid BIO sequence)
- `decode_logits(words, offsets, logits, tags) -> list[Entity]` (Viterbi, then `decode_entities`)
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from distill_ner.data.example import Entity, Example
from distill_ner.data.words import words_of

IGNORE = -100  # label of positions that carry no target (special tokens, continuation pieces)
N_SPECIAL = 2  # [CLS] and [SEP] around every window


def tag_names(entity_labels: Sequence[str]) -> list[str]:
    """BIO tag set for the labels: O first, then B-/I- per label."""
    return ["O"] + [f"{p}-{label}" for label in entity_labels for p in ("B", "I")]


@dataclass
class Encoded:
    """A text as word pieces without special tokens: ids and char offsets."""

    ids: list[int]
    offsets: list[tuple[int, int]]


@dataclass
class NerFeature:
    """One window: input ids with special tokens, tag ids (-100 on specials), where it came from."""

    example: int
    first_token: int  # index in the example's Encoded pieces of the window's first piece
    input_ids: list[int]
    labels: list[int] = field(default_factory=list)


def encode(tokenizer, text: str) -> Encoded:
    """Word pieces of `text` (no special tokens) with char offsets."""
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, truncation=False, verbose=False)
    return Encoded(list(enc["input_ids"]), [tuple(o) for o in enc["offset_mapping"]])


def window_bounds(n_tokens: int, max_length: int, stride: int, n_special: int = 2) -> list[tuple[int, int]]:
    """[start, end) piece ranges covering `n_tokens`, each at most `max_length - n_special` long."""
    size = max(1, max_length - n_special)
    step = max(1, size - stride)
    if n_tokens <= size:
        return [(0, n_tokens)]
    bounds, start = [], 0
    while True:
        end = min(start + size, n_tokens)
        bounds.append((start, end))
        if end == n_tokens:
            return bounds
        start += step


def piece_tags(offsets: Sequence[tuple[int, int]], entities: Sequence[Entity], tag_index: dict[str, int]) -> list[int]:
    """Tag id per word piece: B- where an entity starts, I- inside it, O elsewhere."""
    tags = [tag_index["O"]] * len(offsets)
    for e in entities:
        first = True
        for i, (s, t) in enumerate(offsets):
            if t <= s or s < e.start or s >= e.end:
                continue
            tags[i] = tag_index[f"{'B' if first else 'I'}-{e.label}"]
            first = False
    return tags


def word_starts(words: Sequence[tuple[int, int]], offsets: Sequence[tuple[int, int]]) -> list[bool]:
    """Whether each piece is the first piece of a word (the one that carries the word's tag)."""
    starts = {s for s, _ in words}
    out, seen = [], set()
    for s, t in offsets:
        first = t > s and s in starts and s not in seen
        seen.add(s)
        out.append(first)
    return out


def with_specials(tokenizer, ids: list[int]) -> list[int]:
    """`[CLS] ids [SEP]` (the tokenizer's own start and end tokens)."""
    first = tokenizer.cls_token_id if tokenizer.cls_token_id is not None else tokenizer.bos_token_id
    last = tokenizer.sep_token_id if tokenizer.sep_token_id is not None else tokenizer.eos_token_id
    return [first, *ids, last]


def ner_features(
    tokenizer, examples: Sequence[Example], tags: Sequence[str], max_length: int, stride: int, subword_labels: str = "first"
) -> tuple[list[NerFeature], list[Encoded]]:
    """Windows with tag ids for each example (and each example's encoded pieces); with
    `subword_labels="first"` only word-start pieces carry a tag, the others are ignored."""
    tag_index = {t: i for i, t in enumerate(tags)}
    features, encoded = [], []
    for k, example in enumerate(examples):
        enc = encode(tokenizer, example.text)
        encoded.append(enc)
        piece_labels = piece_tags(enc.offsets, example.entities, tag_index)
        if subword_labels == "first":
            piece_labels = [tag if first else IGNORE for tag, first in zip(piece_labels, word_starts(words_of(example), enc.offsets))]
        for start, end in window_bounds(len(enc.ids), max_length, stride, N_SPECIAL):
            ids = with_specials(tokenizer, enc.ids[start:end])
            labels = [IGNORE, *piece_labels[start:end], IGNORE]
            features.append(NerFeature(k, start, ids, labels))
    return features, encoded


def content_positions(tokenizer, n_pieces: int) -> list[int]:
    """Positions of the content pieces inside `with_specials(...)` of `n_pieces` pieces."""
    return list(range(1, n_pieces + 1))


def merge_windows(features: Sequence[NerFeature], window_logits: Sequence[np.ndarray], encoded: Sequence[Encoded], tokenizer) -> list[np.ndarray]:
    """Per example, logits [n_pieces, C] (float32) with pieces seen by several windows averaged."""
    n_tags = window_logits[0].shape[-1] if window_logits else 0
    sums = [np.zeros((len(e.ids), n_tags), dtype=np.float32) for e in encoded]
    counts = [np.zeros((len(e.ids), 1), dtype=np.float32) for e in encoded]
    for f, logits in zip(features, window_logits, strict=True):
        n = len(f.input_ids) - N_SPECIAL
        rows = np.asarray(logits, dtype=np.float32)[content_positions(tokenizer, n)]
        sums[f.example][f.first_token : f.first_token + n] += rows
        counts[f.example][f.first_token : f.first_token + n] += 1
    return [s / np.maximum(c, 1) for s, c in zip(sums, counts)]


def decode_entities(
    words: Sequence[tuple[int, int]], offsets: Sequence[tuple[int, int]], tag_ids: Sequence[int], tags: Sequence[str], scores: Sequence[float] | None = None,
    starts: Sequence[bool] | None = None,
) -> list[Entity]:
    """BIO tags on pieces -> entities, read on word-start pieces, snapped outwards to whole words,
    without overlaps. The other pieces of a word belong to the word's entity, whatever their tag.

    An I- tag that does not continue an open entity of its label starts a new one (lenient).
    `scores` (one per piece) become the entity's `confidence` (their mean); `starts` is
    `word_starts(words, offsets)` when the caller has it already.
    """
    spans: list[list] = []  # [start, end, label, scores]
    open_span: list | None = None
    for i, ((s, t), first) in enumerate(zip(offsets, starts if starts is not None else word_starts(words, offsets))):
        if not first:
            if open_span is not None and t > open_span[1]:
                open_span[1] = t  # the rest of the word
            continue
        tag = tags[tag_ids[i]]
        score = scores[i] if scores is not None else 1.0
        if tag == "O":
            open_span = None
            continue
        prefix, label = tag.split("-", 1)
        if prefix == "I" and open_span is not None and open_span[2] == label:
            open_span[1] = t
            open_span[3].append(score)
        else:
            open_span = [s, t, label, [score]]
            spans.append(open_span)
    return _snap(words, spans)


@functools.lru_cache(maxsize=32)
def _transitions(tags: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """(penalty [previous, next], start penalty): -inf where a BIO sequence would be invalid."""
    size = len(tags)
    penalty, start = np.zeros((size, size)), np.zeros(size)
    for j, tag in enumerate(tags):
        if tag.startswith("I-"):
            start[j] = -np.inf
            penalty[:, j] = -np.inf
            for i, previous in enumerate(tags):
                if previous in (f"B-{tag[2:]}", tag):
                    penalty[i, j] = 0.0
    return penalty, start


def viterbi_tags(log_probs: np.ndarray, tags: Sequence[str]) -> list[int]:
    """The most probable tag sequence [n] under `log_probs` [n, T] in which every I-X follows a
    B-X or an I-X (so no entity starts in its middle)."""
    scores = np.asarray(log_probs, dtype=np.float64)
    if len(scores) == 0:
        return []
    penalty, start = _transitions(tuple(tags))
    score = scores[0] + start
    back = np.zeros(scores.shape, dtype=np.int64)
    for k in range(1, len(scores)):
        total = score[:, None] + penalty  # [previous, next]
        back[k] = total.argmax(0)
        score = total.max(0) + scores[k]
    path = [int(score.argmax())]
    for k in range(len(scores) - 1, 0, -1):
        path.append(int(back[k, path[-1]]))
    return path[::-1]


def decode_logits(words: Sequence[tuple[int, int]], offsets: Sequence[tuple[int, int]], logits: np.ndarray, tags: Sequence[str]) -> list[Entity]:
    """Entities from a text's piece logits [n_pieces, T]: constrained Viterbi over the word-start
    pieces, then `decode_entities` (confidence: the chosen tags' probabilities)."""
    x = np.asarray(logits, dtype=np.float32)
    e = np.exp(x - x.max(-1, keepdims=True))
    probs = e / e.sum(-1, keepdims=True)
    ids, scores = probs.argmax(-1).tolist(), probs.max(-1).tolist()
    starts = word_starts(words, offsets)
    rows = [i for i, first in enumerate(starts) if first]
    if rows:
        path = viterbi_tags(np.log(np.clip(probs[rows], 1e-12, None)), tags)
        for i, tag in zip(rows, path):
            ids[i], scores[i] = tag, float(probs[i, tag])
    return decode_entities(words, offsets, ids, tags, scores, starts)


def _snap(words: Sequence[tuple[int, int]], spans: list[list]) -> list[Entity]:
    out: list[Entity] = []
    for s, t, label, scores in spans:
        inside = [(a, b) for a, b in words if a < t and b > s]
        if inside:
            s, t = min(s, inside[0][0]), max(t, inside[-1][1])
        if out and s < out[-1].end:
            continue  # overlaps the previous entity after snapping: keep the first
        out.append(Entity(start=s, end=t, label=label, confidence=round(sum(scores) / len(scores), 4)))
    return out
