"""The package layers: imports point one way, and no module imports itself round a cycle.

`data` <- `annotators` and `trainers` (never each other) <- `flows`. Imports inside functions
count as much as those at the top: a cycle that only works because an import is deferred is
still a cycle. The mock LLM and the simulated annotator are demo parts: only flows/ and the
command-line modules may import them.
"""

from __future__ import annotations

import ast
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NAMESPACE = "distill_ner"  # installed, the four folders are distill_ner.data, distill_ner.annotators, ...
PACKAGES = ("data", "annotators", "trainers", "flows")
ALLOWED = {  # package -> packages it may import
    "data": {"data"},
    "annotators": {"data", "annotators"},
    "trainers": {"data", "trainers"},
    "flows": set(PACKAGES),
}
DEMO_PARTS = {f"{NAMESPACE}.annotators.mock_llm", f"{NAMESPACE}.annotators.simulate"}
CLI_MODULES = {f"{NAMESPACE}.annotators.cli", f"{NAMESPACE}.annotators.review_cli"}


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = [NAMESPACE, *path.relative_to(root).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_of(module: str) -> str:
    """`distill_ner.trainers.kd.hinton` -> `trainers`."""
    return module.split(".")[1]


def project_imports(path: Path, known: set[str]) -> set[str]:
    """Every project module `path` imports, at any depth of the file (functions included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        found |= {name for name in names if name in known}
    return found


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    """Project module -> the project modules it imports (package `__init__`s excluded as targets)."""
    files = {module_name(p, root): p for package in PACKAGES for p in (root / package).rglob("*.py")}
    known = set(files) - {f"{NAMESPACE}.{package}" for package in PACKAGES}
    return {name: project_imports(path, known) - {name} for name, path in files.items()}


def layer_violations(graph: dict[str, set[str]]) -> list[str]:
    """Imports that point up or across the layers, and demo parts imported outside flows/ and the CLIs."""
    out = []
    for module, targets in sorted(graph.items()):
        package = package_of(module)
        for target in sorted(targets):
            if package_of(target) not in ALLOWED[package]:
                out.append(f"{module} -> {target}")
            elif target in DEMO_PARTS and package != "flows" and module not in CLI_MODULES | DEMO_PARTS:
                out.append(f"{module} -> {target} (a demo part)")
    return out


def find_cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import cycle as a list of modules, or [] when the graph has none."""
    try:
        TopologicalSorter(graph).prepare()
    except CycleError as err:
        return list(err.args[1])
    return []


def test_imports_point_down_the_layers() -> None:
    assert layer_violations(import_graph()) == []


def bare_imports(root: Path = ROOT) -> list[str]:
    """Imports of our folders by their bare names (`from data.x import y`): installed, those are
    someone else's `data`, so everything, tests and bench scripts too, imports `distill_ner.data.x`."""
    out = []
    for folder in (*PACKAGES, "tests", "bench", "scripts"):
        for path in sorted((root / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                    [node.module] if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 else []
                out += [f"{path.relative_to(root)}: {name}" for name in names if name.split(".")[0] in PACKAGES]
    return out


def test_nothing_imports_our_folders_by_their_bare_names() -> None:
    assert bare_imports() == []


def test_the_check_sees_a_bare_import(tmp_path: Path) -> None:
    for folder in (*PACKAGES, "tests", "bench", "scripts"):
        (tmp_path / folder).mkdir()
    (tmp_path / "bench/b.py").write_text("from data.errors import DistillError\n")
    assert bare_imports(tmp_path) == ["bench/b.py: data.errors"]


def test_there_is_no_import_cycle() -> None:
    assert find_cycle(import_graph()) == []


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"data/a.py": "from distill_ner.trainers.b import x\n", "trainers/b.py": "x = 1\n"}, ["distill_ner.data.a -> distill_ner.trainers.b"]),
        ({"annotators/a.py": "def f():\n    import distill_ner.trainers.b\n", "trainers/b.py": ""}, ["distill_ner.annotators.a -> distill_ner.trainers.b"]),
        ({"trainers/a.py": "from distill_ner.flows.b import y\n", "flows/b.py": "y = 2\n"}, ["distill_ner.trainers.a -> distill_ner.flows.b"]),
        ({"annotators/a.py": "from distill_ner.annotators.mock_llm import M\n", "annotators/mock_llm.py": "M = 1\n"},
         ["distill_ner.annotators.a -> distill_ner.annotators.mock_llm (a demo part)"]),
        ({"flows/a.py": "from distill_ner.annotators.simulate import s\nfrom distill_ner.trainers.b import t\n", "annotators/simulate.py": "", "trainers/b.py": ""}, []),
    ],
)
def test_the_check_sees_upward_imports(tmp_path: Path, files: dict[str, str], expected: list[str]) -> None:
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    for package in PACKAGES:
        (tmp_path / package).mkdir(exist_ok=True)
    assert layer_violations(import_graph(tmp_path)) == expected


def test_the_check_sees_a_cycle_made_through_a_function_level_import(tmp_path: Path) -> None:
    for package in PACKAGES:
        (tmp_path / package).mkdir()
    (tmp_path / "trainers/a.py").write_text("from distill_ner.trainers.b import f\n")
    (tmp_path / "trainers/b.py").write_text("def f():\n    from distill_ner.trainers.a import g\n")
    assert set(find_cycle(import_graph(tmp_path))) == {"distill_ner.trainers.a", "distill_ner.trainers.b"}


@pytest.mark.slow
def test_a_type_checker_resolves_every_import() -> None:
    """`pyright` (configured in pyproject.toml) finds the module behind every import of the package,
    its tests and benches, as an editor does: the strict editable install of scripts/setup.sh maps
    `distill_ner.trainers` to `trainers/` with links that a static checker follows, where the
    default editable install's import hook left about 650 imports unresolved."""
    import json
    import subprocess
    import sys

    out = subprocess.run([str(Path(sys.executable).parent / "pyright"), "--outputjson"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    report = json.loads(out.stdout)
    unresolved = [f"{d['file']}:{d['range']['start']['line'] + 1}: {d['message']}" for d in report["generalDiagnostics"] if d.get("rule") in ("reportMissingImports", "reportMissingModuleSource")]
    assert unresolved == [], "\n".join(unresolved[:20])
    assert report["summary"]["filesAnalyzed"] > 100
