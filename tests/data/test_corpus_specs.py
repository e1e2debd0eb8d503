"""The task specs of the four real corpora (BC5CDR, NCBI disease, LINNAEUS, BioNLP 2013 CG): each
loads, renders its prompts, and its labels are exactly the labels of the corpus' tags.

The CoNLL snippets are sentences of each corpus' training file, written here (CI has no
../shared): `token/TAG` items, a bare token is `O`, turned into `token<TAB>tag` lines.
"""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError
from seqeval.metrics import classification_report
from seqeval.scheme import IOB2

from distill_ner.data.formats import bio_tokens, check_labels, read_conll, write_conll
from distill_ner.data.spec import EntityType, load_spec

SNIPPETS = {
    "bc5cdr": [
        "Selegiline/B-Chemical - induced postural/B-Disease hypotension/I-Disease in Parkinson/B-Disease '/I-Disease s/I-Disease disease/I-Disease : "
        "a longitudinal study on the effects of drug withdrawal .",
        "Recently , we found that therapy with selegiline/B-Chemical and L/B-Chemical -/I-Chemical dopa/I-Chemical was associated with selective "
        "systolic/B-Disease orthostatic/I-Disease hypotension/I-Disease which was abolished by withdrawal of selegiline/B-Chemical .",
    ],
    "ncbi-disease": [
        "OBJECTIVE Previous reports have suggested an increased risk of cancer/B-Disease among patients with cartilage/B-Disease -/I-Disease "
        "hair/I-Disease hypoplasia/I-Disease ( CHH/B-Disease ) .",
    ],
    "linnaeus": [
        "In Guiyu , the BLLs of children/B-Species were higher than the mean level in China , and there were no significant different between "
        "boys/B-Species and girls/B-Species .",
    ],
    "bionlp13cg": [
        "Betulin/B-Simple_chemical induces mitochondrial/B-Cellular_component cytochrome/B-Gene_or_gene_product c/I-Gene_or_gene_product release "
        "associated apoptosis in human/B-Organism cancer/B-Cell cells/I-Cell .",
        "Pancreatic/B-Organ somatostatin/B-Gene_or_gene_product - secreting gangliocytic/B-Cancer paraganglioma/I-Cancer with "
        "lymph/B-Multi-tissue_structure node/I-Multi-tissue_structure metastases .",
        "The role of organ/B-Organ vascularization and lipoplex/B-Simple_chemical - serum/B-Organism_substance initial contact in "
        "intravenous/B-Immaterial_anatomical_entity murine/B-Organism lipofection .",
        "Neuroblastoma/B-Cancer is derived from SNS/B-Developing_anatomical_structure precursors/I-Developing_anatomical_structure .",
        "Adipose/B-Tissue tissue/I-Tissue layered on CAM/B-Multi-tissue_structure stimulated angiogenesis .",
        "A novel putative tyrosine/B-Amino_acid kinase receptor with oncogenic potential .",
        "Involvement of PTEN/B-Gene_or_gene_product promoter methylation in cerebral/B-Pathological_formation cavernous/I-Pathological_formation "
        "malformations/I-Pathological_formation .",
        "IL/B-Gene_or_gene_product -/I-Gene_or_gene_product 17/I-Gene_or_gene_product plays an important role in gut/B-Organism_subdivision homeostasis .",
        "This growth factor system exerts multiple physiologic effects on the vasculature/B-Anatomical_system through both endocrine and "
        "autocrine / paracrine mechanisms .",
    ],
}


def conll(sentences: list[str]) -> str:
    """`token/TAG` items (a bare token: O) -> CoNLL text, `token<TAB>tag`, a blank line between sentences."""
    blocks = []
    for sentence in sentences:
        lines = []
        for item in sentence.split():
            token, _, tag = item.rpartition("/") if "/" in item[1:] else (item, "", "O")
            lines.append(f"{token}\t{tag}")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n"


@pytest.mark.parametrize("name", sorted(SNIPPETS))
def test_corpus_spec_labels_are_the_corpus_tags(name, tmp_path):
    spec = load_spec(name)
    assert spec.name == name and not spec.relations
    path = tmp_path / f"{name}.conll"
    path.write_text(conll(SNIPPETS[name]), encoding="utf-8")
    examples = read_conll(path)
    assert len(examples) == len(SNIPPETS[name])
    assert set(spec.entity_labels) == {e.label for x in examples for e in x.entities}
    check_labels(examples, spec.entity_labels)
    # the labels survive a CoNLL round trip and seqeval's strict IOB2 reading, hyphen and all
    again = read_conll(write_conll(tmp_path / "again.conll", examples))
    assert [[(e.start, e.end, e.label) for e in x.entities] for x in again] == [[(e.start, e.end, e.label) for e in x.entities] for x in examples]
    tags = [[tag for _, tag, _, _ in bio_tokens(x)] for x in examples]
    report = classification_report(tags, tags, mode="strict", scheme=IOB2, output_dict=True, zero_division=0)
    assert {k for k in report if not k.endswith(" avg")} == set(spec.entity_labels)


@pytest.mark.parametrize("name", [*sorted(SNIPPETS), "species"])
def test_spec_prompts_render_and_annotate_ends_with_the_text(name):
    spec = load_spec(name)
    system = spec.render("system")
    assert all(f"- {label}: " in system for label in spec.entity_labels)
    generate = spec.render("generate", topic=spec.topic_list[0], n=3)
    assert spec.topic_list[0] in generate
    shown = [json.loads(line) for line in generate.splitlines() if line.startswith('{"text": ')]  # the few-shot answers, as JSON
    assert [s["text"] for s in shown] == [shot.text for shot in spec.few_shot]
    assert [[(e["text"], e["label"]) for e in s["entities"]] for s in shown] == [[(e.text, e.label) for e in shot.entities] for shot in spec.few_shot]
    text = "First line of a given text: with a colon,\nand a second line."
    annotate = spec.render("annotate", text=text)
    # the mock LLM reads the text as everything after "Text: ": it must be the template's last line
    assert annotate.endswith(f"\nText: {text}") and annotate.count("Text: ") == 1
    assert spec.try_text and spec.few_shot and len(spec.topic_list) >= 5
    if not spec.relations:
        assert all(s["relations"] == [] for s in shown)  # the few-shot answers show the (empty) relation list


def test_bionlp13cg_labels_are_spelled_as_the_corpus_tags():
    assert load_spec("bionlp13cg").entity_labels == [
        "Amino_acid", "Anatomical_system", "Cancer", "Cell", "Cellular_component", "Developing_anatomical_structure", "Gene_or_gene_product",
        "Immaterial_anatomical_entity", "Multi-tissue_structure", "Organ", "Organism", "Organism_subdivision", "Organism_substance",
        "Pathological_formation", "Simple_chemical", "Tissue",
    ]


@pytest.mark.parametrize("label", ["Multi-tissue_structure", "B-cell", "A-b-c", "SPECIES", "x_1"])
def test_entity_labels_may_hold_hyphens(label):
    assert EntityType(label=label).label == label


@pytest.mark.parametrize("label", ["-Cell", "Cell-", "Multi--tissue", "1Cell", "two words", "Cell/Type"])
def test_entity_labels_may_not_start_or_end_with_a_hyphen(label):
    """A BIO tag is split on its first hyphen, and seqeval strips hyphens from a label's ends."""
    with pytest.raises(ValidationError):
        EntityType(label=label)


def test_label_studio_config_of_a_corpus_spec():
    from distill_ner.annotators.label_studio import check_config, label_config

    spec = load_spec("bionlp13cg")
    config = label_config(spec)
    assert 'value="Multi-tissue_structure"' in config and "<Relations" not in config
    check_config(spec, config, "here")

