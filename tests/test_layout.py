"""The package graph points one way: a newcomer can read each room without the others.

Rules, checked over every import statement (`ast`, no imports executed):
- `aifactory` (the server) never imports `validator`, `deploy`, `harness`, `bench` or `tests`;
- `validator` takes from `aifactory` only the stdlib-only shared modules, and those import only the
  standard library (and each other);
- only `tests` imports `tests`; only `tests.bench` (the benchmark tool's own test) imports `bench`;
  `harness` imports neither;
- no import cycle between modules. For cycles only module-level imports count (an import inside a function
  runs later, once every module is loaded), and imports under `if TYPE_CHECKING:` are excluded because they
  never run; the layering rules above count every import, wherever it is.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ROOMS = ("aifactory", "validator", "deploy", "harness", "bench", "scripts", "tests")
SHARED = {"aifactory", "aifactory.constants", "aifactory.redis_url"}  # what the validator may use


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    found = {}
    for room in ROOMS:
        for path in sorted((ROOT / room).rglob("*.py")):
            if "_chart" not in path.parts:
                found[module_name(path)] = path
    return found


MODULES = modules()


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.Module) -> Iterator[tuple[str, bool]]:
    """(imported module, runs when the module is imported) for every import statement in `tree`.

    Imports inside functions run later; imports under `if TYPE_CHECKING:` never run. (No module here
    uses relative imports; one would resolve to its package name, wrongly, and fail the scan test.)
    """
    deferred: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            deferred.update(id(n) for n in ast.walk(node))
        elif isinstance(node, ast.If) and _is_type_checking(node):
            deferred.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    for node in ast.walk(tree):
        runs = id(node) not in deferred
        if isinstance(node, ast.Import):
            yield from ((alias.name, runs) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"relative import of {node.module} at line {node.lineno}"
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                yield (full if full in MODULES else str(node.module)), runs


def graph() -> dict[str, list[tuple[str, bool]]]:
    return {name: list(_imports(ast.parse(path.read_text(), str(path)))) for name, path in MODULES.items()}


GRAPH = graph()


def _room(name: str) -> str:
    return name.split(".")[0]


def _offenders(source_room: str, allowed: Callable[[str, str], bool]) -> list[str]:
    return [
        f"{mod} imports {imp}"
        for mod, imports in GRAPH.items()
        if source_room == "*" or _room(mod) == source_room
        for imp, _ in imports
        if not allowed(mod, imp)
    ]


def test_the_scan_sees_the_code() -> None:
    assert {"aifactory.web.app", "aifactory.bridge.relay", "validator.cli", "harness.faults"} <= set(GRAPH)
    assert ("aifactory.constants", True) in GRAPH["aifactory.bus"]
    assert ("validator.pipeline", False) in GRAPH["deploy.haproxy"]  # a function-level import is seen


def test_the_server_never_imports_the_other_rooms() -> None:
    forbidden = {"validator", "deploy", "harness", "bench", "tests", "scripts"}
    assert _offenders("aifactory", lambda _m, imp: _room(imp) not in forbidden) == []


def test_the_validator_uses_only_the_shared_stdlib_modules_of_the_server() -> None:
    assert _offenders("validator", lambda _m, imp: _room(imp) != "aifactory" or imp in SHARED) == []
    stdlib = set(sys.stdlib_module_names) | {"__future__"}
    for name in SHARED:
        foreign = [imp for imp, _ in GRAPH[name] if imp not in SHARED and _room(imp) not in stdlib]
        assert foreign == [], f"{name} must stay stdlib-only: it imports {foreign}"


def test_only_tests_import_tests_and_only_the_bench_test_imports_bench() -> None:
    assert _offenders("*", lambda mod, imp: _room(imp) != "tests" or _room(mod) == "tests") == []
    bench_ok = ("bench", "tests.bench")
    assert _offenders("*", lambda mod, imp: _room(imp) != "bench" or mod.startswith(bench_ok)) == []


def test_no_import_cycles() -> None:
    edges = {
        mod: sorted({imp for imp, top in imports if top and imp in MODULES and imp != mod})
        for mod, imports in GRAPH.items()
    }
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    cycles: list[list[str]] = []

    def visit(mod: str, path: list[str]) -> None:
        state[mod] = 1
        for nxt in edges[mod]:
            if state.get(nxt) == 1:
                cycles.append([*path[path.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[mod] = 2

    for mod in edges:
        if mod not in state:
            visit(mod, [mod])
    assert cycles == [], "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)
