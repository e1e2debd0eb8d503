"""The reference every trainer change must beat: a plain token-classification fine-tune of the
same encoder, as a practitioner writes it in sixty lines (labels on the first word piece, batch
8, one learning rate with linear decay, 15 epochs, sequences up to 256 pieces, no early stopping).

    from bench.plain_finetune import plain_finetune
    predicted = plain_finetune(train, test)          # entities per test example (char offsets)
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import torch
from transformers import AutoModelForTokenClassification, AutoTokenizer, get_linear_schedule_with_warmup

from distill_ner.data.example import Entity, Example
from distill_ner.data.words import words_of
from distill_ner.trainers.encoders import resolve_encoder


def _words(example: Example, labels: list[str]) -> tuple[list[str], list[int], list[tuple[int, int]]]:
    """Words (the example's own: a CoNLL file's tokens), BIO tag ids (index into `labels`) and char offsets."""
    spans = words_of(example)
    tags = ["O"] * len(spans)
    for e in example.entities:
        inside = [i for i, (s, t) in enumerate(spans) if s < e.end and t > e.start]
        for k, i in enumerate(inside):
            tags[i] = ("B-" if k == 0 else "I-") + e.label
    return [example.text[s:t] for s, t in spans], [labels.index(t) for t in tags], spans


def _encode(tokenizer, words: list[str], tags: list[int] | None, max_length: int) -> tuple[dict, list[int | None]]:
    enc = tokenizer(words, is_split_into_words=True, truncation=True, max_length=max_length, return_tensors="pt")
    word_ids, previous, targets = enc.word_ids(), None, []
    for w in word_ids:
        targets.append(-100 if w is None or w == previous or tags is None else tags[w])
        previous = w
    enc["labels"] = torch.tensor([targets])
    return enc, word_ids


def plain_finetune(train: Sequence[Example], test: Sequence[Example], encoder: str | None = None, epochs: int = 15,
                   batch_size: int = 8, lr: float = 1e-4, max_length: int = 256, seed: int = 0) -> list[list[Entity]]:
    """Fine-tune on `train`, return the predicted entities of each `test` example."""
    torch.manual_seed(seed)
    entity_types = sorted({e.label for x in train for e in x.entities})
    labels = ["O"] + [f"{p}-{t}" for t in entity_types for p in ("B", "I")]
    path = resolve_encoder(encoder)
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForTokenClassification.from_pretrained(path, num_labels=len(labels))
    data = [_encode(tokenizer, *_words(x, labels)[:2], max_length)[0] for x in train]
    steps = epochs * -(-len(data) // batch_size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    schedule = get_linear_schedule_with_warmup(optimizer, 0, steps)
    order, rng = list(range(len(data))), random.Random(seed)
    model.train()
    for _ in range(epochs):
        rng.shuffle(order)
        for start in range(0, len(order), batch_size):
            batch = [data[i] for i in order[start : start + batch_size]]
            inputs = tokenizer.pad([{k: v[0] for k, v in b.items() if k != "labels"} for b in batch], return_tensors="pt")
            width = inputs["input_ids"].shape[1]
            inputs["labels"] = torch.stack([torch.nn.functional.pad(b["labels"][0], (0, width - b["labels"].shape[1]), value=-100) for b in batch])
            model(**inputs).loss.backward()
            optimizer.step(), schedule.step(), optimizer.zero_grad()
    model.eval()
    predicted = []
    with torch.inference_mode():
        for x in test:
            words, _, spans = _words(x, labels)
            enc, word_ids = _encode(tokenizer, words, None, max_length)
            ids = model(**{k: v for k, v in enc.items() if k != "labels"}).logits[0].argmax(-1).tolist()
            tags, seen = ["O"] * len(words), set()
            for pos, w in enumerate(word_ids):
                if w is not None and w not in seen:
                    seen.add(w)
                    tags[w] = labels[ids[pos]]
            predicted.append(_entities(tags, spans))
    return predicted


def _entities(tags: list[str], spans: list[tuple[int, int]]) -> list[Entity]:
    """Word BIO tags -> entities; an I- that continues nothing starts an entity (lenient)."""
    out: list[Entity] = []
    open_label = None
    for tag, (s, t) in zip(tags, spans):
        if tag.startswith("I-") and open_label == tag[2:]:
            out[-1] = Entity(start=out[-1].start, end=t, label=open_label)
        elif tag != "O":
            out.append(Entity(start=s, end=t, label=tag[2:]))
        open_label = None if tag == "O" else tag[2:]
    return out
