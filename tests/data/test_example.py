"""The example record: a review's diff is typed, and the dicts older files hold still read."""

import json

import pytest
from pydantic import ValidationError

from distill_ner.data.example import DiffEntity, DiffRelation, Example, Review, ReviewDiff


def test_old_review_diffs_read_into_the_typed_diff():
    text = "Kakapo eat rimu fruit in New Zealand."
    corrected = {
        "entities_added": [{"start": 25, "end": 36, "text": "New Zealand", "label": "HABITAT"}],
        "entities_removed": [{"start": 25, "end": 36, "text": "New Zealand", "label": "SPECIES"}],
        "relations_added": [{"head": "Kakapo", "tail": "New Zealand", "label": "live_in"}],
        "relations_removed": [],
    }
    line = json.dumps({"text": text, "review": {"status": "corrected", "diff": corrected}})
    example = Example.model_validate_json(line)
    diff = example.review.diff
    assert diff.entities_added == [DiffEntity(start=25, end=36, text="New Zealand", label="HABITAT")]
    assert diff.relations_added == [DiffRelation(head="Kakapo", tail="New Zealand", label="live_in")]
    assert diff.changed and diff.reason is None
    assert Example.model_validate_json(example.model_dump_json()) == example  # and writes back the same

    rejected = Review.model_validate({"status": "rejected", "diff": {"reason": "Reject: unusable"}})
    assert rejected.diff == ReviewDiff(reason="Reject: unusable") and not rejected.diff.changed
    assert Review.model_validate({"status": "accepted", "diff": None}).diff is None


def test_a_diff_of_another_shape_is_refused():
    with pytest.raises(ValidationError):
        Review.model_validate({"status": "corrected", "diff": {"added": [[0, 5, "SPECIES"]]}})
