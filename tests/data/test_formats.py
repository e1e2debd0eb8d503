"""Formats round trip, and say clearly what they cannot hold."""

import pytest

from distill_ner.data.errors import DistillError
from distill_ner.data.example import DiffEntity, Entity, Example, ReviewDiff
from distill_ner.data.formats import (
    from_docbin,
    load_splits,
    read_conll,
    read_examples,
    read_jsonl,
    save_splits,
    blind_test_ids,
    split_examples,
    to_docbin,
    write_conll,
    write_jsonl,
)
from tests.fixtures.examples import make_example


def _core(e: Example) -> tuple:
    return (e.text, [(x.start, x.end, x.label) for x in e.entities], [(r.head, r.tail, r.label) for r in e.relations])


def test_jsonl_round_trip_is_exact(tmp_path, species_examples):
    species_examples[0].review.status = "corrected"
    species_examples[0].review.diff = ReviewDiff(entities_added=[DiffEntity(start=0, end=5, text="The A", label="SPECIES")])
    write_jsonl(tmp_path / "a.jsonl", species_examples)
    assert read_jsonl(tmp_path / "a.jsonl") == species_examples


def test_jsonl_bad_line_names_file_and_line(tmp_path, species_examples):
    path = tmp_path / "bad.jsonl"
    write_jsonl(path, species_examples[:1])
    with path.open("a") as f:
        f.write('{"text": "short", "entities": [{"start": 0, "end": 99, "label": "X"}]}\n')
    with pytest.raises(DistillError, match=r"bad.jsonl:2: .*past the end"):
        read_jsonl(path)


def test_datasetdict_round_trip_keeps_everything(tmp_path, species_examples):
    species_examples[1].source.model = "gpt-x"
    species_examples[1].source.confidence = 0.5
    splits = {"train": species_examples[:2], "dev": species_examples[2:3], "test": species_examples[3:]}
    save_splits(splits, tmp_path / "ds")
    loaded = load_splits(tmp_path / "ds")
    assert loaded == splits


def test_split_is_seeded_disjoint_and_keeps_same_text_together(species_examples):
    many = [make_example(f"Sentence number {i} about the Amur leopard.", [("Amur leopard", "SPECIES")]) for i in range(50)]
    many.append(many[0].model_copy(update={"id": "copy"}))
    a, b = split_examples(many, seed=3), split_examples(many, seed=3)
    assert [e.id for e in a["test"]] == [e.id for e in b["test"]]
    assert split_examples(many, seed=4)["test"] != a["test"]
    texts = {name: {e.text for e in items} for name, items in a.items()}
    assert not texts["train"] & texts["test"] and not texts["train"] & texts["dev"] and not texts["dev"] & texts["test"]
    assert sum(len(v) for v in a.values()) == len(many)
    assert len(a["test"]) == 5 and len(a["dev"]) == 5
    with pytest.raises(DistillError):
        split_examples([])


def test_a_blind_test_split_is_exactly_the_texts_chosen_before_review():
    many = [make_example(f"Sentence number {i} about the Amur leopard.", [("Amur leopard", "SPECIES")]) for i in range(60)]
    blind = blind_test_ids(many, test=0.2, seed=1)
    assert len(blind) == 12 and blind == blind_test_ids(many, test=0.2, seed=1) and blind != blind_test_ids(many, test=0.2, seed=2)
    reviewed = [e for e in many if e.id not in sorted(blind)[:2]]  # two blind texts were rejected: they leave the pool
    texts = {e.text for e in many if e.id in blind}
    splits = split_examples(reviewed, dev=0.1, test=0.3, seed=5, test_texts=texts)  # `test` is not used: the blind texts are the test split
    assert {e.id for e in splits["test"]} == blind - set(sorted(blind)[:2])
    assert len(splits["dev"]) == round(len(reviewed) * 0.1) and not {e.id for e in splits["dev"] + splits["train"]} & blind
    with pytest.raises(DistillError, match="no blind test text"):
        split_examples(reviewed, test_texts={"a text nobody reviewed"})


def test_conll_round_trip_keeps_text_and_entities(tmp_path, species_examples):
    for e in species_examples:
        e.relations.clear()
    write_conll(tmp_path / "a.conll", species_examples)
    back = read_conll(tmp_path / "a.conll")
    assert [_core(e) for e in back] == [_core(e) for e in species_examples]
    assert [e.id for e in back] == [e.id for e in species_examples]


def test_conll_refuses_relations_unless_dropped(tmp_path, species_examples):
    with pytest.raises(DistillError, match="CoNLL cannot hold relations"):
        write_conll(tmp_path / "a.conll", species_examples)
    write_conll(tmp_path / "a.conll", species_examples, drop_relations=True)
    assert all(not e.relations for e in read_conll(tmp_path / "a.conll"))


def test_conll_without_text_comment_and_entity_inside_word(tmp_path):
    (tmp_path / "plain.conll").write_text("-DOCSTART- O\n\nThe O\nAmur B-SPECIES\nleopard I-SPECIES\nhunts O\ndeer B-FEEDING\n.\tO\n\nx I-HABITAT\n")
    back = read_examples(tmp_path / "plain.conll")
    assert back[0].text == "The Amur leopard hunts deer ."
    assert [(back[0].span(e), e.label) for e in back[0].entities] == [("Amur leopard", "SPECIES"), ("deer", "FEEDING")]
    assert back[1].entities[0].label == "HABITAT"  # IOB1: I- may open an entity
    # an entity that ends inside a word still gets its own tokens
    e = Example(text="leopards", entities=[Entity(start=0, end=7, label="SPECIES")])
    write_conll(tmp_path / "w.conll", [e])
    assert _core(read_conll(tmp_path / "w.conll")[0]) == _core(e)


def test_conll_bioes_and_bilou_tags(tmp_path):
    rows = [("Snow", "B"), ("leopards", "E"), ("eat", None), ("ibex", "S"), ("and", None), ("marmots", "S")]
    for scheme, (begin, end, single) in {"bioes": ("B", "E", "S"), "bilou": ("B", "L", "U")}.items():
        names = {"B": begin, "E": end, "S": single}
        lines = [f"{tok} {'O' if tag is None else names[tag] + ('-SPECIES' if i < 2 else '-FEEDING')}" for i, (tok, tag) in enumerate(rows)]
        (tmp_path / f"{scheme}.conll").write_text("\n".join(lines) + "\n")
        back = read_conll(tmp_path / f"{scheme}.conll")[0]
        assert [(back.span(e), e.label) for e in back.entities] == [("Snow leopards", "SPECIES"), ("ibex", "FEEDING"), ("marmots", "FEEDING")]


def test_conll_bad_tag_names_line(tmp_path):
    (tmp_path / "bad.conll").write_text("The O\nleopard X-SPECIES\n")
    with pytest.raises(DistillError, match=r"bad.conll:2: tag 'X-SPECIES'"):
        read_conll(tmp_path / "bad.conll")


def test_docbin_round_trip_with_relations(tmp_path, species_examples):
    to_docbin(species_examples, tmp_path / "a.spacy")
    back = from_docbin(tmp_path / "a.spacy")
    assert [_core(e) for e in back] == [_core(e) for e in species_examples]


def test_docbin_refuses_span_inside_a_token(tmp_path):
    e = Example(text="leopards hunt", entities=[Entity(start=0, end=7, label="SPECIES")])
    with pytest.raises(DistillError, match="token boundaries"):
        to_docbin([e], tmp_path / "a.spacy")


def test_unicode_offsets_survive_every_format(tmp_path):
    e = make_example("Der Schneeleopard – «Panthera uncia» – lebt im Hochgebirge 🏔.", [("Schneeleopard", "SPECIES"), ("Panthera uncia", "SPECIES"), ("Hochgebirge", "HABITAT")])
    write_jsonl(tmp_path / "u.jsonl", [e])
    write_conll(tmp_path / "u.conll", [e])
    to_docbin([e], tmp_path / "u.spacy")
    for path in ("u.jsonl", "u.conll", "u.spacy"):
        assert _core(read_examples(tmp_path / path)[0]) == _core(e), path


def test_a_split_asked_for_is_never_empty_and_zero_means_none(species_examples, tmp_path):
    few = species_examples[:2]
    with pytest.raises(DistillError, match="2 distinct text.* cannot fill 3 splits"):
        split_examples(few, dev=0.1, test=0.1)
    splits = split_examples(few, dev=0.0, test=0.1)  # no dev split, on purpose
    assert (len(splits["train"]), len(splits["dev"]), len(splits["test"])) == (1, 0, 1)
    loaded = load_splits(save_splits(splits, tmp_path / "splits"))  # an empty split saves and loads
    assert {name: [e.id for e in items] for name, items in loaded.items()} == {name: [e.id for e in items] for name, items in splits.items()}
    many = split_examples(species_examples, dev=0.45, test=0.45)  # rounding would leave train empty
    assert all(splits for splits in many.values()) and sum(map(len, many.values())) == len(species_examples)


def test_saving_splits_replaces_the_folder_only_when_the_new_one_is_whole(tmp_path, species_examples, monkeypatch):
    out = save_splits(split_examples(species_examples, dev=0.25, test=0.25), tmp_path / "verified")
    before = {p.name: p.read_bytes() for p in out.rglob("*") if p.is_file()}

    def broken(self, *args, **kwargs):
        raise OSError(28, "No space left on device")

    import datasets

    monkeypatch.setattr(datasets.DatasetDict, "save_to_disk", broken)
    with pytest.raises(DistillError, match="cannot save the splits"):
        save_splits({"train": species_examples}, out)
    assert {p.name: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["verified"]  # no temporary folder left behind
