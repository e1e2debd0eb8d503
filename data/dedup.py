"""Exact and near-duplicate removal over example texts (used by generation and by pruning)."""

from __future__ import annotations

import re
import unicodedata

import numpy as np
from rapidfuzz import fuzz, process

from distill_ner.data.example import Example

_NON_WORD = re.compile(r"[\W_]+", re.UNICODE)
_BLOCK = 512  # rows of the similarity matrix computed at a time (bounded memory)


def normalize_text(text: str) -> str:
    """Case-, accent-form-, punctuation- and whitespace-insensitive key for exact duplicates."""
    return _NON_WORD.sub(" ", unicodedata.normalize("NFKC", text).casefold()).strip()


def dedup(examples: list[Example], threshold: float = 0.9) -> tuple[list[Example], list[tuple[Example, str]]]:
    """Keep the first of each group of duplicates, in input order.

    An example is an exact duplicate if its normalized text equals a kept one, and a near
    duplicate if its normalized text is at least `threshold` similar (rapidfuzz ratio, 0-1) to a
    kept one; `threshold >= 1` turns near-duplicate detection off. Returns `(kept, removed)`
    where each removed example comes with a reason such as `exact_duplicate of <id>`.
    """
    keys = [normalize_text(e.text) for e in examples]
    first_by_key: dict[str, int] = {}
    unique: list[int] = []
    removed: dict[int, str] = {}
    for i, key in enumerate(keys):
        if key in first_by_key:
            removed[i] = f"exact_duplicate of {examples[first_by_key[key]].id}"
        else:
            first_by_key[key] = i
            unique.append(i)
    if threshold < 1 and len(unique) > 1:
        removed.update(_near_duplicates(examples, keys, unique, threshold))
    kept = [examples[i] for i in range(len(examples)) if i not in removed]
    return kept, [(examples[i], reason) for i, reason in sorted(removed.items())]


def _near_duplicates(examples: list[Example], keys: list[str], unique: list[int], threshold: float) -> dict[int, str]:
    """Greedy in order: an example is removed if it is similar to an earlier example that was kept."""
    texts = [keys[i] for i in unique]
    cutoff = int(round(threshold * 100))
    kept_mask = np.ones(len(unique), dtype=bool)
    removed: dict[int, str] = {}
    for lo in range(0, len(texts), _BLOCK):
        scores = process.cdist(texts[lo : lo + _BLOCK], texts[: lo + _BLOCK], scorer=fuzz.ratio, score_cutoff=cutoff, dtype=np.uint8, workers=-1)
        for row in range(scores.shape[0]):
            i = lo + row
            similar = np.nonzero((scores[row, :i] >= cutoff) & kept_mask[:i])[0]
            if similar.size:
                kept_mask[i] = False
                j = int(similar[0])
                removed[unique[i]] = f"near_duplicate of {examples[unique[j]].id} ({scores[row, j]}% similar)"
    return removed


def drop_texts_of(examples: list[Example], reference: list[Example]) -> tuple[list[Example], int]:
    """`examples` without those whose normalized text occurs in `reference` (e.g. the test split), and how many went."""
    taken = {normalize_text(e.text) for e in reference}
    kept = [e for e in examples if normalize_text(e.text) not in taken]
    return kept, len(examples) - len(kept)
