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
PACKAGES = ("data", "annotators", "trainers", "flows")
ALLOWED = {  # package -> packages it may import
    "data": {"data"},
    "annotators": {"data", "annotators"},
    "trainers": {"data", "trainers"},
    "flows": set(PACKAGES),
}
DEMO_PARTS = {"annotators.mock_llm", "annotators.simulate"}
CLI_MODULES = {"annotators.cli", "annotators.review_cli"}


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


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
        found |= {name for name in names if name in known and name.split(".")[0] in PACKAGES}
    return found


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    """Project module -> the project modules it imports (package `__init__`s excluded as targets)."""
    files = {module_name(p, root): p for package in PACKAGES for p in (root / package).rglob("*.py")}
    known = set(files) - set(PACKAGES)
    return {name: project_imports(path, known) - {name} for name, path in files.items()}


def layer_violations(graph: dict[str, set[str]]) -> list[str]:
    """Imports that point up or across the layers, and demo parts imported outside flows/ and the CLIs."""
    out = []
    for module, targets in sorted(graph.items()):
        package = module.split(".")[0]
        for target in sorted(targets):
            if target.split(".")[0] not in ALLOWED[package]:
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


def test_there_is_no_import_cycle() -> None:
    assert find_cycle(import_graph()) == []


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"data/a.py": "from trainers.b import x\n", "trainers/b.py": "x = 1\n"}, ["data.a -> trainers.b"]),
        ({"annotators/a.py": "def f():\n    import trainers.b\n", "trainers/b.py": ""}, ["annotators.a -> trainers.b"]),
        ({"trainers/a.py": "from flows.b import y\n", "flows/b.py": "y = 2\n"}, ["trainers.a -> flows.b"]),
        ({"annotators/a.py": "from annotators.mock_llm import M\n", "annotators/mock_llm.py": "M = 1\n"}, ["annotators.a -> annotators.mock_llm (a demo part)"]),
        ({"flows/a.py": "from annotators.simulate import s\nfrom trainers.b import t\n", "annotators/simulate.py": "", "trainers/b.py": ""}, []),
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
    (tmp_path / "trainers/a.py").write_text("from trainers.b import f\n")
    (tmp_path / "trainers/b.py").write_text("def f():\n    from trainers.a import g\n")
    assert set(find_cycle(import_graph(tmp_path))) == {"trainers.a", "trainers.b"}
