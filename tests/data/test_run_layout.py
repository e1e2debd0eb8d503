"""A run folder's names are spelled in one place, `data/run_layout.py`."""

import re
from pathlib import Path

from distill_ner.data.run_layout import FILES, RunLayout

ROOT = Path(__file__).resolve().parents[2]


def test_every_entry_has_a_path_and_a_writer():
    layout = RunLayout("runs/x")
    for name, entry in FILES.items():
        assert getattr(layout, name) == Path("runs/x") / entry.path and entry.written_by
    assert layout.part("llm").generated == Path("runs/x/llm/generated.jsonl")


def test_no_package_module_spells_a_run_file_name():
    """`"generated.jsonl"` and the other names of the layout appear in run_layout.py and nowhere else
    in the package (a stage that spells a path itself drifts from the others)."""
    names = [entry.path.split("/")[-1] for entry in FILES.values() if "." in entry.path and entry.path != "config.json"]  # an encoder has a config.json too
    spelled = re.compile(r"""["'](%s)["']""" % "|".join(re.escape(n) for n in names))
    found = [
        f"{path.relative_to(ROOT)}:{number}"
        for package in ("data", "annotators", "trainers", "flows")
        for path in sorted((ROOT / package).rglob("*.py"))
        if path.name != "run_layout.py"
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if spelled.search(line)
    ]
    assert found == []
