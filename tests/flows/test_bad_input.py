"""Bad input, command by command: every case exits non-zero with one line on stderr (no
traceback) naming the problem, and every file that was there before is byte-identical after.

The commands run in-process through `flows.cli.main`, the `distill` entry point itself.
"""

from __future__ import annotations

import http.server
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from distill_ner.annotators.ls_server import free_port
from distill_ner.data.formats import write_jsonl
from distill_ner.flows.cli import main
from tests.fixtures.examples import make_example

SPEC_OK = (Path(__file__).resolve().parents[2] / "data" / "specs" / "species.yaml").read_text()
NOT_WRITABLE = "/proc/distill-no-such-dir/out"  # mkdir fails there, even for root


@dataclass
class Case:
    id: str
    argv: str  # formatted with the world's paths and servers, split on spaces
    says: str  # a piece of the one error line
    env: dict[str, str] = field(default_factory=dict)
    needs: tuple[str, ...] = ()  # "ls": a real Label Studio; "fewer": an unreviewed project; "mock": the mock LLM; "notllm": not an LLM


CASES = [
    # task specs
    Case("spec-missing", "generate --mock --n 5 --out {w}/new --spec {w}/nope.yaml", "spec file not found"),
    Case("spec-folder", "generate --mock --n 5 --out {w}/new --spec {w}", "is a folder"),
    Case("spec-bad-yaml", "generate --mock --n 5 --out {w}/new --spec {w}/broken.yaml", "not valid YAML"),
    Case("spec-not-mapping", "generate --mock --n 5 --out {w}/new --spec {w}/list.yaml", "a spec is a YAML mapping"),
    Case("spec-unknown-label", "generate --mock --n 5 --out {w}/new --spec {w}/badrel.yaml", "unknown entity label 'PLACE'"),
    Case("spec-no-topics", "generate --mock --n 5 --out {w}/new --spec {w}/notopics.yaml", "seed topic list is empty"),
    # numbers out of range, checked before anything starts
    Case("n-zero", "generate --mock --n 0 --out {run}", "'--n'"),
    Case("n-not-a-number", "generate --mock --n many --out {run}", "'--n'"),
    Case("concurrency-zero", "generate --mock --n 5 --concurrency 0 --out {run}", "'--concurrency'"),
    Case("k-samples-zero", "generate --mock --n 5 --k-samples 0 --out {run}", "'--k-samples'"),
    Case("dedup-threshold", "generate --mock --n 5 --dedup-threshold 1.5 --out {run}", "'--dedup-threshold'"),
    Case("timeout-zero", "generate --mock --n 5 --timeout 0 --out {run}", "'--timeout'"),
    Case("retries-negative", "generate --mock --n 5 --max-retries -1 --out {run}", "'--max-retries'"),
    Case("structured-unknown", "generate --mock --n 5 --structured xml --out {run}", "--structured must be"),
    Case("unknown-option", "generate --mock --nn 5 --out {run}", "No such option: --nn"),
    # output paths
    Case("out-is-a-file", "generate --mock --n 5 --out {w}/file", "is a file"),
    Case("out-not-writable", "generate --mock --n 5 --out " + NOT_WRITABLE, "cannot write to this run folder"),
    Case("out-under-a-file", "generate --mock --n 5 --out {w}/file/run", "cannot write to this run folder"),
    Case("mock-truth-not-writable", "mock-llm --port 0 --truth-file " + NOT_WRITABLE + "/truth.jsonl", "cannot write the mock's truth file"),
    # servers and keys: every request fails, the finished run in {run} stays as it was
    Case("llm-unreachable", "generate --n 10 --seed 7 --max-retries 0 --out {run} --base-url http://127.0.0.1:{closed}/v1", "cannot reach the LLM server"),
    Case("llm-not-an-llm", "generate --n 10 --seed 7 --max-retries 0 --out {run} --base-url {notllm}", "answered 404", needs=("notllm",)),
    Case("llm-key-refused", "generate --n 10 --seed 7 --max-retries 0 --out {run} --base-url {mock}", "refused the API key", env={"OPENAI_API_KEY": "sk-wrong"}, needs=("mock",)),
    Case("llm-none-given", "generate --n 10 --out {run}", "no LLM to ask", env={"OPENAI_BASE_URL": "", "OPENAI_API_KEY": ""}),
    Case("mock-key-missing", "mock-llm --port 0 --require-key", "DISTILL_MOCK_API_KEY", env={"DISTILL_MOCK_API_KEY": ""}),
    # your own texts (distill annotate), checked before any call
    Case("annotate-empty-input", "annotate --mock --out {run} --input {w}/empty.txt", "holds no text to annotate"),
    Case("annotate-missing-input", "annotate --mock --out {run} --input {w}/nope.txt", "nope.txt: file not found"),
    Case("annotate-missing-field", "annotate --mock --out {run} --input {w}/rows.jsonl", "has no field 'text' (it has: body)"),
    Case("annotate-missing-column", "annotate --mock --out {run} --input {w}/rows.csv --column text", "has no column 'text' (it has: id, body)"),
    Case("annotate-binary", "annotate --mock --out {run} --input {w}/binary.txt", "is a binary file"),
    Case("annotate-not-utf8", "annotate --mock --out {run} --input {w}/latin1.txt", "latin1.txt:2: is not UTF-8"),
    Case("annotate-unsplittable", "annotate --mock --out {run} --input {w}/long.txt --window-chars 100", "cannot fit a window of 100"),
    Case("annotate-conll-no-text", "annotate --mock --out {run} --input {w}/notext.conll", "holds no text to annotate"),
    Case("annotate-unknown-format", "annotate --mock --out {run} --input {w}/table.xlsx", "unknown input format '.xlsx'"),
    Case("annotate-replay-missing", "annotate --out {run} --input {w}/texts.txt --replay {w}/nogold.jsonl", "nogold.jsonl: gold file not found"),
    Case("annotate-no-llm", "annotate --out {run} --input {w}/texts.txt", "no LLM to ask", env={"OPENAI_BASE_URL": "", "OPENAI_API_KEY": ""}),
    # run configs and overrides
    Case("override-unknown-key", "run -s llm.nn=5", "override -s llm.nn=5"),
    Case("override-bad-value", "run -s train.kd=magic", "override -s train.kd=magic"),
    Case("override-no-test-split", "run -s split.test=0", "override -s split.test=0"),
    Case("override-not-key-value", "run -s llm", "is not key=value"),
    Case("override-not-a-section", "run -s name.x=1", "name is not a section"),
    Case("override-rounds-without-budget", "run -s review.budget=null -s review.rounds=2", "review.rounds > 1 needs review.budget"),
    Case("override-budget-zero", "run -s review.budget=0", "override -s review.budget=0"),
    Case("run-spec-missing", "run -s spec={w}/nope.yaml -s runs_dir={w}/runs", "spec file not found"),
    Case("config-missing", "run -c {w}/nope.yaml", "config file not found"),
    Case("config-bad-yaml", "run -c {w}/broken.yaml", "not valid YAML"),
    Case("run-label-studio-down", "run -s review.label_studio_url=http://127.0.0.1:{closed} -s runs_dir={w}/runs", "Label Studio at http://127.0.0.1:{closed} is not answering", env={"LABEL_STUDIO_API_KEY": "1" * 40}),
    # file formats
    Case("convert-empty-input", "convert {w}/empty.jsonl {w}/target.jsonl", "holds no examples"),
    Case("convert-bad-jsonl-line", "convert {w}/bad.jsonl {w}/out.jsonl", "bad.jsonl:2:"),
    Case("convert-bad-conll", "convert {w}/bad.conll {w}/out.jsonl", "bad.conll:3: expected 'token<TAB>tag'"),
    Case("convert-bad-conll-tag", "convert {w}/badtag.conll {w}/out.jsonl", "tag 'X-SPECIES'"),
    Case("convert-unknown-format", "convert {w}/file {w}/out.jsonl", "unknown format"),
    Case("convert-missing-input", "convert {w}/nope.jsonl {w}/out.jsonl", "file not found"),
    Case("convert-relations-to-conll", "convert {w}/good.jsonl {w}/target.conll", "CoNLL cannot hold relations"),
    Case("convert-target-not-writable", "convert {w}/good.jsonl " + NOT_WRITABLE + "/x.jsonl", "cannot create this folder"),
    Case("convert-target-is-a-folder", "convert {w}/good.jsonl {w}/folder.jsonl", "is a folder"),
    Case("convert-target-unknown-format", "convert {w}/good.jsonl {w}/out.xlsx", "unknown format"),
    # splits
    Case("split-one-example", "split {w}/one.jsonl --out {w}/splits", "cannot fill 3 splits"),
    Case("split-two-examples", "split {w}/two.jsonl --out {w}/splits --dev 0.1 --test 0.1", "cannot fill 3 splits"),
    Case("split-out-is-a-file", "split {w}/good.jsonl --out {w}/file", "is a file"),
    Case("split-blind-none-labelled", "split {w}/good.jsonl --out {w}/splits --blind", "no blind test text"),
    Case("split-out-not-writable", "split {w}/good.jsonl --out " + NOT_WRITABLE, "cannot create this folder"),
    Case("split-fraction-range", "split {w}/good.jsonl --out {w}/splits --dev 1.5", "'--dev'"),
    Case("split-fractions-sum", "split {w}/good.jsonl --out {w}/splits --dev 0.6 --test 0.6", "sum to less than 1"),
    # training, checked before torch is imported
    Case("train-kd-unknown", "train --train {w}/good.jsonl --dev {w}/good.jsonl --kd magic", "--kd 'magic'"),
    Case("train-batch-zero", "train --train {w}/good.jsonl --dev {w}/good.jsonl --batch-size 0", "--batch-size"),
    Case("train-set-unknown", "train --train {w}/good.jsonl --dev {w}/good.jsonl -s patiense=3", "-s patiense=3: use key=value with a training argument"),
    Case("train-set-bad-value", "train --train {w}/good.jsonl --dev {w}/good.jsonl -s subword_labels=last", "-s subword_labels=last"),
    Case("export-format-unknown", "export {w}/folder.jsonl {w}/out --format onnx", "unknown export format 'onnx' (registered: spacy, transformers)"),
    Case("train-nothing-given", "train", "give a run folder, or --train"),
    Case("train-run-without-splits", "train {run}", "no verified/ split"),
    Case("train-silver-dev", "train --train {w}/good.jsonl --dev {w}/silver.jsonl", "the dev split holds 3 silver example(s)"),
    Case("train-missing-file", "train --train {w}/nope.jsonl --dev {w}/good.jsonl", "file not found"),
    Case("sweep-kd-unknown", "sweep {w}/folder.jsonl --teacher {w}/folder.jsonl --out {w}/sweep --kd none,magic", "--kd 'none,magic'"),
    Case("sweep-fraction-range", "sweep {w}/folder.jsonl --teacher {w}/folder.jsonl --out {w}/sweep --fractions 1.0,2", "each kept fraction"),
    Case("prune-not-splits", "prune {w}/folder.jsonl --out {w}/pruned", "not a saved DatasetDict"),
    Case("evaluate-no-model", "evaluate {w}/folder.jsonl --test {w}/good.jsonl", "{w}/folder.jsonl"),
    # Label Studio
    Case("review-token-refused", "review status --run {run}", "refused the API token", env={"LABEL_STUDIO_API_KEY": "0" * 40}, needs=("ls",)),
    Case("review-push-no-run", "review push --run {w}/norun", "generated.jsonl: not found", needs=("ls",)),
    Case("review-pull-unknown-project", "review pull --run {run} --project typo-project", "typo-project", needs=("ls",)),
    Case("review-simulate-no-truth", "review simulate", "give --truth FILE or --run RUN", needs=("ls",)),
    Case("review-unreachable", "review status --run {run}", "is not answering", env={"LABEL_STUDIO_URL": "http://127.0.0.1:{closed}", "LABEL_STUDIO_API_KEY": "2" * 40}),
    Case("review-accuracy-range", "review simulate --run {run} --accuracy 1.5", "'--accuracy'"),
    Case("review-pull-fewer", "review pull --run {run} --project {fewer}", "holds 3", needs=("ls", "fewer")),
]


def _snapshot(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != ".lock" and "last_failure" not in p.parts
    }


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    """A folder holding a finished run and input files of every kind, good and bad."""
    w = tmp_path_factory.mktemp("world")
    good = [
        make_example("The Amur leopard lives in the forests of the Russian Far East.", [("Amur leopard", "SPECIES"), ("forests of the Russian Far East", "HABITAT")], [(0, 1, "live_in")]),
        make_example("Axolotls eat worms in Lake Xochimilco.", [("Axolotls", "SPECIES"), ("worms", "FEEDING"), ("Lake Xochimilco", "HABITAT")], [(0, 1, "feed_on")]),
        make_example("Hawksbill turtles nest on tropical beaches.", [("Hawksbill turtles", "SPECIES"), ("tropical beaches", "HABITAT")]),
    ]
    run = w / "run"
    write_jsonl(run / "generated.jsonl", good)
    write_jsonl(run / "verified.jsonl", good)
    (run / "rejected.jsonl").write_text('{"reason": "duplicate"}\n')
    (run / "generate_summary.json").write_text('{"kept": 3}\n')
    write_jsonl(w / "good.jsonl", good)
    write_jsonl(w / "silver.jsonl", [e.model_copy(update={"review": e.review.model_copy(update={"status": "silver"})}) for e in good])
    write_jsonl(w / "one.jsonl", good[:1])
    write_jsonl(w / "two.jsonl", good[:2])
    write_jsonl(w / "target.jsonl", good)
    (w / "target.conll").write_text("Old\tO\n")
    (w / "empty.jsonl").write_text("")
    (w / "bad.jsonl").write_text(good[0].model_dump_json() + '\n{"text": 3}\n')
    (w / "bad.conll").write_text("The\tO\nleopard\tB-SPECIES\nlonely-token\n")
    (w / "badtag.conll").write_text("The\tO\nleopard\tX-SPECIES\n")
    (w / "file").write_text("not a folder\n")
    (w / "empty.txt").write_text("\n  \n")
    (w / "texts.txt").write_text("The Amur leopard lives in forests.\n")
    (w / "rows.jsonl").write_text('{"body": "The Amur leopard lives in forests."}\n')
    (w / "rows.csv").write_text("id,body\n1,The Amur leopard lives in forests.\n")
    (w / "binary.txt").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    (w / "latin1.txt").write_bytes("The Amur leopard\ncaf\xe9 au lait\n".encode("latin-1"))
    (w / "long.txt").write_text("A" * 300 + "\n")
    (w / "notext.conll").write_text("-DOCSTART-\tO\n\n")
    (w / "table.xlsx").write_bytes(b"PK")
    (w / "folder.jsonl").mkdir()
    (w / "broken.yaml").write_text("name: [unclosed\n")
    (w / "list.yaml").write_text("- a\n- b\n")
    (w / "badrel.yaml").write_text(SPEC_OK.replace("head: [SPECIES]", "head: [PLACE]", 1))
    assert "PLACE" in (w / "badrel.yaml").read_text()
    notopics = __import__("yaml").safe_load(SPEC_OK)
    notopics["topics"] = {"mammals": []}
    (w / "notopics.yaml").write_text(__import__("yaml").safe_dump(notopics))
    return w


@pytest.fixture(scope="module")
def unreviewed_project(label_studio, world) -> str:
    """A project holding the world's run, nobody has reviewed it: a pull has fewer verified examples."""
    from distill_ner.annotators.label_studio import client, ensure_project, push, read_run
    from distill_ner.data.spec import load_spec

    spec, ls, title = load_spec("species"), client(label_studio.connection), "bad-input-unreviewed"
    push(ls, ensure_project(ls, spec, title), read_run(world / "run"), spec, run="run")
    return title


class _NotAnLLM(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802
        self._answer()

    def do_POST(self) -> None:  # noqa: N802
        self._answer()

    def _answer(self) -> None:
        body = b"<html>404 nothing here</html>"
        self.send_response(404)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


class _QuietServer(http.server.ThreadingHTTPServer):
    def handle_error(self, request, client_address) -> None:  # a client that hangs up is no news here
        pass


@pytest.fixture(scope="module")
def not_an_llm():
    server = _QuietServer(("127.0.0.1", 0), _NotAnLLM)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_one_line_and_loses_nothing(case: Case, world, request, monkeypatch, capsys, tmp_path):
    values = {"w": world, "run": world / "run", "closed": free_port()}
    env = {"OPENAI_BASE_URL": "", "OPENAI_API_KEY": "", "DISTILL_LS_DATA_DIR": str(tmp_path / "no-label-studio")}
    if "ls" in case.needs:
        ls = request.getfixturevalue("label_studio")
        env.update(LABEL_STUDIO_URL=ls.url, LABEL_STUDIO_API_KEY=ls.token)
    if "mock" in case.needs:
        values["mock"] = request.getfixturevalue("mock_llm_factory")(api_key="sk-right").base_url
    if "fewer" in case.needs:
        values["fewer"] = request.getfixturevalue("unreviewed_project")
    if "notllm" in case.needs:
        values["notllm"] = request.getfixturevalue("not_an_llm")
    env.update({k: v.format(**values) for k, v in case.env.items()})
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(tmp_path)
    before = _snapshot(world)
    monkeypatch.setattr(sys, "argv", ["distill", *case.argv.format(**values).split()])
    with pytest.raises(SystemExit) as exit_:
        main()
    out, err = capsys.readouterr()
    lines = [line for line in err.splitlines() if line.strip()]
    assert exit_.value.code not in (0, None), out + err
    assert "Traceback" not in err and len(lines) == 1, err
    assert lines[0].startswith("error: ") and case.says.format(**values) in lines[0], lines[0]
    assert _snapshot(world) == before, "an earlier output changed"
    secrets = [v for k, v in env.items() if k.endswith("_KEY") and v]
    assert not any(secret in out + err for secret in secrets), "a key reached the output"


def test_the_table_covers_every_command_family():
    families = {c.argv.split()[0] for c in CASES}
    assert len(CASES) >= 40 and {"generate", "annotate", "mock-llm", "run", "convert", "split", "train", "prune", "evaluate", "review"} <= families
