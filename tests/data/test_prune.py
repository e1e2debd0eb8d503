"""Pruning steps: exact fractions, seeded, dev/test untouched, a reason for every removed example."""

import json
from dataclasses import dataclass

import pytest

from distill_ner.data.errors import DistillError
from distill_ner.data.example import Entity, Example, Review, Source
from distill_ner.data.formats import load_splits
from distill_ner.data.prune import (
    ClassBalance,
    Dedup,
    DropRejected,
    MinConfidence,
    ToFraction,
    parse_step,
    PruneSettings,
    prune_run,
    register_step,
    prune_splits,
    read_removed,
    save_pruned,
)

ANIMALS = ["Amur leopard", "Hawksbill turtle", "Axolotl", "Snow leopard", "Kakapo", "Vaquita", "Saola", "Javan rhino",
           "Sumatran orangutan", "Mountain gorilla", "Blue whale", "Red panda", "Pangolin", "Bornean elephant"]
PLACES = ["forests", "reefs", "lakes", "mountains", "islands", "gulfs", "valleys", "swamps", "jungles", "highlands",
          "oceans", "bamboo groves", "savannas", "lowlands"]


def _example(i: int, status: str = "accepted", confidence: float | None = None, origin: str = "llm") -> Example:
    animal, place = ANIMALS[i % len(ANIMALS)], PLACES[(i * 5) % len(PLACES)]
    text = f"The {animal} number {i} lives in {place}."
    start = text.index(animal)
    where = text.index(place)
    entities = [Entity(start=start, end=start + len(animal), label="SPECIES"), Entity(start=where, end=where + len(place), label="HABITAT")]
    return Example(text=text, entities=entities, source=Source(origin=origin, confidence=confidence), review=Review(status=status))


@pytest.fixture
def splits() -> dict[str, list[Example]]:
    return {
        "train": [_example(i) for i in range(20)],
        "dev": [_example(100 + i) for i in range(3)],
        "test": [_example(200 + i) for i in range(3)],
    }


def _scores(examples: list[Example]) -> dict[str, float]:
    return {e.id: float((i * 7) % 11) for i, e in enumerate(examples)}


@pytest.mark.parametrize("method", ["random", "teacher_loss", "el2n", "disagreement"])
@pytest.mark.parametrize("fraction", [0.1, 0.3, 0.5, 0.7, 1.0])
def test_each_method_keeps_exactly_the_fraction_and_records_reasons(splits, method, fraction):
    scores = _scores(splits["train"])
    step = ToFraction(fraction, method, scores=None if method == "random" else scores, seed=3)
    result = prune_splits(splits, [step])
    kept, removed = result.splits["train"], result.removed
    assert len(kept) == round(fraction * 20)
    assert len(kept) + len(removed) == 20
    assert {e.id for e in kept}.isdisjoint(r.example.id for r in removed)
    assert all(r.step == "fraction" and r.reason.startswith(f"fraction {fraction:g} by {method}") for r in removed)
    assert result.splits["dev"] == splits["dev"] and result.splits["test"] == splits["test"]


@pytest.mark.parametrize("method", ["random", "teacher_loss", "el2n", "disagreement"])
def test_pruning_is_seeded(splits, method):
    scores = {e.id: 1.0 for e in splits["train"]}  # all tied: only the seed decides
    def kept(seed):
        step = ToFraction(0.5, method, scores=None if method == "random" else scores, seed=seed)
        return [e.id for e in prune_splits(splits, [step]).splits["train"]]
    assert kept(1) == kept(1)
    assert kept(1) != kept(2)


def test_score_methods_keep_the_hardest_or_the_easiest(splits):
    train = splits["train"]
    scores = {e.id: float(i) for i, e in enumerate(train)}
    hard = ToFraction(0.25, "el2n", scores=scores)(train)[0]
    easy = ToFraction(0.25, "teacher_loss", scores=scores, keep="easy")(train)[0]
    assert sorted(scores[e.id] for e in hard) == [15, 16, 17, 18, 19]
    assert sorted(scores[e.id] for e in easy) == [0, 1, 2, 3, 4]
    assert [e.id for e in hard] == [e.id for e in train[15:]]  # kept in input order


def test_missing_scores_and_bad_fractions_are_clear_errors(splits):
    train = splits["train"]
    with pytest.raises(DistillError, match=f"no score for example {train[0].id}"):
        ToFraction(0.5, "el2n", scores={})(train)
    with pytest.raises(DistillError, match="needs per-example scores"):
        ToFraction(0.5, "disagreement")
    with pytest.raises(DistillError, match=r"fraction must be in \(0, 1\]"):
        ToFraction(0.0)
    with pytest.raises(DistillError, match="pruning by clever needs per-example scores"):  # any name of given scores is a method
        ToFraction(0.5, "clever")


def test_cleaning_steps_compose_and_record_every_removal(splits):
    train = splits["train"]
    train[1] = train[1].model_copy(update={"review": Review(status="rejected", annotator="ann@x")})
    train[2] = train[2].model_copy(update={"source": Source(origin="llm", confidence=0.2)})
    train[3] = train[3].model_copy(update={"review": Review(status="pending")})
    duplicate = Example(text=train[0].text.upper(), source=Source(origin="other"))
    leak = Example(text=splits["test"][0].text, source=Source(origin="elsewhere"))
    splits["train"] = train + [duplicate, leak]
    result = prune_splits(splits, [Dedup(1.0), DropRejected(drop_pending=True), MinConfidence(0.5)])
    reasons = {r.example.id: r.reason for r in result.removed}
    assert reasons[leak.id].startswith(f"eval_overlap with test example {splits['test'][0].id}")
    assert reasons[duplicate.id] == f"exact_duplicate of {train[0].id}"
    assert reasons[train[1].id] == "review_rejected by ann@x"
    assert reasons[train[3].id] == "review_pending"
    assert reasons[train[2].id] == "low_confidence 0.200 < 0.5"
    assert len(result.splits["train"]) == 17
    report = result.report()
    assert [s["step"] for s in report["steps"]] == ["eval_overlap", "dedup", "rejected", "confidence"]
    assert [s["removed"] for s in report["steps"]] == [1, 1, 2, 1]
    assert report["removed_by_reason"] == {"eval_overlap": 1, "exact_duplicate": 1, "low_confidence": 1, "review_pending": 1, "review_rejected": 1}
    assert result.splits["test"] == splits["test"]


def test_class_balance_caps_big_groups_and_keeps_rare_labels():
    common = [_example(i) for i in range(12)]
    rare = []
    for i in range(2):
        text = f"Kakapo pair {i} lays two eggs."
        s = text.index("lays two eggs")
        rare.append(Example(text=text, entities=[Entity(start=0, end=6, label="SPECIES"), Entity(start=s, end=s + 13, label="BREEDING")]))
    kept, removed = ClassBalance(max_ratio=2, seed=0)(common + rare)
    assert all(e in kept for e in rare)
    assert len(kept) == 2 + 4 and len(removed) == 8
    assert all(reason.startswith("class_balance group ") and "capped at 4 of 12" in reason for _, reason in removed)
    assert ClassBalance(max_ratio=2, seed=0)(common + rare) == (kept, removed)


def test_save_pruned_writes_datasetdict_removed_and_report(splits, tmp_path):
    scores = _scores(splits["train"])
    result = prune_splits(splits, [parse_step("dedup:1"), parse_step("fraction:0.3:teacher_loss:easy", {"teacher_loss": scores})])
    out = save_pruned(result, tmp_path / "pruned")
    loaded = load_splits(out)
    assert [e.id for e in loaded["train"]] == [e.id for e in result.splits["train"]]
    assert loaded["dev"] == splits["dev"] and loaded["test"] == splits["test"]
    removed = read_removed(out / "removed.jsonl")
    assert len(removed) == 14 and {r.example.id for r in removed} | {e.id for e in loaded["train"]} == {e.id for e in splits["train"]}
    assert all("by teacher_loss" in r.reason for r in removed)
    report = json.loads((out / "report.json").read_text())
    assert report["splits"] == {"train": 6, "dev": 3, "test": 3} and report["fraction_kept"] == 0.3


@pytest.mark.parametrize("spec", ["shrink", "fraction", "fraction:abc", "fraction:0.5:el2n:medium", "confidence:x"])
def test_bad_step_specs_are_clear_errors(spec):
    with pytest.raises(DistillError, match="pruning step|unknown pruning"):
        parse_step(spec, scores={"el2n": {}})


def test_prune_run_cleans_then_keeps_the_fraction(splits, tmp_path):
    splits["train"][4] = splits["train"][4].model_copy(update={"review": Review(status="rejected")})
    report = prune_run(splits, tmp_path / "pruned", PruneSettings(fraction=0.5, near_duplicate_threshold=1.0, seed=1))
    assert [(s["step"], s["after"]) for s in report["steps"]] == [("eval_overlap", 20), ("dedup", 20), ("rejected", 19), ("fraction", 10)]
    assert len(load_splits(tmp_path / "pruned")["train"]) == 10
    with pytest.raises(DistillError, match="needs per-example scores"):
        prune_run(splits, tmp_path / "p2", PruneSettings(fraction=0.5, method="el2n"))
    scores = _scores(splits["train"])
    report = prune_run(splits, tmp_path / "p3", PruneSettings(fraction=0.5, method="el2n", near_duplicate_threshold=1.0), scores=scores)
    kept = load_splits(tmp_path / "p3")["train"]
    dropped = {e.id for e in splits["train"] if e.review.status != "rejected"} - {e.id for e in kept}
    assert report["steps"][-1]["after"] == 10 and min(scores[e.id] for e in kept) >= max(scores[i] for i in dropped)  # the hardest kept
    assert json.loads((tmp_path / "p3" / "scores.json").read_text()) == {"el2n": scores}


def test_a_new_step_is_one_registration(splits, monkeypatch):
    monkeypatch.setattr("distill_ner.data.prune.STEPS", __import__("distill_ner.data.prune", fromlist=["STEPS"]).STEPS.copy())
    register_step("short", lambda args, scores, seed: ShortTexts(int(args[0])))
    result = prune_splits(splits, [parse_step("short:30")])
    assert result.steps[-1]["step"] == "short" and all(len(e.text) <= 30 for e in result.splits["train"])
    assert all(r.reason == "longer than 30 characters" for r in result.removed if r.step == "short")


@dataclass
class ShortTexts:
    """A step as a user would write one: keeps texts up to `limit` characters."""

    limit: int
    name: str = "short"

    def __call__(self, examples):
        return [e for e in examples if len(e.text) <= self.limit], [(e, f"longer than {self.limit} characters") for e in examples if len(e.text) > self.limit]


def test_prune_command_writes_pruned_splits_and_reasons(splits, tmp_path):
    from typer.testing import CliRunner

    from distill_ner.data.formats import save_splits
    from distill_ner.flows.cli import app

    save_splits(splits, tmp_path / "verified")
    scores = tmp_path / "scores.json"
    scores.write_text(json.dumps({"el2n": _scores(splits["train"])}))
    runner = CliRunner()
    result = runner.invoke(app, ["prune", str(tmp_path / "verified"), "--out", str(tmp_path / "pruned"), "--step", "dedup:1",
                                 "--step", "fraction:0.5:el2n", "--scores", str(scores)])
    assert result.exit_code == 0, result.output
    assert "fraction: 20 -> 10" in result.output
    assert len(load_splits(tmp_path / "pruned")["train"]) == 10
    assert len(read_removed(tmp_path / "pruned" / "removed.jsonl")) == 10
    failed = runner.invoke(app, ["prune", str(tmp_path / "verified"), "--out", str(tmp_path / "p2"), "--step", "fraction:0.5:el2n"])
    assert isinstance(failed.exception, DistillError) and "pass --teacher or --scores" in str(failed.exception)
