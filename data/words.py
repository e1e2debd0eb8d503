"""Words: the one tokenization of the project, unless the data bring their own.

The models tag the first word piece of each word, entity edges snap to words, and the span
scores count them. A text's words are `Example.words` when it came pre-tokenized (a CoNLL file's
tokens, a DocBin's), so a model trained and scored on such a file keeps to its tokens
("California," stays one word); otherwise they are `tokenize(text)`: hyphenated and apostrophe
words stay whole ("Przewalski's", "long-tailed"), every other punctuation mark is a word of its
own. The exported spaCy pipeline tokenizes raw text the same way (`words_tokenizer`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from distill_ner.data.example import Example

_TOKEN = re.compile(r"\w+(?:[-'’]\w+)*|[^\w\s]", re.UNICODE)


def tokenize(text: str, start: int = 0, end: int | None = None) -> list[tuple[int, int]]:
    """Word and punctuation tokens of `text[start:end]` as char offsets."""
    end = len(text) if end is None else end
    return [(m.start() + start, m.end() + start) for m in _TOKEN.finditer(text[start:end])]


def words_of(example: Example) -> list[tuple[int, int]]:
    """The example's words as char offsets: its own tokens when it has them, else `tokenize(text)`."""
    return [(s, t) for s, t in example.words] if example.words is not None else tokenize(example.text)


def own_words(text: str, offsets: Sequence[tuple[int, int]]) -> list[tuple[int, int]] | None:
    """`Example.words` for a pre-tokenized text: None when the tokens are `tokenize(text)` anyway."""
    offsets = [(s, t) for s, t in offsets]
    return None if offsets == tokenize(text) else offsets


def read_on(text: str, tokens: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """The words a model reads on a text tokenized by someone else (a spaCy Doc's tokens): those
    tokens, a token glued to the one before where `tokenize(text)` starts no word. A file's
    whitespace-split tokens stay as they are ("California,"); another tokenizer's finer cuts
    ("long", "-", "tailed") are undone, so the model reads the words it was trained on."""
    starts = {s for s, _ in tokenize(text)}
    words: list[tuple[int, int]] = []
    for s, t in tokens:
        if words and s not in starts:
            words[-1] = (words[-1][0], t)
        else:
            words.append((s, t))
    return words


def words_tokenizer(vocab: Any) -> Any:
    """A spaCy `Tokenizer` that cuts text exactly as `tokenize` does (prefix, suffix and infix
    rules, no exceptions); spaCy saves and loads its rules with the pipeline."""
    from spacy.tokenizer import Tokenizer

    mark = r"[^\w\s]"
    return Tokenizer(vocab, rules={}, prefix_search=re.compile("^" + mark).search, suffix_search=re.compile(mark + "$").search,
                     infix_finditer=re.compile(r"[^\w\s\-'’]|(?<!\w)[-'’]|[-'’](?!\w)").finditer)


def doc_from_words(vocab: Any, text: str, words: Sequence[tuple[int, int]]) -> Any:
    """A spaCy Doc of `text` whose tokens are `words` (the whitespace between them as spaCy keeps it)."""
    from spacy.tokens import Doc
    from spacy.util import get_words_and_spaces

    tokens, spaces = get_words_and_spaces([text[s:t] for s, t in words], text)
    return Doc(vocab, words=tokens, spaces=spaces)


def doc_words(doc: Any) -> list[tuple[int, int]]:
    """A spaCy Doc's tokens as char offsets, whitespace tokens left out."""
    return [(t.idx, t.idx + len(t)) for t in doc if not t.is_space]
