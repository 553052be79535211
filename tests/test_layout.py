"""Layout rules, checked from the code's own import graph (no Spark).

* The library lives in stage subpackages; only a few cross-cutting modules sit at the top.
* No import cycle among natlink's modules (every import counts, function-level ones too;
  imports under ``if TYPE_CHECKING:`` do not run and do not count).
* No private name (``_x``) is imported from, or used on, another natlink module: not by the
  library, the jobs, the benchmarks, the notebooks nor the tests.
* No module over 600 lines.
* Test files have unique basenames (tests/ has no __init__.py files, so pytest would abort).
"""

from __future__ import annotations

import ast
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "natlink"
TOP_LEVEL = {"__init__", "cli", "columns", "commands", "errors", "version"}
STAGES = {"config", "spark", "store", "provider", "tokens", "keyservice", "linkage", "outputs", "synth", "data"}
MAX_LINES = 600


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in SRC.rglob("*.py")}


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
    return skip


def imports(path: Path, known: dict[str, Path]) -> list[tuple[str, list[str], int]]:
    """(imported natlink module, names taken from it, line) for every import in ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip = _type_checking_nodes(tree)
    found = []
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "natlink" and node.level == 0:
            names = [a.name for a in node.names]
            submodules = [f"{node.module}.{n}" for n in names if f"{node.module}.{n}" in known]
            plain = [n for n in names if f"{node.module}.{n}" not in known]
            if plain or not submodules:
                found.append((node.module, plain, node.lineno))
            found += [(m, [], node.lineno) for m in submodules]
        elif isinstance(node, ast.Import):
            found += [(a.name, [], node.lineno) for a in node.names if a.name.split(".")[0] == "natlink"]
    return found


def import_graph() -> dict[str, set[str]]:
    known = modules()
    return {name: {m for m, _, _ in imports(path, known) if m in known and m != name} for name, path in known.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_cycle_finder_finds_a_constructed_cycle():
    # Hand-made graph: a -> b -> c -> a is one cycle; d -> a hangs off it; e stands alone.
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert cycles(graph) == [["a", "b", "c"]]


def test_no_import_cycles():
    assert cycles(import_graph()) == []


def test_library_is_in_stage_subpackages():
    flat = sorted(p.stem for p in SRC.glob("*.py") if p.stem not in TOP_LEVEL)
    assert flat == [], f"modules outside the stage subpackages: {flat}"
    packages = {p.name for p in SRC.iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert packages <= STAGES, f"unexpected subpackages: {sorted(packages - STAGES)}"


def test_no_module_over_600_lines():
    long = {name: n for name, p in modules().items() if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert long == {}


def _python_files() -> list[Path]:
    return [p for d in ("src", "tests", "jobs", "benchmarks", "notebooks", "deploy") for p in (ROOT / d).rglob("*.py")]


def test_no_private_name_crosses_a_module():
    known = modules()
    problems = []
    for path in _python_files():
        here = module_name(path) if SRC in path.parents else None
        module_aliases: dict[str, str] = {}
        for module, names, line in imports(path, known):
            if module != here:
                problems += [f"{path.relative_to(ROOT)}:{line} imports {module}.{n}" for n in names if n.startswith("_") and not n.startswith("__")]
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("natlink"):
                for a in node.names:
                    if f"{node.module}.{a.name}" in known:
                        module_aliases[a.asname or a.name] = f"{node.module}.{a.name}"
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in module_aliases
                and module_aliases[node.value.id] != here
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
            ):
                problems.append(f"{path.relative_to(ROOT)}:{node.lineno} uses {module_aliases[node.value.id]}.{node.attr}")
    assert problems == []


def test_private_name_checker_sees_a_private_import(tmp_path):
    # The checker above must see both forms it forbids; feed it one of each by hand.
    sample = tmp_path / "sample.py"
    sample.write_text("from natlink.store.delta import _uri\nfrom natlink.store import delta\ndelta._uri('x')\n")
    known = modules()
    taken = [n for _, names, _ in imports(sample, known) for n in names]
    assert taken == ["_uri"]


def test_test_module_basenames_are_unique():
    names = Counter(p.name for p in (ROOT / "tests").rglob("test_*.py"))
    assert [n for n, c in names.items() if c > 1] == []


def test_cli_and_jobs_go_through_the_commands_layer():
    # The CLI parses and prints; jobs/ parse and print. Both call natlink.commands for the work.
    known = modules()
    allowed = {
        "cli": {"natlink.commands", "natlink.errors", "natlink.config", "natlink.provider.profile"},
        "jobs": {"natlink.commands", "natlink.errors"},
    }
    seen = {}
    for path in [SRC / "cli.py", *sorted((ROOT / "jobs").glob("*.py"))]:
        kind = "cli" if path.name == "cli.py" else "jobs"
        used = {m for m, _, _ in imports(path, known)}
        seen[path.name] = sorted(used - allowed[kind])
    assert {name: extra for name, extra in seen.items() if extra} == {}
    assert len(seen) >= 8  # the CLI and the seven jobs were read
