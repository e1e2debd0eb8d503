"""BIO alignment on word pieces, windows for long texts, decoding, and relation candidate pairs."""

import pytest
import torch

from distill_ner.data.example import Entity, Example
from distill_ner.data.words import tokenize
from distill_ner.trainers.encoders import load_encoder, resolve_encoder, student_layer_ids, truncate_layers
from distill_ner.trainers.ner import decode_entities, merge_windows, ner_features, tag_names, window_bounds
from distill_ner.trainers.relations import NO_RELATION, candidate_pairs, relation_pairs
from distill_ner.data.errors import DistillError

TEXT = "The Amur leopard lives in the temperate forests of the Russian Far East and hunts roe deer."


def example() -> Example:
    spans = [("Amur leopard", "SPECIES"), ("temperate forests of the Russian Far East", "HABITAT"), ("roe deer", "FEEDING")]
    ents = [Entity(start=TEXT.index(m), end=TEXT.index(m) + len(m), label=l) for m, l in spans]
    return Example(text=TEXT, entities=ents, relations=[{"head": 0, "tail": 1, "label": "live_in"}])


def test_window_bounds_cover_everything_with_overlap():
    bounds = window_bounds(25, max_length=12, stride=4)
    assert bounds[0] == (0, 10) and bounds[-1][1] == 25
    assert all(b[0] < a[1] for a, b in zip(bounds, bounds[1:]))  # consecutive windows overlap
    assert window_bounds(5, 12, 4) == [(0, 5)]


def test_bio_tags_round_trip_through_windows(tiny_bert):
    _, tok = load_encoder(tiny_bert)
    tags = tag_names(["SPECIES", "HABITAT", "FEEDING"])
    ex = example()
    feats, enc = ner_features(tok, [ex], tags, max_length=16, stride=4)
    assert len(feats) > 1, "a long text is split into windows, not truncated"
    assert all(len(f.input_ids) <= 16 for f in feats)
    one_hot = [torch.nn.functional.one_hot(torch.tensor([max(0, l) for l in f.labels]), len(tags)).float() for f in feats]
    merged = merge_windows(feats, one_hot, enc, tok)[0]
    assert merged.shape[0] == len(enc[0].ids)
    decoded = decode_entities(tokenize(ex.text), enc[0].offsets, merged.argmax(-1).tolist(), tags)
    assert [(e.start, e.end, e.label) for e in decoded] == [(e.start, e.end, e.label) for e in ex.entities]


def test_decoding_snaps_to_words_and_is_lenient():
    text = "big leopards run"
    offsets = [(0, 3), (4, 7), (7, 12), (13, 16)]
    tags = tag_names(["SPECIES"])
    # "leo" tagged I- without a B-, "##pards" left O: still the whole word "leopards"
    got = decode_entities(tokenize(text), offsets, [0, 2, 0, 0], tags)
    assert [(e.start, e.end, e.label) for e in got] == [(4, 12, "SPECIES")]


def test_relation_candidates_follow_allowed_label_pairs():
    ex = example()
    assert candidate_pairs(ex.entities, [("SPECIES", "HABITAT"), ("SPECIES", "FEEDING")]) == [(0, 1), (0, 2)]
    assert candidate_pairs(ex.entities, [("HABITAT", "SPECIES")]) == [(1, 0)]


LABELS = ["SPECIES", "HABITAT", "FEEDING"]


def test_relation_pairs_point_at_the_entity_pieces_and_label_none(tiny_bert):
    _, tok = load_encoder(tiny_bert)
    ex = example()
    relations = [NO_RELATION, "live_in", "feed_on"]
    allowed = [("SPECIES", "HABITAT"), ("SPECIES", "FEEDING")]
    feats, enc = ner_features(tok, [ex], tag_names(LABELS), max_length=128, stride=32)
    pairs = relation_pairs(feats, enc, [ex], LABELS, allowed, relations)
    assert [(p.pair, relations[p.label]) for p in pairs.pairs] == [((0, 1), "live_in"), ((0, 2), NO_RELATION)]
    assert pairs.skipped == 0
    ids = feats[0].input_ids
    for p in pairs.pairs:
        for (start, end), k in ((p.head, p.pair[0]), (p.tail, p.pair[1])):
            words = tok.decode(ids[start:end]).replace(" ", "")
            assert words == ex.span(k).replace(" ", "").lower()
        assert p.labels == (0, LABELS.index(ex.entities[p.pair[1]].label))


def test_relation_pairs_use_a_window_holding_both_entities_or_are_skipped(tiny_bert):
    _, tok = load_encoder(tiny_bert)
    ex = example()
    relations = [NO_RELATION, "live_in", "feed_on"]
    allowed = [("SPECIES", "HABITAT"), ("SPECIES", "FEEDING")]
    feats, enc = ner_features(tok, [ex], tag_names(LABELS), max_length=16, stride=4)
    assert len(feats) > 1
    pairs = relation_pairs(feats, enc, [ex], LABELS, allowed, relations)
    # "Amur leopard" ... "roe deer" spans more than one 16-piece window: skipped, not truncated
    assert [p.pair for p in pairs.pairs] == [(0, 1)] and pairs.skipped == 1
    p = pairs.pairs[0]
    assert p.head[1] <= len(feats[p.feature].input_ids) - 1 and p.tail[1] <= len(feats[p.feature].input_ids) - 1


def test_student_layers_and_encoder_errors(tiny_bert, tmp_path):
    assert student_layer_ids(6, 3) == [0, 2, 4] and student_layer_ids(6, 2) == [0, 3]
    model, _ = load_encoder(tiny_bert)
    truncate_layers(model, 1)
    assert model.config.num_hidden_layers == 1
    out = model(input_ids=torch.tensor([[2, 10, 3]])).last_hidden_state
    assert out.shape == (1, 3, 32)
    with pytest.raises(DistillError, match="directory not found"):
        resolve_encoder(str(tmp_path / "nope"))
    with pytest.raises(DistillError, match="between 1 and"):
        student_layer_ids(2, 3)


def test_only_the_first_piece_of_a_word_carries_its_tag(tiny_bert):
    _, tok = load_encoder(tiny_bert)
    tags = tag_names(LABELS)
    text = "The axolotl lives in Lake Xochimilco."  # words the tiny vocab splits into pieces
    ex = Example(text=text, entities=[Entity(start=4, end=11, label="SPECIES"), Entity(start=21, end=36, label="HABITAT")])
    (first,), (enc,) = ner_features(tok, [ex], tags, max_length=128, stride=32)
    (every,), _ = ner_features(tok, [ex], tags, max_length=128, stride=32, subword_labels="all")
    starts = [s for s, _ in __import__("distill_ner.data.words", fromlist=["tokenize"]).tokenize(ex.text)]
    tagged = [enc.offsets[i][0] for i, label in enumerate(first.labels[1:-1]) if label != -100]
    assert tagged == starts  # exactly one tagged piece per word, its first
    assert len(enc.ids) > len(starts) and all(label != -100 for label in every.labels[1:-1])


def test_viterbi_never_starts_an_entity_in_its_middle():
    from distill_ner.trainers.ner import viterbi_tags

    tags = tag_names(["SPECIES", "HABITAT"])  # O B-S I-S B-H I-H
    # greedy: O, I-S, I-H (two invalid starts); the best valid path keeps the words together as one species
    log_probs = torch.tensor([[0.9, 0.05, 0.01, 0.02, 0.02], [0.1, 0.3, 0.5, 0.05, 0.05], [0.1, 0.05, 0.4, 0.0, 0.45]]).log()
    path = viterbi_tags(log_probs, tags)
    assert [tags[i] for i in log_probs.argmax(-1)] == ["O", "I-SPECIES", "I-HABITAT"]
    assert [tags[i] for i in path] == ["O", "B-SPECIES", "I-SPECIES"]


def test_overlap_f1_forgives_boundaries_strict_f1_does_not():
    from distill_ner.trainers.evaluate import ner_scores

    gold = example()  # "Amur leopard", "temperate forests of the Russian Far East", "roe deer"
    shifted = [Entity(start=e.start, end=e.end, label=e.label) for e in gold.entities]
    shifted[1] = Entity(start=TEXT.index("forests"), end=shifted[1].end, label="HABITAT")  # without "temperate"
    shifted[2] = Entity(start=shifted[2].start, end=shifted[2].end, label="SPECIES")  # wrong label: no credit either way
    scores = ner_scores([gold], [shifted])
    assert scores["f1"] == round(1 / 3, 4) and scores["overlap_f1"] == round(2 / 3, 4)


def test_the_f1_interval_brackets_the_score_and_narrows_with_more_texts():
    from distill_ner.trainers.evaluate import ner_scores

    gold = example()
    right = [Entity(start=e.start, end=e.end, label=e.label) for e in gold.entities]
    wrong = right[:1]  # two of three entities missed
    texts, predicted = [gold] * 20, [right] * 10 + [wrong] * 10
    few, many = ner_scores(texts, predicted), ner_scores(texts * 9, predicted * 9)
    assert few["f1_low"] < few["f1"] < few["f1_high"] and many["f1"] == few["f1"]
    assert many["f1_high"] - many["f1_low"] < 0.5 * (few["f1_high"] - few["f1_low"])  # 9x the texts: a third of the width
    assert ner_scores(texts, [right] * 20)["f1_low"] == 1.0  # no sampling moves a perfect score


def test_a_paired_difference_sees_a_small_lead_that_two_intervals_would_hide():
    from distill_ner.trainers.evaluate import f1_difference, ner_scores

    gold = example()
    right = [Entity(start=e.start, end=e.end, label=e.label) for e in gold.entities]
    texts = [gold] * 30
    varied = [right if i % 2 else right[:1] for i in range(30)]  # half the texts mostly missed
    better = [right if i % 2 or i < 10 else right[:1] for i in range(30)]  # the same, five texts fixed
    diff, low, high = f1_difference(texts, better, varied)
    assert diff == round(ner_scores(texts, better)["f1"] - ner_scores(texts, varied)["f1"], 4) and 0 < low <= diff <= high
    a, b = ner_scores(texts, better), ner_scores(texts, varied)
    assert a["f1_low"] < b["f1_high"]  # each on its own: the intervals overlap
    assert f1_difference(texts, varied, varied) == (0.0, 0.0, 0.0)
