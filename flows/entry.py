"""The `distill` console script: the pipeline's commands where its extra is installed, else one line
saying how to get them (`pip install distill-ner` alone is the runtime of an exported student)."""

from __future__ import annotations

import sys


def main() -> None:
    """Run `flows.cli.main`, or exit 1 naming the missing extra."""
    try:
        from distill_ner.flows.cli import main as run
    except ModuleNotFoundError as err:
        sys.exit(f"error: the distill commands need the pipeline extra: pip install 'distill-ner[pipeline]' (no module {err.name!r})")
    run()
