"""Task specs load from YAML and every mistake gets a readable one-line error."""

import pytest
import yaml

from distill_ner.data.spec import SPECS_DIR, SpecError, load_spec


def test_default_spec(species_spec):
    assert species_spec.entity_labels == ["SPECIES", "HABITAT", "FEEDING", "BREEDING"]
    assert species_spec.relation_labels == ["live_in", "feed_on", "breed_by"]
    assert len(species_spec.topic_list) >= 150
    assert {"amphibians", "arthropods", "birds", "fishes", "mammals", "reptiles", "plants"} <= set(species_spec.topics)
    assert all("(" in t for t in species_spec.topic_list)  # common and scientific names
    assert species_spec.allows("live_in", "SPECIES", "HABITAT") and not species_spec.allows("live_in", "HABITAT", "SPECIES")
    prompt = species_spec.render("generate", topic="Snow leopard (Panthera uncia)", n=3)
    assert "Snow leopard (Panthera uncia)" in prompt and "Write 3" in prompt


def _broken(tmp_path, edit) -> str:
    raw = yaml.safe_load((SPECS_DIR / "species.yaml").read_text())
    edit(raw)
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(SpecError) as err:
        load_spec(path)
    message = str(err.value)
    assert "\n" not in message and "broken.yaml" in message
    return message


@pytest.mark.parametrize(
    "edit, expected",
    [
        (lambda r: r["relations"][0].update(tail=["PLACE"]), "unknown entity label 'PLACE'"),
        (lambda r: r.update(topics={"mammals": []}), "seed topic list is empty"),
        (lambda r: r["entities"].append({"label": "SPECIES"}), "duplicate entity label 'SPECIES'"),
        (lambda r: r.update(colour="red"), "colour: Extra inputs are not permitted"),
        (lambda r: r["prompts"].update(generate="{{ topic"), "prompts.generate: template syntax error"),
        (lambda r: r["prompts"].update(generate="{{ topik }}"), "'topik' is undefined"),
        (lambda r: r["few_shot"][0]["entities"].append({"text": "zebra", "label": "SPECIES"}), "'zebra' does not occur"),
        (lambda r: r["few_shot"][0]["entities"].append({"text": "roe", "label": "PREY"}), "unknown entity label 'PREY'"),
        (lambda r: r["entities"][0].update(label="bad label"), "entities.0.label"),
        (lambda r: r.pop("prompts"), "prompts: Field required"),
    ],
)
def test_spec_errors(tmp_path, edit, expected):
    assert expected in _broken(tmp_path, edit)


def test_not_yaml_and_missing_file(tmp_path):
    (tmp_path / "x.yaml").write_text("name: [unclosed\n")
    with pytest.raises(SpecError, match="x.yaml: line 2 is not valid YAML"):
        load_spec(tmp_path / "x.yaml")
    with pytest.raises(SpecError, match="not found"):
        load_spec(tmp_path / "missing.yaml")
