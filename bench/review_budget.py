"""Benchmark: how much human review does a student need? F1 against the share of texts reviewed.

    .venv/bin/python bench/review_budget.py --worlds mock,bc5cdr,ncbi-disease --seeds 0
    .venv/bin/python bench/review_budget.py --worlds bc5cdr --seeds 0,1,2 --pool 400 --threads 1

For each world and seed, a pool of `--pool` texts is annotated by the LLM with three samples per
text (so every example has a confidence): the mock world by the mock LLM (`annotators.generate`),
a corpus of `../shared/data/real-ner/` by the mock in replay mode (`bench/real_text.py`: the
corpus' gold passed through the replay error model). The simulated reviewers review every pool
text once, offline and exactly as the flow's simulated annotators do
(`bench/mock_difficulty.reviewed_gold`, the run config's accuracy and convention drift); a share
of the pool then takes the reviewed version (a rejected text leaves the training set) and the rest
keep the LLM's labels ("silver"). Which texts are reviewed at each share:

- `random`: a seeded random choice;
- `triage`: the least confident first by LLM sample agreement (`annotators.label_studio.triage`,
  the order `review.budget` sends them in);
- `rounds`: active learning: the first round is the triage at the smallest share; each later
  round adds the texts that most need a human by the last round's model (`trainers.scores.review_priority`:
  its doubt, its disagreement with the LLM and the LLM's own doubt; what `review.rounds` uses) up
  to the next share.

At every point a student-sized model is scored with strict span F1 on a gold test set. How it is
trained (`--training`):

- `labels` (cheap): the first `--layers` layers of the offline MiniLM learn every training text's
  labels, reviewed and silver alike (`trainers.trainer.train_teacher`, `--epochs` epochs, no KD);
- `flow` (what the flow does, about three times the CPU): a teacher (the whole encoder, the
  project's defaults) learns the reviewed texts only; the `--layers`-layer KD student learns them
  with the teacher's soft targets and takes the silver texts as transfer texts, the teacher's soft
  targets without their labels (`trainers.pipeline`, as `distill.transfer`); the LLM's own k-sample
  annotation of a silver text is averaged in (`distill.llm_teacher`, the default; `--no-llm-teacher`: not). The
  teacher also learns the silver texts' LLM labels, each counting `--silver-weight` W times as much
  as a reviewed text (`teacher.silver_weight`, by default 0.5; 0: the reviewed texts only). At 0% no text is reviewed, so teacher and
  student learn the silver labels.

The test set is the corpus' test file (a seeded `--max-test` subset), or for the mock world texts the truth
labels exactly (reviewed with accuracy 1). Dev (early stopping) is gold too and not counted in the
budget: the corpus' dev file, or mock texts apart from the pool. The LLM's own annotation of the
test texts is the reference line. Each point is saved when done (OUT/WORLD-sSEED/points.json), so a
rerun goes on where a killed one stopped, and processes may share OUT if they run different
worlds. Results: OUT/review_budget.md, .json and .png.
"""

from __future__ import annotations

import json
import os
import random
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import typer  # noqa: E402
from mock_difficulty import reviewed_gold  # noqa: E402  (bench/ is on sys.path when this script runs)
from real_text import DATA_DIR, annotate_with_replay  # noqa: E402

# Everything the bench runs is imported now: a package file edited while it runs cannot mix versions.
from distill_ner.annotators.generate import generate  # noqa: E402
from distill_ner.annotators.label_studio import budget_size, triage  # noqa: E402
from distill_ner.annotators.llm import LLMConfig  # noqa: E402
from distill_ner.annotators.mock_llm import MockConfig, MockLLMServer  # noqa: E402
from distill_ner.annotators.truth import load_truth_records  # noqa: E402
from distill_ner.data.example import Example, Review  # noqa: E402
from distill_ner.data.formats import read_conll, read_jsonl  # noqa: E402
from distill_ner.data.spec import load_spec  # noqa: E402
from distill_ner.data.tables import markdown_table  # noqa: E402
from distill_ner.flows.config import LLMSection, ReviewSection  # noqa: E402
from distill_ner.trainers.args import TrainingArgs, default  # noqa: E402
from distill_ner.trainers.encoders import default_encoder  # noqa: E402
from distill_ner.trainers.evaluate import ner_scores  # noqa: E402
from distill_ner.trainers.inference import predict_entities  # noqa: E402
from distill_ner.trainers.modeling import load_model  # noqa: E402
from distill_ner.trainers.pipeline import student, teachers  # noqa: E402
from distill_ner.trainers.scores import review_priority  # noqa: E402
from distill_ner.trainers.trainer import train_teacher  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
STRATEGIES = ("random", "triage", "rounds")
TRAININGS = ("labels", "flow")
K_SAMPLES = 3
app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


@dataclass
class World:
    """One world at one seed: the LLM-labelled pool, what a reviewer makes of each pool text
    (None: rejected), gold dev and test, and the LLM's own labels of the test texts."""

    name: str
    spec: Any
    pool: list[Example]
    reviewed: dict[str, Example | None]
    dev: list[Example]
    test: list[Example]
    llm_test: list[list]

    def training_set(self, chosen: set[str]) -> list[Example]:
        """The reviewed version of the chosen texts (rejected ones left out), the LLM's of the rest, in pool order."""
        return [e if e.id not in chosen else self.reviewed[e.id] for e in self.pool if e.id not in chosen or self.reviewed[e.id] is not None]

    def reviewed_set(self, chosen: set[str]) -> list[Example]:
        """The reviewed version of the chosen texts, rejected ones left out."""
        return [r for e in self.pool if e.id in chosen and (r := self.reviewed[e.id]) is not None]

    def silver_set(self, chosen: set[str]) -> list[Example]:
        """The texts nobody reviewed, as the LLM labelled them."""
        return [e for e in self.pool if e.id not in chosen]


def _reviews(generated: list[Example], records: dict, seed: int) -> dict[str, Example | None]:
    review = ReviewSection()
    names = tuple(f"annotator-{i + 1}" for i in range(review.annotators))
    gold, _ = reviewed_gold(generated, records, review.accuracy, review.convention_drift, names, seed)
    by_text = {g.text: g for g in gold}
    return {e.id: by_text.get(e.text) for e in generated}


def mock_world(pool_size: int, n_dev: int, n_test: int, seed: int, out: Path) -> World:
    """Mock LLM texts (k samples each); pool, dev and test drawn apart from one generation."""
    llm = LLMSection()
    gen = out / "generated"
    config = MockConfig(seed=seed, error_rate=llm.error_rate, factual_error_rate=llm.factual_error_rate, truth_file=gen / "mock_truth.jsonl")
    spec = load_spec("species")
    asked = round((pool_size + n_dev + n_test) * 1.08)  # a few are dropped as duplicates
    if not (gen / "generated.jsonl").exists():
        with MockLLMServer(config) as server:
            generate(spec, asked, gen, LLMConfig(base_url=server.base_url, model="mock-species", concurrency=8), seed=seed, k_samples=K_SAMPLES)
    generated = read_jsonl(gen / "generated.jsonl")
    random.Random(seed).shuffle(generated)
    records = load_truth_records(gen / "mock_truth.jsonl")
    pool, rest = generated[:pool_size], generated[pool_size:]
    truth, _ = reviewed_gold(rest, records, accuracy=1.0, convention_drift=0.0, seed=seed)  # the truth; factually wrong texts dropped
    llm_labels = {e.id: e.entities for e in rest}
    dev, test = truth[:n_dev], truth[n_dev : n_dev + n_test]
    return World("mock", spec, pool, _reviews(pool, records, seed), dev, test, [llm_labels[g.id] for g in test])


def corpus_world(corpus: str, pool_size: int, n_dev: int, n_test: int, seed: int, out: Path, data_dir: Path) -> World:
    """A corpus' training sentences annotated by the replay mock (k samples); its dev and test files as gold."""
    spec = load_spec(corpus)
    rng = random.Random(seed)
    train, dev, test = (read_conll(data_dir / corpus / f"{name}.conll") for name in ("train", "dev", "test"))
    subset, dev, test = rng.sample(train, min(pool_size, len(train))), rng.sample(dev, min(n_dev, len(dev))), rng.sample(test, min(n_test, len(test)))
    seen = {e.text for e in subset}
    dev, test = [e for e in dev if e.text not in seen], [e for e in test if e.text not in seen]
    generated, records = annotate_with_replay(spec, subset, out / "annotate", seed, k_samples=K_SAMPLES)
    test_llm, _ = annotate_with_replay(spec, test, out / "annotate-test", seed + 1)
    by_text = {e.text: e.entities for e in test_llm}
    return World(corpus, spec, generated, _reviews(generated, records, seed), dev, test, [by_text.get(e.text, []) for e in test])


def small_encoder(layers: int, out: Path) -> Path:
    """The first `layers` layers of the offline MiniLM, saved once (the student's size)."""
    from transformers import AutoModel, AutoTokenizer

    path = out / f"minilm-{layers}l"
    if not (path / "config.json").exists():
        AutoModel.from_pretrained(default_encoder(), num_hidden_layers=layers).save_pretrained(path)
        AutoTokenizer.from_pretrained(default_encoder()).save_pretrained(path)
    return path


def train_and_score(world: World, chosen: set[str], out: Path, args: TrainingArgs, training: str) -> tuple[float, Path]:
    """(strict span F1 on the world's test set, model folder) of a model trained on the pool with `chosen` reviewed."""
    if training == "labels":
        model_dir = train_teacher(world.training_set(chosen), world.dev, out, args, spec=world.spec)
    else:
        gold = world.reviewed_set(chosen) or world.silver_set(chosen)  # 0% reviewed: the silver labels are all there is
        transfer = world.silver_set(chosen) if chosen else []
        silver = [e.model_copy(update={"review": Review(status="silver")}) for e in transfer] if args.silver_weight else []
        teacher_dir = teachers([*gold, *silver], world.dev, out / "teacher", args, spec=world.spec, log=lambda _: None)[0]
        model_dir = student(gold, world.dev, teacher_dir, out / "student", args, transfer=transfer, log=lambda _: None)
    return ner_scores(world.test, predict_entities(load_model(model_dir), world.test))["f1"], model_dir


def run_world(world: World, shares: list[float], strategies: list[str], out: Path, args: TrainingArgs, training: str, points: dict[str, Any], save) -> None:
    """Every (strategy, share) point of one world and seed, skipping those in `points`."""
    n = len(world.pool)
    ids = [e.id for e in world.pool]
    order = {"random": random.Random(args.seed).sample(ids, n), "triage": [e.id for e in triage(world.pool, None)[0]]}

    def point(strategy: str, share: float, chosen: set[str]) -> Path | None:
        key = f"{world.name}|{args.seed}|{strategy}|{share}"
        model_dir = out / f"{strategy}-{share:g}"
        if key in points and (model_dir / "model.json").exists():
            return model_dir
        if key in points and (model_dir / "student" / "model.json").exists():
            return model_dir / "student"
        if key in points:
            return None
        started = time.perf_counter()
        f1, model_dir = train_and_score(world, chosen, model_dir, args, training)
        settings = {"silver_weight": args.silver_weight, "llm_teacher": args.llm_teacher} if training == "flow" else {}
        points[key] = {"world": world.name, "seed": args.seed, "training": training, **settings, "strategy": strategy, "share": share, "f1": f1,
                       "reviewed": len(chosen), "train": len(world.training_set(chosen)), "seconds": round(time.perf_counter() - started)}
        save()
        print(f"{key}: strict span F1 {f1:.4f} ({len(chosen)} of {n} reviewed, {points[key]['seconds']} s)", flush=True)
        return model_dir

    for share in (s for s in shares if s in (0.0, 1.0)):  # the two ends are the same for every strategy
        point("all", share, set(ids) if share else set())
    inner = sorted(s for s in shares if 0 < s < 1)
    for strategy in (s for s in strategies if s != "rounds"):
        for share in inner:
            point(strategy, share, set(order[strategy][: budget_size(share, n)]))
    if "rounds" in strategies and inner:
        chosen = set(order["triage"][: budget_size(inner[0], n)])
        model_dir = point("triage", inner[0], chosen)  # round 1 is the triage
        for share in inner[1:]:
            if model_dir is None:
                raise SystemExit(f"{world.name} seed {args.seed}: round models are missing from {out}; remove its points to rerun the rounds")
            candidates = [e for e in world.pool if e.id not in chosen]
            need = review_priority(model_dir, candidates)
            ranked = sorted(candidates, key=lambda e: (-need[e.id], e.id))
            chosen = chosen | {e.id for e in ranked[: budget_size(share, n) - len(chosen)]}
            model_dir = point("rounds", share, chosen)


def missing_points(folder: Path, world: str, seed: int, shares: list[float], strategies: list[str]) -> list[str]:
    """The keys of the points of one world and seed that `folder` has not saved."""
    points = json.loads((folder / "points.json").read_text()) if (folder / "points.json").exists() else {}
    inner = sorted(s for s in shares if 0 < s < 1)
    names = [("all", s) for s in shares if s in (0.0, 1.0)] + [(st, s) for st in strategies if st != "rounds" for s in inner]
    if "rounds" in strategies and inner:
        names += [("triage", inner[0])] + [("rounds", s) for s in inner[1:]]
    return [key for key in dict.fromkeys(f"{world}|{seed}|{st}|{s}" for st, s in names) if key not in points]


def f1_at(points: list[dict], world: str, strategy: str, share: float, shares: list[float]) -> list[float]:
    """The strict span F1s (x100, one per seed) of a strategy at a share: the ends (0% and 100%)
    are the same for every strategy, and round 1 of `rounds` is the triage at the smallest share."""
    name = "all" if share in (0.0, 1.0) else "triage" if strategy == "rounds" and share == min(s for s in shares if 0 < s < 1) else strategy
    return [p["f1"] * 100 for p in points if (p["world"], p["strategy"], p["share"]) == (world, name, share)]


def curve_rows(points: list[dict], worlds: list[str], shares: list[float], strategies: list[str]) -> list[dict]:
    """One row per world and strategy: mean ± std strict span F1 (x100) at each share."""
    rows = []
    for world in worlds:
        for strategy in strategies:
            row: dict[str, Any] = {"world": world, "choice": strategy}
            for share in shares:
                f1 = f1_at(points, world, strategy, share, shares)
                row[f"{share:.0%}"] = "" if not f1 else f"{statistics.mean(f1):.1f}" + (f" ± {statistics.stdev(f1):.1f}" if len(f1) > 1 else "")
            rows.append(row)
    return rows


def plot(points: list[dict], llm: dict[str, float], worlds: list[str], shares: list[float], strategies: list[str], path: Path) -> None:
    """One panel per world: mean F1 against the share reviewed, a line per strategy, the LLM dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(worlds), figsize=(4.2 * len(worlds), 3.4), squeeze=False)
    for ax, world in zip(axes[0], worlds, strict=True):
        for strategy in strategies:
            curve = [(share * 100, statistics.mean(f1)) for share in shares if (f1 := f1_at(points, world, strategy, share, shares))]
            ax.plot([x for x, _ in curve], [y for _, y in curve], marker="o", label=strategy)
        if world in llm:
            ax.axhline(llm[world], linestyle="--", color="grey", label="LLM")
        ax.set_title(world)
        ax.set_xlabel("texts reviewed by humans (%)")
        ax.set_ylabel("strict span F1")
        ax.grid(alpha=0.3)
    axes[0][0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


@app.command()
def main(
    worlds: str = typer.Option("mock,bc5cdr,ncbi-disease", help="mock and/or corpora of --data-dir, comma-separated."),
    seeds: str = typer.Option("0", help="Comma-separated seeds (the pool, the LLM's errors, the review, training)."),
    shares: str = typer.Option("0,0.1,0.2,0.3,0.5,1", help="Shares of the pool reviewed by humans."),
    strategies: str = typer.Option(",".join(STRATEGIES), help="random, triage and/or rounds."),
    pool: int = typer.Option(400, help="Texts the LLM labels, of which a share is reviewed."),
    n_dev: int = typer.Option(100, help="Gold dev texts (early stopping; outside the budget)."),
    max_test: int = typer.Option(1000, help="Gold test texts (a seeded subset of a corpus' test file)."),
    layers: int = typer.Option(3, help="Encoder layers of the model trained at each point (the student's size)."),
    training: str = typer.Option("labels", help="labels: a small model learns all labels, silver too; flow: teacher on the reviewed texts, KD student with the silver ones as transfer texts."),
    llm_teacher: bool = typer.Option(default("llm_teacher"), "--llm-teacher/--no-llm-teacher", help="flow: the LLM's k-sample annotation of the silver texts is one more teacher (distill.llm_teacher)."),
    silver_weight: float = typer.Option(default("silver_weight"), help="flow: the teacher also learns the silver texts' LLM labels at this weight (teacher.silver_weight); 0: reviewed texts only."),
    epochs: int = typer.Option(8, help="labels: epochs at most per point (early stopping on dev); flow: the project's step budget decides."),
    threads: Optional[int] = typer.Option(1, help="torch CPU threads."),
    data_dir: Path = typer.Option(DATA_DIR),  # noqa: B008
    out: Path = typer.Option(ROOT / "bench_out" / "review_budget"),  # noqa: B008
    no_train: bool = typer.Option(False, "--no-train", help="Train nothing: the table and curves of the worlds and seeds whose points are all saved."),
) -> None:
    """Train at every share x strategy point; print and save the table and the curves."""
    world_names = [w for w in worlds.split(",") if w]
    share_list = sorted({float(s) for s in shares.split(",")})
    strategy_list = [s for s in strategies.split(",") if s]
    if bad := [s for s in strategy_list if s not in STRATEGIES]:
        raise SystemExit(f"unknown strategy {bad[0]!r}: use {', '.join(STRATEGIES)}")
    if training not in TRAININGS:
        raise SystemExit(f"unknown --training {training!r}: use {' or '.join(TRAININGS)}")
    out.mkdir(parents=True, exist_ok=True)
    encoder = small_encoder(layers, out) if training == "labels" else None
    llm: dict[str, list[float]] = {}
    kept: list[dict] = []
    included: dict[str, list[int]] = {}
    seed_list = [int(s) for s in seeds.split(",")]
    for seed in seed_list:
        if training == "labels":
            args = TrainingArgs(encoder=str(encoder), seed=seed, threads=threads, epochs=epochs, relations=False, progress=False)
        else:
            args = TrainingArgs(seed=seed, threads=threads, student_layers=layers, llm_teacher=llm_teacher, silver_weight=silver_weight, relations=False, progress=False)
        for name in world_names:
            folder = out / f"{name}-s{seed}"
            if no_train and (missing := missing_points(folder, name, seed, share_list, strategy_list)):
                print(f"{name} seed {seed}: left out, {len(missing)} points not saved (e.g. {missing[0]})", flush=True)
                continue
            world = mock_world(pool, n_dev, max_test, seed, folder) if name == "mock" else corpus_world(name, pool, n_dev, max_test, seed, folder, data_dir)
            llm.setdefault(name, []).append(ner_scores(world.test, world.llm_test)["f1"] * 100)
            print(f"{name} seed {seed}: pool {len(world.pool)}, dev {len(world.dev)}, test {len(world.test)}, "
                  f"{sum(r is None for r in world.reviewed.values())} rejected if reviewed; LLM F1 on test {llm[name][-1]:.1f}", flush=True)
            points_file = folder / "points.json"  # one file per world and seed: two processes may run different worlds
            points: dict[str, Any] = json.loads(points_file.read_text()) if points_file.exists() else {}
            if other := {p.get("training", "labels") for p in points.values()} - {training}:
                raise SystemExit(f"{points_file} holds points trained with --training {other.pop()}: give another --out for --training {training}")

            def save(points: dict[str, Any] = points, points_file: Path = points_file) -> None:
                points_file.with_suffix(".tmp").write_text(json.dumps(points, indent=1) + "\n")
                points_file.with_suffix(".tmp").replace(points_file)

            if not no_train:
                run_world(world, share_list, strategy_list, folder, args, training, points, save)
            kept += points.values()
            included.setdefault(name, []).append(seed)

    world_names = [w for w in world_names if w in included]
    if not world_names:
        raise SystemExit("no world has all its points saved: nothing to tabulate (run without --no-train)")
    rows = curve_rows(kept, world_names, share_list, strategy_list)
    llm_mean = {w: statistics.mean(v) for w, v in llm.items()}
    plot(kept, llm_mean, world_names, share_list, strategy_list, out / "review_budget.png")
    report = (
        "Seeds: " + "; ".join(f"{w} {', '.join(map(str, included[w]))}" for w in world_names) + ".\n\n"
        f"Strict span F1 (x100, mean ± std over those seeds) of a {layers}-layer model against the share of the {pool} "
        f"LLM-labelled texts reviewed by humans; the rest keep the LLM's labels. Training: {training}"
        + (" (teacher on the reviewed texts, KD student with the silver ones as transfer texts" + (", the LLM as one more teacher on them" if llm_teacher else "") + (f"; the teacher also learns the silver labels at weight {silver_weight:g})" if silver_weight else ")") if training == "flow" else
           " (the small model learns every text's labels, silver ones too)") + ".\n\n" + markdown_table(rows) + "\n\n"
        + "LLM's own annotation of the test texts: " + ", ".join(f"{w} {v:.1f}" for w, v in llm_mean.items()) + "\n"
    )
    print(report)
    (out / "review_budget.md").write_text(report, encoding="utf-8")
    (out / "review_budget.json").write_text(json.dumps({"points": kept, "llm": llm_mean}, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    app()
