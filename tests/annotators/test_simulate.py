"""The simulated annotator: accuracy, several users, no redone work (real Label Studio server)."""

import json

import pytest

from annotators.label_studio import client, ensure_project, pull, push
from annotators.simulate import load_truth, simulate_review
from annotators.truth import TruthRecord
from data.errors import DistillError
from tests.fixtures.examples import make_example

pytestmark = pytest.mark.slow


def _examples(n):
    truth = [make_example(f"Frog {i} eats beetle {i} in pond {i}.", [(f"Frog {i}", "SPECIES"), (f"beetle {i}", "FEEDING"), (f"pond {i}", "HABITAT")], [(0, 1, "feed_on"), (0, 2, "live_in")], model="m") for i in range(n)]
    llm = [t.model_copy(update={"entities": t.entities[:2], "relations": t.relations[:1]}) for t in truth]  # every one misses its pond
    return truth, llm


def test_accuracy_controls_how_many_errors_are_fixed(label_studio, species_spec):
    ls = client(label_studio.connection)
    truth, llm = _examples(30)
    records = {t.text: TruthRecord(example=t) for t in truth}
    perfect = ensure_project(ls, species_spec, "sim perfect")
    push(ls, perfect, llm, species_spec)
    done = simulate_review(ls, perfect, records, accuracy=1.0)
    assert done.decisions == {"corrected": 30} and done.per_annotator == {"annotator-1": 30}
    assert all(e.review.status == "corrected" and e.entities == t.entities for e, t in zip(sorted(pull(ls, perfect, species_spec, llm).verified, key=lambda e: e.text), sorted(truth, key=lambda e: e.text)))
    assert simulate_review(ls, perfect, records, accuracy=1.0).annotations == 0  # nothing left to do

    sloppy = ensure_project(ls, species_spec, "sim sloppy")
    push(ls, sloppy, llm, species_spec)
    done = simulate_review(ls, sloppy, records, accuracy=0.5, annotators=["x", "y", "z"], seed=3, limit=20)
    assert done.tasks == 20 and sum(done.per_annotator.values()) == 20 and set(done.per_annotator) == {"x", "y", "z"}
    assert 4 <= done.decisions["corrected"] <= 16 and done.decisions["corrected"] + done.decisions["accepted"] == 20
    result = pull(ls, sloppy, species_spec, llm)
    assert len(result.pending) == 10 and {e.review.annotator for e in result.verified} == {"x@distill.local", "y@distill.local", "z@distill.local"}


def test_truth_file_and_bad_settings(tmp_path, species_examples):
    line = {**json.loads(species_examples[0].model_dump_json()), "errors": ["unusable"]}
    (tmp_path / "truth.jsonl").write_text(json.dumps(line) + "\n")
    records = load_truth(tmp_path / "truth.jsonl")
    assert records[species_examples[0].text].errors == ["unusable"]
    with pytest.raises(DistillError, match="accuracy"):
        simulate_review(None, 1, records, accuracy=1.5)
    with pytest.raises(DistillError, match="per task"):
        simulate_review(None, 1, records, annotators=["a"], per_task=2)
