"""`distill generate` and `distill mock-llm` (registered in flows/cli.py)."""

from __future__ import annotations

import os
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from distill_ner.annotators.llm_settings import STRUCTURED_MODES, client_default
from distill_ner.data.errors import DistillError, validation_message
from distill_ner.data.run_layout import RunLayout

if TYPE_CHECKING:
    from distill_ner.annotators.grounding import GroundingRules
    from distill_ner.annotators.llm import LLMConfig

T = TypeVar("T")

app = typer.Typer()
console = Console()


@app.command()
def generate(
    out: Path = typer.Option(..., help="Run folder: generated.jsonl, rejected.jsonl, generate_summary.json, llm_cache/."),
    spec: str = typer.Option("species", help="Task spec: a name in data/specs/ or a YAML path."),
    n: int = typer.Option(500, min=1, help="Examples to ask for."),
    base_url: str = typer.Option(None, help="OpenAI-compatible base URL (default: $OPENAI_BASE_URL). The key comes from $OPENAI_API_KEY."),
    model: str = typer.Option(None, help="Model name (default: $DISTILL_LLM_MODEL, else gpt-4o-mini; mock-species with --mock)."),
    concurrency: int = typer.Option(client_default("concurrency"), min=1, help="Requests in flight at once."),
    k_samples: int = typer.Option(1, min=1, help="Annotations per text; k > 1 gives entity and example confidence from agreement."),
    seed: int = typer.Option(0, help="Topic order and LLM seed."),
    temperature: float = typer.Option(None, help=f"Sampling temperature (default {client_default('temperature')})."),
    timeout: float = typer.Option(None, min=0.001, help=f"Seconds for one request (default {client_default('timeout'):g})."),
    max_retries: int = typer.Option(None, min=0, help=f"Retries of one request on 429, 5xx and timeouts (default {client_default('max_retries')}; a timeout retries with another seed)."),
    max_tokens: int = typer.Option(None, min=1, help="Tokens one answer may take (default 200 + 400 per example asked for in the call)."),
    reasks: int = typer.Option(None, min=0, help=f"Re-asks after a malformed or cut-off answer (default {client_default('reasks')})."),
    structured: str = typer.Option(
        None, help=f"How to ask for JSON: {', '.join(STRUCTURED_MODES)} (none: the schema in the prompt; default {client_default('structured')}); steps down by itself if the server refuses."
    ),
    schema_bounds: bool = typer.Option(True, "--schema-bounds/--no-schema-bounds", help="Bound the schema: exactly the asked number of examples, at most 16 entities and relations."),
    examples_per_call: int = typer.Option(None, min=1, max=50, help="Examples asked for in one call (default: the spec's examples_per_call)."),
    max_failure_share: float = typer.Option(0.5, min=0.0, max=1.0, help="Share of rejected examples above which the run fails (exit 1, earlier outputs kept)."),
    min_entities: int = typer.Option(None, min=0, help="Examples with fewer entities are rejected as no_entities (default 1)."),
    max_entity_share: float = typer.Option(None, min=0.01, max=1.0, help="An entity covering more of the text is rejected as entity_too_long (default 0.9)."),
    max_entity_words: int = typer.Option(None, min=1, help="An entity of more words is rejected as entity_too_long (default 32)."),
    label_case: str = typer.Option(None, help="fix (default: a label right but for its case is fixed and counted) or reject."),
    few_shot_similarity: float = typer.Option(None, min=0.01, max=1.0, help="A text this similar to the prompt's example is rejected as copied_few_shot (default 0.85)."),
    cache_dir: Path = typer.Option(None, help="LLM answer cache (default: OUT/llm_cache); share it between runs to reuse answers."),
    dedup_threshold: float = typer.Option(0.9, min=0.0, max=1.0, help="Near-duplicate similarity (0-1) above which a text is dropped; 1 = exact only."),
    mock: bool = typer.Option(False, "--mock", help="Start the mock LLM in-process (truth in OUT/mock_truth.jsonl) and use it."),
) -> None:
    """Generate annotated examples with an LLM: ground, validate and dedup them, and count every rejection."""
    from distill_ner.annotators.generate import generate as run_generate
    from distill_ner.annotators.mock_llm import MockConfig
    from distill_ner.data.spec import load_spec

    task = load_spec(spec)
    if structured not in (None, *STRUCTURED_MODES):
        raise DistillError(f"--structured must be {', '.join(STRUCTURED_MODES)} (got {structured!r})")
    settings = dict(
        concurrency=concurrency,
        temperature=temperature,
        timeout=timeout,
        max_retries=max_retries,
        max_tokens=max_tokens,
        reasks=reasks,
        structured=structured,
        schema_bounds=schema_bounds,
    )
    checked = llm_config(base_url=base_url, **settings)  # bad values fail here, before anything starts
    rules = grounding_rules(min_entities=min_entities, max_entity_share=max_entity_share, max_entity_words=max_entity_words, label_case=label_case, few_shot_similarity=few_shot_similarity)
    if not mock and not checked.base_url and not checked.api_key:
        raise DistillError("no LLM to ask: give --base-url (or set OPENAI_BASE_URL; the key goes in OPENAI_API_KEY), or --mock")
    mock_config = MockConfig(truth_file=RunLayout(out).mock_truth, seed=seed) if mock else None

    def run(config: LLMConfig, on_done: Callable[[Any], None], on_event: LiveCounts) -> Any:
        return run_generate(
            task, n, out, config, seed=seed, k_samples=k_samples, cache_dir=cache_dir, dedup_threshold=dedup_threshold,
            on_done=on_done, rules=rules, max_failure_share=max_failure_share, examples_per_call=examples_per_call, on_event=on_event,
        )

    summary = run_with_llm(out, "generate", n, mock_config, base_url, model, settings, run)
    print_summary(summary, out, "generate")


@app.command()
def annotate(
    input: Path = typer.Option(..., "--input", help="Your texts: .txt (one a line; --paragraphs), .jsonl (--field), .csv (--column), .conll/.bio/.iob/.tsv or .spacy."),
    out: Path = typer.Option(..., help="Run folder: generated.jsonl, rejected.jsonl, generate_summary.json, llm_cache/ (what review push, split and train read)."),
    spec: str = typer.Option("species", help="Task spec: a name in data/specs/ or a YAML path."),
    field: str = typer.Option("text", help=".jsonl: the field that holds the text."),
    column: str = typer.Option("text", help=".csv: the column that holds the text."),
    paragraphs: bool = typer.Option(False, "--paragraphs", help=".txt: blank-line-separated paragraphs are the texts (default: one text a line)."),
    window_chars: int = typer.Option(1000, min=20, help="Longest window of whole sentences sent in one request; longer documents are split, never truncated."),
    base_url: str = typer.Option(None, help="OpenAI-compatible base URL (default: $OPENAI_BASE_URL). The key comes from $OPENAI_API_KEY."),
    model: str = typer.Option(None, help="Model name (default: $DISTILL_LLM_MODEL, else gpt-4o-mini; mock-species with --mock)."),
    concurrency: int = typer.Option(client_default("concurrency"), min=1, help="Requests in flight at once."),
    k_samples: int = typer.Option(1, min=1, help="Annotations per window; k > 1 gives entity and example confidence from agreement."),
    seed: int = typer.Option(0, help="LLM seed."),
    temperature: float = typer.Option(None, help=f"Sampling temperature (default {client_default('temperature')})."),
    timeout: float = typer.Option(None, min=0.001, help=f"Seconds for one request (default {client_default('timeout'):g})."),
    max_retries: int = typer.Option(None, min=0, help=f"Retries of one request on 429, 5xx and timeouts (default {client_default('max_retries')})."),
    max_tokens: int = typer.Option(None, min=1, help="Tokens one answer may take (default 600)."),
    reasks: int = typer.Option(None, min=0, help=f"Re-asks after a malformed or cut-off answer (default {client_default('reasks')})."),
    structured: str = typer.Option(None, help=f"How to ask for JSON: {', '.join(STRUCTURED_MODES)} (default {client_default('structured')}); steps down by itself if refused."),
    max_failure_share: float = typer.Option(0.5, min=0.0, max=1.0, help="Share of rejected windows above which the run fails (exit 1, earlier outputs kept)."),
    min_entities: int = typer.Option(None, min=0, help="Windows with fewer entities are rejected as no_entities (default 0: text that names nothing is kept)."),
    max_entity_words: int = typer.Option(None, min=1, help="An entity of more words is dropped as entity_too_long (default 32)."),
    label_case: str = typer.Option(None, help="fix (default: a label right but for its case is fixed and counted) or reject."),
    cache_dir: Path = typer.Option(None, help="LLM answer cache (default: OUT/llm_cache)."),
    dedup_threshold: float = typer.Option(1.0, min=0.0, max=1.0, help="Near-duplicate similarity above which a text is dropped; 1 (default) = exact duplicates only."),
    mock: bool = typer.Option(False, "--mock", help="Start the mock LLM in-process (it annotates any text from its gazetteer) and use it."),
    replay: Path = typer.Option(None, help="Start the mock LLM in-process replaying this gold file (JSONL, CoNLL, DocBin) through its error model; its truth goes to OUT/mock_truth.jsonl for `review simulate`."),
) -> None:
    """Annotate your own texts with an LLM: windows of sentences, mentions grounded in the text, provenance kept."""
    from distill_ner.annotators.generate import annotate as run_annotate
    from distill_ner.annotators.mock_llm import MockConfig
    from distill_ner.data.corpus import WindowStats, read_documents, windows
    from distill_ner.data.spec import load_spec

    task = load_spec(spec)
    if structured not in (None, *STRUCTURED_MODES):
        raise DistillError(f"--structured must be {', '.join(STRUCTURED_MODES)} (got {structured!r})")
    settings = dict(concurrency=concurrency, temperature=temperature, timeout=timeout, max_retries=max_retries, max_tokens=max_tokens, reasks=reasks, structured=structured)
    checked = llm_config(base_url=base_url, **settings)  # bad values fail here, before anything starts
    rules = grounding_rules(min_entities=min_entities, max_entity_words=max_entity_words, label_case=label_case)
    if not (mock or replay) and not checked.base_url and not checked.api_key:
        raise DistillError("no LLM to ask: give --base-url (or set OPENAI_BASE_URL; the key goes in OPENAI_API_KEY), --mock or --replay GOLD")
    if replay is not None and not replay.exists():
        raise DistillError(f"{replay}: gold file not found (--replay)")
    stats = WindowStats()
    chunks = windows(read_documents(input, field=field, column=column, paragraphs=paragraphs), window_chars, stats)
    mock_config = None
    if mock or replay:
        mock_config = MockConfig(truth_file=RunLayout(out).mock_truth, seed=seed, **({"replay": replay} if replay else {}))

    def run(config: LLMConfig, on_done: Callable[[Any], None], on_event: LiveCounts) -> Any:
        return run_annotate(
            task, chunks, out, config, seed=seed, k_samples=k_samples, cache_dir=cache_dir, dedup_threshold=dedup_threshold, on_done=on_done,
            rules=rules, max_failure_share=max_failure_share, on_event=on_event, documents=stats.documents, split_sentences=stats.split_sentences,
        )

    summary = run_with_llm(out, "annotate", len(chunks), mock_config, base_url, model, settings, run)
    print_summary(summary, out, "annotate")


def run_with_llm(
    out: Path, command: str, total: int, mock_config: Any, base_url: str | None, model: str | None, settings: dict[str, Any],
    run: Callable[[LLMConfig, Callable[[Any], None], LiveCounts], T],
) -> T:
    """Hold the run folder's lock, start the in-process mock when `mock_config` is given, show a
    progress bar of `total` examples and call `run(config, on_done, on_event)`."""
    from distill_ner.annotators.mock_llm import MockLLMServer
    from distill_ner.data.run_lock import run_lock

    with run_lock(out, f"distill {command}"):
        server = MockLLMServer(mock_config) if mock_config is not None else None
        with server or nullcontext():
            config = llm_config(base_url=server.base_url if server else base_url, model=model or (mock_config.model if server else None), **settings)
            columns = (
                TextColumn(f"[bold]{command}"),
                BarColumn(bar_width=24),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                TextColumn("{task.fields[llm]}"),
            )
            with Progress(*columns, console=console, transient=False) as progress:
                bar = progress.add_task(command, total=total, llm="")
                return run(config, lambda outcome: progress.advance(bar, outcome.request.n), LiveCounts(progress, bar))


def print_summary(summary: Any, out: Path, command: str) -> None:
    """The closing table of a `generate` or `annotate` run: kept, rejected by reason, calls, tokens."""
    table = Table(title=f"distill {command} -> {out}", show_header=False)
    if summary.origin == "corpus":
        table.add_row("documents / windows", f"{summary.documents} / {summary.requested}")
        if summary.split_sentences:
            table.add_row("sentences cut at a space (longer than a window)", str(summary.split_sentences))
    else:
        table.add_row("requested", str(summary.requested))
    table.add_row("kept", f"[green]{summary.kept}[/green]")
    for reason, count in summary.rejected.items():
        table.add_row(f"rejected: {reason}", str(count))
    table.add_row("duplicates", str(summary.duplicates))
    table.add_row("LLM calls made", str(summary.calls))
    table.add_row("taken from cache", str(summary.cache_hits))
    for reason, count in summary.repaired.items():
        table.add_row(f"repaired: {reason}", str(count))
    table.add_row("retries / timeouts / re-asks", f"{summary.retries} / {summary.timeouts} / {summary.reasks}")
    table.add_row("structured output", summary.structured_mode)
    for note in summary.fallbacks:
        table.add_row("  stepped down", note)
    table.add_row("tokens (prompt + completion)", f"{summary.prompt_tokens} + {summary.completion_tokens}")
    if summary.mean_confidence is not None:
        table.add_row("mean confidence", f"{summary.mean_confidence:.3f}")
    table.add_row("seconds", f"{summary.seconds:.1f}")
    console.print(table)


class LiveCounts:
    """Counts the LLM client's events and shows them in the progress bar as they happen."""

    def __init__(self, progress: Progress, bar: TaskID) -> None:
        self.progress, self.bar = progress, bar
        self.counts = {"sent": 0, "answered": 0, "retry": 0, "timeout": 0, "reask": 0, "fallback": 0}

    def __call__(self, event: str) -> None:
        self.counts[event] = self.counts.get(event, 0) + 1
        c = self.counts
        shown = [("retries", c["retry"]), ("timeouts", c["timeout"]), ("re-asks", c["reask"]), ("step-downs", c["fallback"])]
        text = " · ".join([f"in flight {c['sent'] - c['answered']}"] + [f"{name} {count}" for name, count in shown if count])
        self.progress.update(self.bar, llm=text)


def validated(build: Callable[..., T], **values: Any) -> T:
    """`build(**values)`; a bad value becomes one line naming its flag (`max_tokens` -> `--max-tokens`)."""
    from pydantic import ValidationError

    try:
        return build(**values)
    except ValidationError as err:
        raise DistillError(validation_message(err, {k: "--" + k.replace("_", "-") for k in values})) from None


def grounding_rules(**values: Any) -> GroundingRules:
    """`GroundingRules` from CLI flags (None: the default)."""
    from distill_ner.annotators.grounding import GroundingRules

    return validated(GroundingRules, **{k: v for k, v in values.items() if v is not None})


def llm_config(**values: Any) -> LLMConfig:
    """`LLMConfig.from_env` from CLI flags (None: the environment or the default)."""
    from distill_ner.annotators.llm import LLMConfig

    return validated(LLMConfig.from_env, **values)


@app.command("mock-llm")
def mock_llm(
    port: int = typer.Option(8008, help="Port on 127.0.0.1 (0: any free port)."),
    host: str = typer.Option("127.0.0.1", help="Interface to listen on."),
    seed: int = typer.Option(0, help="Same request + seed -> same answer."),
    model: str = typer.Option("mock-species", help="Model name listed on /v1/models."),
    truth_file: Path = typer.Option(Path("runs/mock-llm/truth.jsonl"), help="Where the true annotation of each example goes (JSONL)."),
    error_rate: float = typer.Option(0.25, help="Share of answers with annotation errors (span drift, wrong labels, missed or invented entities, relations)."),
    factual_error_rate: float = typer.Option(0.25, help="Share of texts with a factual error, which a careful reviewer rejects (the paper's GPT-4: 74% correct)."),
    fault_rate: float = typer.Option(0.0, help="Share of requests with a fault, spread over 429, 500, delay, malformed, truncated."),
    rate_limit: float = typer.Option(None, help="Share answered 429 (overrides --fault-rate's share)."),
    server_error: float = typer.Option(None, help="Share answered 500."),
    delay: float = typer.Option(None, help="Share answered after --delay-s."),
    malformed: float = typer.Option(None, help="Share answered with invalid JSON."),
    truncated: float = typer.Option(None, help="Share cut off (finish_reason=length)."),
    unknown_label: float = typer.Option(0.0, help="Share of answers with a label outside the schema."),
    delay_s: float = typer.Option(0.5, help="Seconds of a delay fault."),
    latency_s: float = typer.Option(0.0, help="Seconds added to every answer (simulated generation time)."),
    require_key: bool = typer.Option(False, help="Require the API key in $DISTILL_MOCK_API_KEY (401 otherwise)."),
    no_json_schema: bool = typer.Option(False, "--no-json-schema", help="Answer 400 to json_schema response formats."),
    replay: Path = typer.Option(None, help="Gold file (JSONL, CoNLL or DocBin): annotate requests for its texts get its gold, with the --replay-* errors, and the gold goes to the truth file."),
    replay_drift: float = typer.Option(None, help="Per mention: a boundary moved by one word (default 0.08; answers to texts the mock did not write)."),
    replay_missed: float = typer.Option(None, help="Per mention: left out with its relations (default 0.07)."),
    replay_mislabelled: float = typer.Option(None, help="Per mention: another label of the request's schema (default 0.04)."),
    replay_invented: float = typer.Option(None, help="Per text: a new mention on words that are no entity (default 0.15)."),
) -> None:
    """Serve the mock LLM (OpenAI chat API) until Ctrl-C."""
    from distill_ner.annotators.mock_llm import MockConfig, MockLLMServer

    key = os.environ.get("DISTILL_MOCK_API_KEY") if require_key else None
    if require_key and not key:
        raise DistillError("--require-key: set DISTILL_MOCK_API_KEY to the key the mock should accept")
    overrides = {"rate_limit": rate_limit, "server_error": server_error, "delay": delay, "malformed": malformed, "truncated": truncated}
    overrides |= {"replay_drift": replay_drift, "replay_missed": replay_missed, "replay_mislabelled": replay_mislabelled, "replay_invented": replay_invented}
    config = validated(
        lambda **values: MockConfig.with_fault_rate(fault_rate, **values),
        seed=seed,
        model=model,
        truth_file=truth_file,
        error_rate=error_rate,
        factual_error_rate=factual_error_rate,
        unknown_label=unknown_label,
        delay_s=delay_s,
        latency_s=latency_s,
        api_key=key,
        json_schema=not no_json_schema,
        replay=replay,
        **{k: v for k, v in overrides.items() if v is not None},
    )
    server = MockLLMServer(config, host=host, port=port)
    replaying = f", replaying {len(server.mock.replay)} gold texts of {replay}" if server.mock.replay else ""
    server.serve(announce=lambda url: console.print(f"mock LLM ({model}, seed {seed}{replaying}) on {url} (truth -> {truth_file}); Ctrl-C stops it"))
