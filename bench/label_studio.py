"""Seconds to import N tasks with predictions into Label Studio and to export them again.

    .venv/bin/python bench/label_studio.py [--n 10000] [--batch-size 1000]

Starts its own Label Studio server (temporary data directory, free port) unless
`LABEL_STUDIO_URL` and `LABEL_STUDIO_API_KEY` are set. Target: import of 10,000 tasks in at most 60 s.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from distill_ner.annotators import ls_server  # noqa: E402
from distill_ner.annotators.label_studio import client, ensure_project, export_tasks, push  # noqa: E402
from distill_ner.data.example import Entity, Example, Relation, Source  # noqa: E402
from distill_ner.data.spec import load_spec  # noqa: E402


def examples(n: int) -> list[Example]:
    """N distinct species sentences with three entities and two relations each."""
    out = []
    for i in range(n):
        species, habitat, food = f"Snow leopard {i}", f"the high valleys {i}", f"blue sheep {i}"
        text = f"The {species} lives in {habitat} and hunts {food}."
        spans = [(text.index(s), text.index(s) + len(s), label) for s, label in ((species, "SPECIES"), (habitat, "HABITAT"), (food, "FEEDING"))]
        out.append(
            Example(
                text=text,
                entities=[Entity(start=a, end=b, label=lab, confidence=0.8) for a, b, lab in spans],
                relations=[Relation(head=0, tail=1, label="live_in"), Relation(head=0, tail=2, label="feed_on")],
                source=Source(model="bench-llm", confidence=(i % 100) / 100, origin="bench"),
            )
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--batch-size", type=int, default=1000)
    args = parser.parse_args()
    spec = load_spec("species")
    data = examples(args.n)
    with tempfile.TemporaryDirectory() as tmp:
        server = None
        if os.environ.get("LABEL_STUDIO_URL") and os.environ.get("LABEL_STUDIO_API_KEY"):
            conn = ls_server.connection()
        else:
            t = time.perf_counter()
            server = ls_server.start(tmp, port=ls_server.free_port(), timeout=300)
            print(f"started Label Studio in {time.perf_counter() - t:.1f} s")
            conn = server.connection
        try:
            ls = client(conn)
            project = ensure_project(ls, spec, f"bench {time.strftime('%Y%m%d-%H%M%S')}")
            t = time.perf_counter()
            result = push(ls, project, data, spec, batch_size=args.batch_size)
            import_s = time.perf_counter() - t
            t = time.perf_counter()
            again = push(ls, project, data, spec, batch_size=args.batch_size)
            repush_s = time.perf_counter() - t
            t = time.perf_counter()
            exported = export_tasks(ls, project)
            export_s = time.perf_counter() - t
        finally:
            if server:
                ls_server.stop(tmp)
    numbers = {
        "tasks": args.n, "created": result.created, "import_s": round(import_s, 1), "repush_skipped": again.skipped,
        "repush_s": round(repush_s, 1), "exported": len(exported), "export_s": round(export_s, 1), "target_import_s": 60,
    }
    print(json.dumps(numbers))
    print(f"import {args.n} tasks with predictions: {import_s:.1f} s (target <= 60 s: {'ok' if import_s <= 60 else 'MISSED'}); "
          f"push again (all skipped): {repush_s:.1f} s; export: {export_s:.1f} s")


if __name__ == "__main__":
    main()
