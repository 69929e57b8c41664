"""The validator's rooms: it may use only the server's stdlib-only shared modules, its stages never import
the CLI or its exit codes (they return data or raise their own errors), and no module imports tests."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.validator.helpers import ROOT

SHARED = {"aifactory", "aifactory.constants", "aifactory.redis_url"}  # stdlib-only, import-light
CLI_ONLY = {"validator.cli", "validator.exitcodes"}


def imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def modules() -> dict[str, set[str]]:
    out = {}
    for path in sorted((ROOT / "validator").rglob("*.py")):
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        out[name] = imports(path)
    return out


def test_validator_uses_only_the_shared_stdlib_modules_of_the_server() -> None:
    for name, used in modules().items():
        server = {m for m in used if m == "aifactory" or m.startswith("aifactory.")}
        assert server <= SHARED, (name, server - SHARED)
        assert not {m for m in used if m == "tests" or m.startswith("tests.")}, name


def test_stages_do_not_reach_back_into_the_cli() -> None:
    for name, used in modules().items():
        if name in {"validator.cli", "validator.__main__"}:
            continue
        allowed = {"validator.exitcodes"} if name == "validator.report" else set()  # PROG only
        assert not (used & CLI_ONLY) - allowed, (name, used & CLI_ONLY)
