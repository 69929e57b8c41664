"""Generate docs/values.md and the chart's README.md (what Artifact Hub and `helm show readme` display) from
chart/values.schema.json (types, rules, descriptions), chart/values.yaml (defaults) and chart/Chart.yaml, so
neither can drift from the schema. `make docs` runs it; `--check` exits 1 when a committed file is stale
(the test suite does the same comparison in memory)."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
import yaml

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = ROOT / "chart" / "values.schema.json"
VALUES = ROOT / "chart" / "values.yaml"
OUTPUT = ROOT / "docs" / "values.md"
CHART_META = ROOT / "chart" / "Chart.yaml"
README = ROOT / "chart" / "README.md"
TEMPLATE_DIR = Path(__file__).resolve().parent / "templates"
_MISSING = object()


@dataclass(frozen=True)
class Row:
    """One documented value: a leaf of the schema (or an array / free-form object taken as a whole)."""

    key: str
    type: str
    default: str
    description: str
    rules: str


def _type_of(node: dict[str, Any], definitions: dict[str, Any]) -> str:
    node = _resolve(node, definitions)
    kinds = node.get("type", "any")
    return " \\| ".join(kinds) if isinstance(kinds, list) else str(kinds)


def _resolve(node: dict[str, Any], definitions: dict[str, Any]) -> dict[str, Any]:
    """Follow a local `#/definitions/<name>` $ref, keeping the referring node's own description."""
    ref = node.get("$ref")
    if not ref:
        return node
    target = dict(definitions[ref.rsplit("/", 1)[-1]])
    if "description" in node:
        target["description"] = node["description"]
    return target


def _rules(node: dict[str, Any]) -> str:
    parts: list[str] = []
    if "enum" in node:
        parts.append("one of " + ", ".join(f"`{v}`" for v in node["enum"]))
    if "minimum" in node or "maximum" in node:
        parts.append(f"range {node.get('minimum', '-∞')}..{node.get('maximum', '∞')}")
    if "minItems" in node:
        parts.append(f"at least {node['minItems']} item(s)")
    if "pattern" in node:
        parts.append(f"pattern `{node['pattern']}`")
    if "maxLength" in node:
        parts.append(f"max length {node['maxLength']}")
    if node.get("additionalProperties") is False:
        parts.append("unknown keys refused")
    return "; ".join(parts).replace("|", "\\|")


def _default(values: Any, path: list[str]) -> str:
    node: Any = values
    for part in path:
        if not isinstance(node, dict) or part not in node:
            return "—"
        node = node.get(part, _MISSING)
    return f"`{json.dumps(node, ensure_ascii=False)}`".replace("|", "\\|")


def collect_rows(schema: dict[str, Any], values: dict[str, Any]) -> list[Row]:
    """Walk the schema depth-first in declaration order; objects with declared properties are expanded."""
    definitions = schema.get("definitions", {})
    rows: list[Row] = []

    def walk(properties: dict[str, Any], prefix: list[str]) -> None:
        for name, raw in properties.items():
            node = _resolve(raw, definitions)
            path = [*prefix, name]
            if name == "global" and not prefix:
                continue
            expandable = "properties" in node and node.get("type") == "object"
            if expandable:
                walk(node["properties"], path)
                continue
            rows.append(
                Row(
                    key=".".join(path),
                    type=_type_of(node, definitions),
                    default=_default(values, path),
                    description=" ".join(node.get("description", "").split()).replace("|", "\\|"),
                    rules=_rules(node),
                )
            )

    walk(schema["properties"], [])
    return rows


def _render(template: str) -> str:
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    values = yaml.safe_load(VALUES.read_text(encoding="utf-8"))
    chart = yaml.safe_load(CHART_META.read_text(encoding="utf-8"))
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATE_DIR),
        autoescape=False,
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
    )
    return env.get_template(template).render(rows=collect_rows(schema, values), schema=schema, chart=chart)


def render() -> str:
    """The full text of docs/values.md for the current schema and values."""
    return _render("values.md.j2")


def render_readme() -> str:
    """The full text of chart/README.md: install commands, then the same values table."""
    return _render("chart-readme.md.j2")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if docs/values.md is stale")
    args = parser.parse_args(argv)
    stale = 0
    for output, text in ((OUTPUT, render()), (README, render_readme())):
        if args.check:
            current = output.read_text(encoding="utf-8") if output.exists() else ""
            if current != text:
                print(f"{output.relative_to(ROOT)} is stale: run `make docs` and commit it", file=sys.stderr)
                stale = 1
            else:
                print(f"{output.relative_to(ROOT)} is up to date")
            continue
        output.write_text(text, encoding="utf-8")
        print(f"wrote {output.relative_to(ROOT)} ({text.count(chr(10))} lines)")
    return stale


if __name__ == "__main__":
    sys.exit(main())
