"""How correct was the LLM, and how much do the humans agree.

Public API:
    correctness_report(llm_examples, verified) -> dict       P/R/F1 of the LLM vs the humans, per label;
                                                             how often humans changed texts by LLM confidence
    report_markdown(report) -> str                           the same as a Markdown table
    Judgement                                                one annotator's verdict on a task (made by label_studio)
    agreement(per_task: dict[int, list[Judgement]]) -> dict  span F1 between annotators, Cohen's kappa
    write_correctness(run_dir) -> (dict, str)                the report of a run, as correctness.{json,md}

Entities match on exact span and label; relations on (head span, tail span, label). Rejected
examples are left out of P/R/F1 (the text itself was wrong, so there is no right annotation) and
counted apart, as the rejection rate.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from itertools import combinations
from pathlib import Path
from typing import Any

from sklearn.metrics import cohen_kappa_score

from distill_ner.data.errors import DistillError
from distill_ner.data.example import Entity, Example, Relation
from distill_ner.data.metrics import prf
from distill_ner.data.run_layout import RunLayout
from distill_ner.data.tables import markdown_table


@dataclass
class Judgement:
    """One annotator's verdict on a task, converted back to entities and relations."""

    annotator: str
    time: datetime | None
    rejected: str | None  # the reject choice, if any
    entities: list[Entity]
    relations: list[Relation]
    flipped: int = 0  # relations drawn backwards, turned round
    problems: list[str] = field(default_factory=list)  # relations the spec does not allow, or without a type


def _items(example: Example) -> tuple[set[tuple], set[tuple]]:
    ents = {(e.start, e.end, e.label) for e in example.entities}
    rels = {((example.entities[r.head].start, example.entities[r.head].end), (example.entities[r.tail].start, example.entities[r.tail].end), r.label) for r in example.relations}
    return ents, rels


def correctness_report(llm_examples: list[Example], verified: list[Example]) -> dict[str, Any]:
    """Precision, recall and F1 of the LLM's annotations against the human-verified ones."""
    llm_by_id = {e.id: e for e in llm_examples}
    counts: dict[str, Counter] = {"entities": Counter(), "relations": Counter()}
    per_label: dict[str, dict[str, Counter]] = {"entities": {}, "relations": {}}
    statuses = Counter()
    by_confidence: dict[str, Counter] = {"samples agree": Counter(), "samples disagree": Counter()}
    compared = 0
    for human in verified:
        statuses[human.review.status] += 1
        llm = llm_by_id.get(human.id)
        if llm is not None and llm.source.confidence is not None and human.review.status != "pending":
            bucket = by_confidence["samples agree" if llm.source.confidence >= 1.0 else "samples disagree"]
            bucket["texts"] += 1
            bucket["changed"] += human.review.status in ("corrected", "rejected")
        if llm is None or human.review.status not in ("accepted", "corrected"):
            continue
        compared += 1
        for kind, predicted, gold in zip(("entities", "relations"), _items(llm), _items(human)):
            for item in predicted | gold:
                outcome = "tp" if item in predicted and item in gold else ("fp" if item in predicted else "fn")
                counts[kind][outcome] += 1
                per_label[kind].setdefault(item[-1], Counter())[outcome] += 1
    reviewed = sum(statuses.values())
    return {
        "examples": {
            "reviewed": reviewed, "compared": compared, "accepted": statuses["accepted"], "corrected": statuses["corrected"],
            "rejected": statuses["rejected"], "rejection_rate": round(statuses["rejected"] / reviewed, 4) if reviewed else 0.0,
        },
        **{
            kind: {
                "micro": prf(counts[kind]["tp"], counts[kind]["fp"], counts[kind]["fn"]),
                "per_label": {label: prf(c["tp"], c["fp"], c["fn"]) for label, c in sorted(per_label[kind].items())},
            }
            for kind in ("entities", "relations")
        },
        "by_confidence": {
            name: {"texts": c["texts"], "changed": c["changed"], "changed_share": round(c["changed"] / c["texts"], 4) if c["texts"] else None}
            for name, c in by_confidence.items()
        },
    }


def report_markdown(report: dict[str, Any]) -> str:
    """The correctness report as Markdown: one table of P/R/F1 per label and overall."""
    ex = report["examples"]
    head = (
        f"LLM vs human review: {ex['compared']} examples compared ({ex['accepted']} accepted as is, {ex['corrected']} corrected), "
        f"{ex['rejected']} rejected ({ex['rejection_rate']:.1%}).\n"
    )
    agree, disagree = (report.get("by_confidence", {}).get(k, {}) for k in ("samples agree", "samples disagree"))
    if agree.get("texts") and disagree.get("texts"):  # what the k annotation samples buy: the texts to look at first
        head += (f"\nThe humans changed (corrected or rejected) {disagree['changed_share']:.0%} of the {disagree['texts']} texts on which the LLM's "
                 f"samples disagreed, and {agree['changed_share']:.0%} of the {agree['texts']} on which they agreed.\n")
    rows = [{"kind": kind, "label": label, **m} for kind in ("entities", "relations")
            for label, m in [*report[kind]["per_label"].items(), ("all (micro)", report[kind]["micro"])]]
    return head + "\n" + markdown_table(rows, ["kind", "label", "precision", "recall", "f1", "support"])


def agreement(per_task: dict[int, list[Judgement]]) -> dict[str, Any]:
    """Agreement on tasks with several annotators: span-level F1 between each pair of annotators
    (over the tasks both kept) and Cohen's kappa on keep/reject (over the tasks both judged)."""
    pairs: dict[tuple[str, str], dict[str, Any]] = {}
    multi = 0
    for judged in per_task.values():
        if len({j.annotator for j in judged}) < 2:
            continue
        multi += 1
        latest = {j.annotator: j for j in judged}  # one judgement per annotator: their latest
        for a, b in combinations(sorted(latest), 2):
            ja, jb = latest[a], latest[b]
            p = pairs.setdefault((a, b), {"tp": 0, "fp": 0, "fn": 0, "a": [], "b": []})
            p["a"].append(int(bool(ja.rejected)))
            p["b"].append(int(bool(jb.rejected)))
            if ja.rejected or jb.rejected:
                continue
            sa = {(e.start, e.end, e.label) for e in ja.entities}
            sb = {(e.start, e.end, e.label) for e in jb.entities}
            p["tp"] += len(sa & sb)
            p["fp"] += len(sa - sb)
            p["fn"] += len(sb - sa)
    out_pairs = {}
    for (a, b), p in pairs.items():
        if len(set(p["a"]) | set(p["b"])) < 2:
            kappa = 1.0  # both always kept (or always rejected): kappa is undefined, agreement perfect
        else:
            kappa = float(cohen_kappa_score(p["a"], p["b"]))
        out_pairs[f"{a} / {b}"] = {"tasks": len(p["a"]), "span_f1": prf(p["tp"], p["fp"], p["fn"])["f1"] if p["tp"] + p["fp"] + p["fn"] else 1.0, "kappa_reject": round(kappa, 4)}
    mean = lambda key: round(sum(v[key] for v in out_pairs.values()) / len(out_pairs), 4) if out_pairs else None  # noqa: E731
    return {"tasks_with_several_annotators": multi, "span_f1": mean("span_f1"), "kappa_reject": mean("kappa_reject"), "pairs": out_pairs}


def write_correctness(run_dir: str | Path) -> tuple[dict[str, Any], str]:
    """Compare a run's `generated.jsonl` with its `verified.jsonl`; write `correctness.{json,md}`."""
    from distill_ner.data.formats import read_jsonl

    run_dir = Path(run_dir)
    layout = RunLayout(run_dir)
    generated_path, verified_path = layout.generated, layout.verified
    if not generated_path.exists():
        raise DistillError(f"{generated_path}: not found (is {run_dir} a run folder?)")
    if not verified_path.exists():
        raise DistillError(f"{verified_path}: not found; run `distill review pull --run {run_dir}` first")
    report = correctness_report(read_jsonl(generated_path), read_jsonl(verified_path))
    markdown = report_markdown(report)
    markdown_path = RunLayout(run_dir).correctness
    markdown_path.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    markdown_path.write_text(markdown)
    return report, markdown

