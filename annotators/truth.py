"""The mock LLM's truth file: the true annotation of every example it wrote, and the errors it
injected. One JSON object a line: an `Example` plus `"errors"` (and, from the mock's harder world,
`"notes"` on the text errors and the `"shapes"` of the text).

The example is the gold annotation under the mock's one span convention (`annotators.mock_world`).
`errors` names what was wrong with what the mock answered: text errors (`"factually_wrong"`,
`"unusable"`: a careful reviewer rejects the example) and annotation errors (e.g.
`"leading_preposition"`, `"merged_list"`, `"wrong_label"`: a careful reviewer corrects them).

Written by the mock LLM (`annotators.mock_llm`), read by the simulated annotator
(`annotators.simulate`) and the bench, so that they can correct the injected errors.

Public API:
    TruthRecord(example, errors=[], notes=[], shapes=[])
    TEXT_ERRORS                                   the errors that make a reviewer reject the text
    write_truth_record(handle, record)            one line, flushed
    load_truth_records(path) -> dict[str, TruthRecord]   keyed by text (the last record of a text wins)
    load_truth(path) -> dict[str, Example]               the true examples only, keyed by text
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TextIO

from pydantic import BaseModel, Field

from data.errors import DistillError
from data.example import Example

TEXT_ERRORS = ("factually_wrong", "unusable")


class TruthRecord(BaseModel):
    """The true annotation of one mock example and the errors injected into what was answered."""

    example: Example
    errors: list[str] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)
    shapes: list[str] = Field(default_factory=list)

    @property
    def rejected(self) -> bool:
        """The text itself is wrong or unusable: a careful reviewer rejects it."""
        return any(e in TEXT_ERRORS for e in self.errors)


def write_truth_record(handle: TextIO, record: TruthRecord) -> None:
    """Append one record to an open truth file (and flush it, so a reader sees it at once)."""
    line = record.example.model_dump(mode="json", exclude_none=True)
    extra = {k: v for k, v in (("notes", record.notes), ("shapes", record.shapes)) if v}
    handle.write(json.dumps({**line, "errors": record.errors, **extra}, ensure_ascii=False) + "\n")
    handle.flush()


def load_truth_records(path: str | Path) -> dict[str, TruthRecord]:
    """Truth records of a mock truth file, keyed by text (the last record of a text wins)."""
    path = Path(path)
    if not path.exists():
        raise DistillError(f"{path}: mock truth file not found (start the mock with --truth-file {path})")
    records: dict[str, TruthRecord] = {}
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                raw = json.loads(line)
                errors = raw.pop("errors", [])
                notes, shapes = raw.pop("notes", []), raw.pop("shapes", [])
                example = Example.model_validate(raw)
            except (ValueError, TypeError) as err:
                raise DistillError(f"{path}:{number}: not a truth record ({str(err).splitlines()[0]})") from None
            records[example.text] = TruthRecord(example=example, errors=errors, notes=notes, shapes=shapes)
    return records


def load_truth(path: str | Path) -> dict[str, Example]:
    """The true `Example` behind each text the mock wrote, keyed by text."""
    return {text: record.example for text, record in load_truth_records(path).items()}
