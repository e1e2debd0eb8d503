"""Words: the one tokenization of the project.

CoNLL files are written and read in these words, the models tag the first word piece of each
word, entity edges snap to them, and the span scores count them. Hyphenated and apostrophe words
stay whole ("Przewalski's", "long-tailed"); every other punctuation mark is a word of its own.
"""

from __future__ import annotations

import re

_TOKEN = re.compile(r"\w+(?:[-'’]\w+)*|[^\w\s]", re.UNICODE)


def tokenize(text: str, start: int = 0, end: int | None = None) -> list[tuple[int, int]]:
    """Word and punctuation tokens of `text[start:end]` as char offsets."""
    end = len(text) if end is None else end
    return [(m.start() + start, m.end() + start) for m in _TOKEN.finditer(text[start:end])]
