"""Benchmark: the trainer on real, human-annotated corpora, at the data size our users have.

    .venv/bin/python bench/real_corpora.py                                  # 4 corpora x 3 seeds, 1,000 sentences
    .venv/bin/python bench/real_corpora.py --corpora bc5cdr,bc5cdr-glued --seeds 0 --threads 1

For each corpus of `../shared/data/real-ner/` (or `--data-dir`) and each seed: a seeded subset of
`--n-train` sentences of its training file, a seeded subset of `--n-dev` of its dev file, and its
whole test file (or `--n-test` of it). Models, all on those sentences, all scored on the file's
own tokens (strict span F1 with seqeval, token macro F1 over the entity types):

- `plain`: bench/plain_finetune.py, the sixty-line token-classification loop (MiniLM, 15 epochs);
- `teacher`: the project's teacher with every default (trainers/pipeline.py, as `distill train`);
- `student`: the 3-layer student with the default KD method, from that teacher;
- `transfer`: the same student that also learns the teacher's soft targets on `--n-transfer`
  unlabelled sentences (other sentences of the training file, their tags dropped), as
  `distill train --transfer FILE` does with a user's own unlabelled text;
- `spacy`: spaCy's own CNN NER, `spacy init config --pipeline ner --optimize efficiency` then
  `spacy train` on the same sentences (dev for its model choice): the CPU model a user would
  pick instead.

A corpus name ending in `-glued` (e.g. `bc5cdr-glued`) is that corpus with its punctuation glued
back onto a word, as whitespace splitting leaves it: closing and other marks onto the word before,
opening brackets onto the word after ("California ," -> "California,"). Its tags are the word's.

Prints and writes OUT/real_corpora.md and .json: per corpus, mean ± std over the seeds of strict
span F1 and token F1, sentences per second in spaCy on one CPU thread (the exported pipelines;
none for the plain loop, which is not one) and parameters; then the goals of issue 26.
"""

from __future__ import annotations

import json
import os
import random
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Optional

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import typer  # noqa: E402

from distill_ner.data.tables import markdown_table  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = ROOT.parent / "shared" / "data" / "real-ner"
CORPORA = ("bc5cdr", "ncbi-disease", "linnaeus", "bionlp13cg")
MODELS = ("plain", "teacher", "student", "transfer", "spacy")
OPENING = set("([{")
app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


# --- data ------------------------------------------------------------------------------------
def glue_punctuation(example):
    """The example as whitespace splitting would have tokenized it: each punctuation token glued
    onto the word before it (an opening bracket onto the word after); the glued token keeps the
    word's tag (an opening bracket's own tag when it starts an entity)."""
    from distill_ner.data.example import Entity, Example
    from distill_ner.data.formats import bio_tokens

    rows = [(tok, tag) for tok, tag, _, _ in bio_tokens(example)]
    glued: list[list[str]] = []
    carry: list[str] | None = None  # opening brackets waiting for their word
    for tok, tag in rows:
        punct = not any(c.isalnum() for c in tok)
        if carry is not None:
            carry = [carry[0] + tok, carry[1] if carry[1] != "O" else tag]
            if not punct or tok not in OPENING:
                glued.append(carry)
                carry = None
            continue
        if punct and tok in OPENING:
            carry = [tok, tag]
        elif punct and glued:
            glued[-1][0] += tok
        else:
            glued.append([tok, tag])
    if carry is not None:
        glued.append(carry)
    text, words, cursor = " ".join(tok for tok, _ in glued), [], 0
    for tok, _ in glued:
        words.append((cursor, cursor + len(tok)))
        cursor += len(tok) + 1
    entities: list[dict] = []
    current: dict | None = None
    for (tok, tag), (s, t) in zip(glued, words):
        if tag == "O":
            current = None
        elif tag.startswith("I-") and current is not None and current["label"] == tag[2:]:
            current["end"] = t
        else:
            current = {"start": s, "end": t, "label": tag[2:]}
            entities.append(current)
    return Example(id=example.id, text=text, words=words, source=example.source,
                   entities=[Entity(**e) for e in entities])


def load_corpus(data_dir: Path, corpus: str, n_train: int, n_dev: int, n_test: int | None, seed: int, n_transfer: int = 0) -> dict[str, list]:
    """Seeded train and dev subsets and the test file (or a seeded subset) of a corpus; with
    `n_transfer`, also that many other training sentences without their tags (`transfer`)."""
    from distill_ner.data.dedup import drop_texts_of
    from distill_ner.data.example import Example
    from distill_ner.data.formats import read_conll

    name = corpus.removesuffix("-glued")
    splits = {}
    for split, n in (("train", n_train), ("dev", n_dev), ("test", n_test)):
        examples = read_conll(data_dir / name / f"{split}.conll")
        if n and n < len(examples):
            examples = random.Random(f"{seed}-{split}").sample(examples, n)
        if split == "train":
            chosen = {e.id for e in examples}
            rest = [e for e in read_conll(data_dir / name / "train.conll") if e.id not in chosen]
            rest = random.Random(f"{seed}-transfer").sample(rest, min(n_transfer, len(rest)))
            splits["transfer"] = [Example(id=e.id, text=e.text, words=e.words, source=e.source) for e in rest]
        splits[split] = [glue_punctuation(e) for e in examples] if corpus.endswith("-glued") else examples
    if corpus.endswith("-glued"):
        splits["transfer"] = [glue_punctuation(e) for e in splits["transfer"]]
    # some sentences occur in two files of a corpus: none is trained on and scored (as `distill train` does)
    splits["train"] = drop_texts_of(splits["train"], splits["test"])[0]
    splits["dev"] = drop_texts_of(splits["dev"], [*splits["train"], *splits["test"]])[0]
    splits["transfer"] = drop_texts_of(splits["transfer"], [*splits["train"], *splits["dev"], *splits["test"]])[0]
    return splits


# --- models ----------------------------------------------------------------------------------
def score_row(key: str, model: str, test: list, predicted: list, parameters: int | None, seconds: float, speed: float | None) -> dict:
    """A table row; `key` is the `--models` name it answers (a rerun skips it)."""
    from distill_ner.trainers.evaluate import ner_scores

    scores = ner_scores(test, predicted)
    return {"key": key, "model": model, "f1": scores["f1"], "token_f1": scores["token_macro_f1"], "parameters": parameters, "train_seconds": round(seconds), "speed": speed}


def spacy_speed(nlp, texts: list[str], n: int = 1000) -> float:
    """Sentences per second of `nlp.pipe` (batch 64) on the current torch and spaCy threads."""
    sample = (texts * (n // max(1, len(texts)) + 1))[:n]
    list(nlp.pipe(sample[:64]))
    started = time.perf_counter()
    list(nlp.pipe(sample, batch_size=64))
    return round(n / (time.perf_counter() - started), 1)


def run_plain(splits: dict, out: Path, seed: int) -> dict:
    from plain_finetune import plain_finetune  # bench/ is on sys.path when this script runs

    from distill_ner.trainers.encoders import load_encoder

    started = time.perf_counter()
    predicted = plain_finetune(splits["train"], splits["test"], seed=seed)
    parameters = sum(p.numel() for p in load_encoder(None)[0].parameters())
    return score_row("plain", "plain fine-tune", splits["test"], predicted, parameters, time.perf_counter() - started, None)


def run_project(splits: dict, out: Path, seed: int, threads: int | None, todo: list[str], overrides: dict | None = None) -> Iterator[dict]:
    """Those of the teacher, the student and the transfer student (trainer defaults, but for
    `overrides` of `TrainingArgs`) in `todo`, scored and timed in spaCy (the teacher is trained
    for the students either way, once)."""
    import spacy

    from distill_ner.trainers.args import TrainingArgs
    from distill_ner.trainers.export.to_spacy import export_spacy
    from distill_ner.trainers.inference import predict_entities, read_meta
    from distill_ner.trainers.modeling import load_model
    from distill_ner.trainers.pipeline import student, teachers

    overrides = overrides or {}
    args = TrainingArgs(**{"seed": seed, "threads": threads, "progress": False, **overrides})
    changed = "".join(f", {k}={v}" for k, v in overrides.items())
    teacher = teachers(splits["train"], splits["dev"], out / "teacher", args)[0]
    models = {"teacher": (f"teacher{changed}", lambda: teacher)}
    models["student"] = (f"student {args.student_layers}L KD {args.kd}{changed}", lambda: student(splits["train"], splits["dev"], teacher, out / "student", args))
    models["transfer"] = (f"student {args.student_layers}L KD {args.kd} + {len(splits['transfer'])} unlabelled{changed}",
                          lambda: student(splits["train"], splits["dev"], teacher, out / "student-transfer", args, transfer=splits["transfer"]))
    texts = [e.text for e in splits["test"]]
    for key in todo:
        if key not in models:
            continue
        name, train = models[key]
        path = train()
        meta = read_meta(path)
        predicted = predict_entities(load_model(path), splits["test"])
        nlp = spacy.load(export_spacy(path, out / f"{path.name}-spacy"))
        yield score_row(key, name, splits["test"], predicted, meta.parameters, meta.train_seconds or 0.0, spacy_speed(nlp, texts))


def run_spacy_cnn(splits: dict, out: Path, seed: int, threads: int) -> dict:
    """spaCy's CNN NER (`spacy init config --pipeline ner --optimize efficiency`), trained by `spacy train`."""
    import spacy
    from spacy.tokens import Doc

    from distill_ner.data.example import Entity
    from distill_ner.data.formats import to_docbin
    from distill_ner.data.words import words_of

    out.mkdir(parents=True, exist_ok=True)
    to_docbin(splits["train"], out / "train.spacy")
    to_docbin(splits["dev"], out / "dev.spacy")
    config = out / "config.cfg"
    subprocess.run([sys.executable, "-m", "spacy", "init", "config", str(config), "--lang", "en", "--pipeline", "ner", "--optimize", "efficiency", "--force"],
                   check=True, capture_output=True)
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "spacy", "train", str(config), "--output", str(out / "model"), "--paths.train", str(out / "train.spacy"),
                           "--paths.dev", str(out / "dev.spacy"), "--system.seed", str(seed)], capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": str(threads), "OPENBLAS_NUM_THREADS": str(threads)})
    if proc.returncode != 0:
        raise SystemExit(f"spacy train failed:\n{proc.stderr[-2000:]}")
    seconds = time.perf_counter() - started
    nlp = spacy.load(out / "model" / "model-best")
    docs = [Doc(nlp.vocab, words=[e.text[s:t] for s, t in words_of(e)]) for e in splits["test"]]
    predicted = []
    for example, doc in zip(splits["test"], nlp.pipe(docs, batch_size=64)):
        starts = [s for s, _ in words_of(example)]
        predicted.append([Entity(start=starts[ent.start], end=starts[ent.end - 1] + len(doc[ent.end - 1].text), label=ent.label_) for ent in doc.ents])
    ner = nlp.get_pipe("ner").model
    parameters = sum(node.get_param(name).size for node in ner.walk() for name in node.param_names if node.has_param(name))
    tok2vec = nlp.get_pipe("tok2vec").model if "tok2vec" in nlp.pipe_names else None
    if tok2vec is not None:
        parameters += sum(node.get_param(name).size for node in tok2vec.walk() for name in node.param_names if node.has_param(name))
    return score_row("spacy", "spaCy CNN NER (efficiency)", splits["test"], predicted, parameters, seconds, spacy_speed(nlp, [e.text for e in splits["test"]]))


# --- report ----------------------------------------------------------------------------------
def cell(values: list[float], scale: float = 100.0) -> str:
    values = [v * scale for v in values if v is not None]
    if not values:
        return "-"
    return f"{statistics.mean(values):.1f}" + (f" ± {statistics.stdev(values):.1f}" if len(values) > 1 else "")


def summary(results: dict[str, dict[int, list[dict]]]) -> str:
    """One row per corpus and model: mean ± std over the seeds."""
    rows = []
    for corpus, by_seed in results.items():
        keys = list(dict.fromkeys(row_key(r) for seed_rows in by_seed.values() for r in seed_rows))
        for key in keys:
            found = [r for seed_rows in by_seed.values() for r in seed_rows if row_key(r) == key]
            speed = [r["speed"] for r in found if r["speed"]]
            rows.append({
                "corpus": corpus, "model": model_name(found), "strict span F1": cell([r["f1"] for r in found]), "token F1": cell([r["token_f1"] for r in found]),
                "sent/s in spaCy (1 thread)": f"{statistics.mean(speed):.0f}" if speed else "-",
                "parameters": f"{found[0]['parameters'] / 1e6:.1f}M" if found[0]["parameters"] else "-",
                "train s": f"{statistics.mean(r['train_seconds'] for r in found):.0f}", "seeds": len(found),
            })
    return markdown_table(rows)


def model_name(rows: list[dict]) -> str:
    """The name of one model's rows over seeds; counts that differ by seed (the transfer
    sentences left after dropping duplicates) become their mean."""
    names = {r["model"] for r in rows}
    if len(names) == 1:
        return names.pop()
    counts = [int(re.search(r"\+ (\d+) ", r["model"]).group(1)) for r in rows]
    return re.sub(r"\+ \d+ ", f"+ ~{statistics.mean(counts):.0f} ", rows[0]["model"])


def row_key(row: dict) -> str:
    """The `--models` name of a row (rows saved before rows had keys: the model's first word)."""
    return row.get("key", row["model"].split()[0].lower())


def goals(results: dict[str, dict[int, list[dict]]]) -> list[str]:
    """Issue 26's goals, checked on the means (each line says what it compares); the transfer
    student is checked as a student too."""
    def mean(corpus: str, key: str) -> float | None:
        values = [r["f1"] for rows in results.get(corpus, {}).values() for r in rows if row_key(r) == key]
        return statistics.mean(values) * 100 if values else None

    lines, gains = [], []
    for corpus in results:
        plain, teacher, cnn = (mean(corpus, k) for k in ("plain", "teacher", "spacy"))
        if None not in (plain, teacher):
            gains.append(teacher - plain)
            lines.append(f"{corpus}: teacher minus plain {teacher - plain:+.1f}")
        for key, name in (("student", "student"), ("transfer", "student + unlabelled")):
            pupil = mean(corpus, key)
            if None not in (plain, pupil):
                lines.append(f"{corpus}: {name} minus plain {pupil - plain:+.1f} (goal >= +1.0: {'met' if pupil - plain >= 1.0 else 'NOT met'})")
            if None not in (teacher, pupil):
                lines.append(f"{corpus}: {name} keeps {pupil / teacher:.2%} of the teacher (goal >= 98%: {'met' if pupil >= 0.98 * teacher else 'NOT met'})")
            if None not in (cnn, pupil):
                lines.append(f"{corpus}: {name} minus spaCy CNN {pupil - cnn:+.1f} (goal > 0: {'met' if pupil > cnn else 'NOT met'})")
    if gains:
        lines.append(f"teacher minus plain, mean over {len(gains)} corpora: {statistics.mean(gains):+.1f} (goal >= +2.0: {'met' if statistics.mean(gains) >= 2.0 else 'NOT met'})")
    return lines


@app.command()
def main(
    corpora: str = typer.Option(",".join(CORPORA), help="Comma-separated folders of --data-dir; NAME-glued: punctuation glued back onto words."),
    seeds: str = typer.Option("0,1,2", help="Comma-separated seeds (subsets and training)."),
    models: str = typer.Option(",".join(MODELS), help=f"Comma-separated, of: {', '.join(MODELS)}."),
    n_train: int = typer.Option(1000, help="Training sentences (a seeded subset of train.conll)."),
    n_dev: int = typer.Option(500, help="Dev sentences (a seeded subset of dev.conll)."),
    n_test: Optional[int] = typer.Option(None, help="Test sentences (default: the whole test.conll)."),
    n_transfer: int = typer.Option(3000, help="`transfer`: unlabelled sentences (other sentences of train.conll, tags dropped), at most all the rest."),
    data_dir: Path = typer.Option(DATA_DIR, help="Where the corpora are."),  # noqa: B008
    out: Path = typer.Option(ROOT / "bench_out" / "real_corpora", help="Models and results."),  # noqa: B008
    threads: int = typer.Option(1, help="torch and spaCy CPU threads (training and the speed column)."),
    set_args: list[str] = typer.Option([], "--set", help="KEY=VALUE (VALUE in YAML, as `distill train -s`): a TrainingArgs field for the project's models, "  # noqa: B008
                                       "e.g. --set ema_decay=0.99; named in their rows (use another --out)."),
) -> None:
    """Train and score every model on every corpus and seed; print the table and the goals."""
    import torch

    # Everything this run will use, imported now: a long run must not mix in code edited meanwhile.
    import plain_finetune  # noqa: F401
    import distill_ner.trainers.export.to_spacy  # noqa: F401
    import distill_ner.trainers.pipeline  # noqa: F401
    import distill_ner.trainers.evaluate  # noqa: F401

    torch.set_num_threads(threads)
    from pydantic import ValidationError

    from distill_ner.data.errors import DistillError
    from distill_ner.trainers.args import TrainingArgs, parse_settings

    try:  # the same `key=value` reading as `distill train -s`, checked before any training
        overrides = parse_settings(set_args)
        TrainingArgs(**overrides)
    except (DistillError, ValidationError) as error:
        raise typer.BadParameter(str(error).splitlines()[0] if isinstance(error, DistillError) else f"{set_args}: {error.errors()[0]['msg']}",
                                 param_hint="--set") from None
    wanted = [m.strip() for m in models.split(",") if m.strip()]
    results_file = out / "real_corpora.json"
    results: dict[str, dict[int, list[dict]]] = {}
    if results_file.exists():  # a rerun adds to what is there and skips what is done
        results = {c: {int(s): rows for s, rows in by.items()} for c, by in json.loads(results_file.read_text()).items()}
    for corpus in [c.strip() for c in corpora.split(",") if c.strip()]:
        for seed in [int(s) for s in seeds.split(",") if s.strip()]:
            done = {row_key(r) for r in results.get(corpus, {}).get(seed, [])}
            todo = [m for m in wanted if m not in done]
            if not todo:
                continue
            splits = load_corpus(data_dir, corpus, n_train, n_dev, n_test, seed, n_transfer if "transfer" in todo else 0)
            where = out / corpus / f"seed{seed}"
            print(f"{corpus} seed {seed}: train {len(splits['train'])}, dev {len(splits['dev'])}, test {len(splits['test'])}; {', '.join(todo)}", flush=True)
            rows = results.setdefault(corpus, {}).setdefault(seed, [])
            def done_rows() -> Iterator[dict]:  # each row is saved as soon as it is done: a crash or a kill loses one model at most
                if {"teacher", "student", "transfer"} & set(todo):
                    yield from run_project(splits, where, seed, threads, todo, overrides)
                if "spacy" in todo:
                    yield run_spacy_cnn(splits, where / "spacy-cnn", seed, threads)
                if "plain" in todo:
                    yield run_plain(splits, where / "plain", seed)

            for row in done_rows():
                rows.append(row)
                out.mkdir(parents=True, exist_ok=True)
                results_file.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
                print(markdown_table(rows), flush=True)
    report = (f"{n_train} training sentences, {n_dev} dev sentences, test: {'all' if not n_test else n_test}; "
              f"strict span F1 and token macro F1 on each file's own tokens, in percent, mean ± std over seeds.\n\n"
              + summary(results) + "\n\n" + "\n".join(f"- {line}" for line in goals(results)) + "\n")
    print(report)
    (out / "real_corpora.md").write_text(report, encoding="utf-8")


if __name__ == "__main__":
    app()
