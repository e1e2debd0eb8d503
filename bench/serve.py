"""Benchmark: the exported student served in spaCy on CPU, torch vs ONNX vs ONNX int8 side by side.

    .venv/bin/python bench/serve.py                                   # runs/demo/models/student, runs/demo/verified
    .venv/bin/python bench/serve.py MODEL_DIR --test DATA --threads 2 --rounds 2

Exports MODEL_DIR three times (`distill export-spacy` with `--runtime torch`, `--runtime onnx`,
`--quantize int8`) into OUT, then runs each pipeline in a fresh process of its own (so that peak
memory is that runtime's alone), one after the other and in several rounds, interleaved (the
best round of each counts: a machine shared with other jobs slows all runtimes alike). Each
process times `nlp.pipe` on the gold test texts (one sentence each) and on long paragraphs
(`--paragraph` test texts joined: several windows each), and scores what it predicted against
gold: strict span F1 (seqeval on words, as `distill evaluate`) and end-to-end relation F1 (a
predicted relation counts when both entities' offsets and labels and the relation label match).
Prints a Markdown table (also OUT/serve.md, OUT/serve.json): size on disk, peak memory (max RSS),
load seconds, sentences per second and speed-up over torch, the speed-up of the forward pass alone
(the encoder and heads: what the runtime replaces) and its share of the time (the rest is spaCy,
tokenization, windows, decoding and relation candidates, shared by all runtimes), F1 and its
change from torch.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
RUNTIMES = {"torch": {"runtime": "torch"}, "onnx": {"runtime": "onnx"}, "onnx-int8": {"runtime": "onnx", "quantize": "int8"}}


def paragraphs(examples: list, size: int) -> list:
    """Consecutive groups of `size` examples joined by a space into one example (gold offsets shifted)."""
    from distill_ner.data.example import Example

    out = []
    for i in range(0, len(examples), size):
        parts, entities, relations, start = [], [], [], 0
        for ex in examples[i : i + size]:
            base = len(entities)
            entities += [e.model_copy(update={"start": e.start + start, "end": e.end + start}) for e in ex.entities]
            relations += [r.model_copy(update={"head": r.head + base, "tail": r.tail + base}) for r in ex.relations]
            parts.append(ex.text)
            start += len(ex.text) + 1
        out.append(Example(text=" ".join(parts), entities=entities, relations=relations))
    return out


def relation_f1(gold: list, predicted: list) -> float:
    """End-to-end strict relation F1: (head span+label, tail span+label, relation label) keys."""

    def keys(ex) -> set:
        return {(ex.entities[r.head].start, ex.entities[r.head].end, ex.entities[r.head].label, ex.entities[r.tail].start, ex.entities[r.tail].end, ex.entities[r.tail].label, r.label) for r in ex.relations}

    tp = fp = fn = 0
    for g, p in zip(gold, predicted, strict=True):
        a, b = keys(g), keys(p)
        tp, fp, fn = tp + len(a & b), fp + len(b - a), fn + len(a - b)
    return round(2 * tp / (2 * tp + fp + fn), 4) if tp + fp + fn else 0.0


def worker(pipeline: Path, data: Path, threads: int, repeats: int) -> dict[str, Any]:
    """Load the pipeline, time it on both text sets, score it; peak RSS of this process."""
    import torch

    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    import spacy

    from distill_ner.data.example import Entity, Example, Relation
    from distill_ner.trainers.evaluate import ner_scores

    nlp = spacy.load(pipeline)
    load_s = time.perf_counter() - t0
    sets = {name: [Example.model_validate(x) for x in rows] for name, rows in json.loads(data.read_text(encoding="utf-8")).items()}
    result: dict[str, Any] = {"load_s": round(load_s, 2)}
    model = nlp.get_pipe("distill_ner_re").loaded.model
    forward = {"s": 0.0}  # time inside the encoder/heads forward (what the runtime replaces)

    def timing(fn: Any) -> Any:
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            out = fn(*args, **kwargs)
            forward["s"] += time.perf_counter() - start
            return out

        return timed

    for method in ("tag_outputs", "re_logits"):
        setattr(model, method, timing(getattr(model, method)))
    list(nlp.pipe([e.text for e in sets["sentences"][:16]]))  # warm-up
    for name, gold in sets.items():
        texts = [e.text for e in gold]
        best, best_forward = float("inf"), float("inf")
        for _ in range(repeats):
            start, forward["s"] = time.perf_counter(), 0.0
            docs = list(nlp.pipe(texts))
            if time.perf_counter() - start < best:
                best, best_forward = time.perf_counter() - start, forward["s"]
        predicted = []
        for doc in docs:
            ents = [Entity(start=e.start_char, end=e.end_char, label=e.label_) for e in doc.ents]
            index = {(e.start, e.end, e.label): k for k, e in enumerate(ents)}
            rels = [Relation(head=index[(r[0], r[1], r[2])], tail=index[(r[3], r[4], r[5])], label=r[6]) for r in doc._.relation_data or [] if (r[0], r[1], r[2]) in index and (r[3], r[4], r[5]) in index]
            predicted.append(Example(text=doc.text, entities=ents, relations=rels))
        n_sentences = sum(int(e.id.split(":")[0]) if e.id and ":" in e.id else 1 for e in gold)
        result[name] = {
            "texts": len(texts), "sentences": n_sentences, "seconds": round(best, 3), "sentences_per_s": round(n_sentences / best, 1),
            "forward_s": round(best_forward, 3), "forward_sentences_per_s": round(n_sentences / best_forward, 1),
            "f1": ner_scores(gold, [p.entities for p in predicted])["f1"], "relation_f1": relation_f1(gold, predicted),
        }
    result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return result


def dir_mb(path: Path) -> float:
    return round(sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 1e6, 1)


def main(argv: list[str] | None = None) -> None:
    """Serve the student in spaCy with each runtime; print the comparison table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model_dir", nargs="?", type=Path, default=Path("runs/demo/models/student"), help="a trained model directory (the student)")
    parser.add_argument("--test", type=Path, default=Path("runs/demo/verified"), help="gold examples: a file or a DatasetDict folder (its test split)")
    parser.add_argument("--out", type=Path, default=Path("runs/bench-serve"), help="where the pipelines and results go")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads of each runtime (torch intra-op; ONNX Runtime takes torch's count)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds over the runtimes, interleaved; each runtime's best round counts")
    parser.add_argument("--repeats", type=int, default=2, help="timed passes per text set inside one process (the fastest counts)")
    parser.add_argument("--paragraph", type=int, default=10, help="test texts joined into one long paragraph")
    parser.add_argument("--runtimes", default=",".join(RUNTIMES), help="which of: " + ", ".join(RUNTIMES))
    parser.add_argument("--worker-pipeline", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    model_dir, test, out, threads, rounds, repeats, paragraph = args.model_dir, args.test, args.out, args.threads, args.rounds, args.repeats, args.paragraph
    runtimes, worker_pipeline = args.runtimes, args.worker_pipeline
    data = out / "texts.json"
    if worker_pipeline is not None:
        print(json.dumps(worker(worker_pipeline, data, threads, repeats)))
        return
    from distill_ner.data.tables import markdown_table
    from distill_ner.trainers.cli import load_split
    from distill_ner.trainers.export.to_spacy import export_spacy

    gold = load_split(test, "test")
    long = [p.model_copy(update={"id": f"{min(paragraph, len(gold) - i)}:para{i}"}) for i, p in zip(range(0, len(gold), paragraph), paragraphs(gold, paragraph))]
    out.mkdir(parents=True, exist_ok=True)
    data.write_text(json.dumps({"sentences": [g.model_dump(mode="json") for g in gold], "paragraphs": [p.model_dump(mode="json") for p in long]}), encoding="utf-8")
    names = [n.strip() for n in runtimes.split(",") if n.strip()]
    pipelines = {}
    for name in names:
        start = time.perf_counter()
        pipelines[name] = export_spacy(model_dir, out / name, **RUNTIMES[name])
        print(f"exported {name} in {time.perf_counter() - start:.1f} s -> {pipelines[name]}", file=sys.stderr)
    best: dict[str, dict[str, Any]] = {}
    for r in range(rounds):
        for name in names:
            cmd = [sys.executable, __file__, str(model_dir), "--out", str(out), "--threads", str(threads), "--repeats", str(repeats), "--worker-pipeline", str(pipelines[name])]
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                raise SystemExit(f"{name}: worker failed\n{proc.stderr[-3000:]}")
            res = json.loads(proc.stdout.strip().splitlines()[-1])
            print(f"round {r + 1} {name}: " + ", ".join(f"{k} {res[k]['sentences_per_s']} sent/s" for k in ("sentences", "paragraphs")) + f", peak {res['peak_rss_mb']} MB", file=sys.stderr)
            if name not in best:
                best[name] = res
            else:  # keep the fastest round of each text set; F1 does not change between rounds
                for k in ("sentences", "paragraphs"):
                    if res[k]["seconds"] < best[name][k]["seconds"]:
                        best[name][k] = res[k]
                best[name]["peak_rss_mb"] = max(best[name]["peak_rss_mb"], res["peak_rss_mb"])
                best[name]["load_s"] = min(best[name]["load_s"], res["load_s"])
    base = best.get("torch")
    rows = []
    for name in names:
        res = best[name]
        row: dict[str, Any] = {"runtime": name, "size MB": dir_mb(pipelines[name]), "peak RSS MB": res["peak_rss_mb"], "load s": res["load_s"]}
        for k, label in (("sentences", "sentences"), ("paragraphs", f"paragraphs ({paragraph} sent.)")):
            row[f"{label}: sent/s"] = res[k]["sentences_per_s"]
            if base:
                row[f"{label}: x torch"] = round(res[k]["sentences_per_s"] / base[k]["sentences_per_s"], 2)
                row[f"{label}: forward x torch"] = round(base[k]["forward_s"] / res[k]["forward_s"], 2)
            row[f"{label}: forward share"] = round(res[k]["forward_s"] / res[k]["seconds"], 2)
            row[f"{label}: span F1"] = res[k]["f1"]
            if base:
                row[f"{label}: ΔF1 pts"] = round(100 * (res[k]["f1"] - base[k]["f1"]), 2)
            row[f"{label}: rel F1"] = res[k]["relation_f1"]
        rows.append(row)
    header = (
        f"Model {model_dir}; {len(gold)} test sentences and {len(long)} paragraphs of {paragraph}; {threads} threads; "
        f"best of {rounds} rounds x {repeats} passes; `{' '.join(['bench/serve.py', *sys.argv[1:]])}`"
    )
    table = markdown_table(rows)
    print(header + "\n\n" + table)
    (out / "serve.md").write_text(header + "\n\n" + table + "\n", encoding="utf-8")
    (out / "serve.json").write_text(json.dumps({"header": header, "rows": rows, "raw": best}, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
