"""Compile a JSON Schema into one small Python predicate, cached by the schema's sha256.

Why: importing `jsonschema` costs ~80 ms, more than the whole cold-start budget. The valid path only
needs a yes/no answer, so the chart's schema is turned into straight-line Python once (source cached in
the user cache dir, keyed by the schema's hash) and `jsonschema` is imported only when that predicate says
"invalid", to explain the failure from the real schema. The predicate is never more lenient than
jsonschema: any keyword it does not implement raises `Unsupported`, and the caller then uses jsonschema
for the yes/no answer too.
"""

from __future__ import annotations

import json

from validator.goregex import FLAGS, translate

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

_IGNORED = {
    "$schema",
    "$id",
    "id",
    "$comment",
    "title",
    "description",
    "default",
    "examples",
    "definitions",
    "$defs",
    "readOnly",
    "writeOnly",
    "deprecated",
    "format",  # jsonschema does not assert formats by default
    "contentMediaType",
    "contentEncoding",
}
_TYPE_TESTS = {
    "object": "isinstance({v}, dict)",
    "array": "isinstance({v}, list)",
    "string": "isinstance({v}, str)",
    "boolean": "isinstance({v}, bool)",
    "null": "{v} is None",
    "number": "(isinstance({v}, (int, float)) and not isinstance({v}, bool))",
    "integer": "_is_int({v})",
}
_LEGACY_REF = ("draft-04", "draft-06", "draft-07")

PRELUDE = """
import re as _re

def _is_int(v):
    if isinstance(v, bool):
        return False
    return isinstance(v, int) or (isinstance(v, float) and v.is_integer())

def _num(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)

def _eq(a, b):
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_eq(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_eq(x, y) for x, y in zip(a, b))
    return type(a) in (int, float) and type(b) in (int, float) and a == b or (
        type(a) is type(b) and a == b)

def _multiple(v, m):
    try:
        q = v / m
        return q == int(q)
    except (OverflowError, ValueError):
        return False

def _unique(items):
    return all(not _eq(items[i], items[j]) for i in range(len(items)) for j in range(i))
"""


class Unsupported(Exception):
    """The schema uses a keyword this compiler does not implement; use jsonschema instead."""


class _Compiler:
    def __init__(self, root: dict[str, Any]) -> None:
        self.root = root
        self.legacy_ref = any(d in str(root.get("$schema", "draft-07")) for d in _LEGACY_REF)
        self.functions: list[str] = []
        self.names: dict[str, str] = {}  # JSON pointer -> function name
        self.constants: list[str] = []

    def const(self, value: object) -> str:
        name = f"_C{len(self.constants)}"
        self.constants.append(f"{name} = {value!r}")
        return name

    def function(self, schema: object, pointer: str) -> str:
        if pointer in self.names:
            return self.names[pointer]
        name = f"_s{len(self.names)}"
        self.names[pointer] = name
        self.functions.append(self.body(name, schema, pointer))
        return name

    def resolve(self, ref: str) -> tuple[object, str]:
        if not ref.startswith("#"):
            raise Unsupported(f"remote $ref {ref}")
        node: object = self.root
        for part in ref[1:].split("/")[1:] if ref != "#" else []:
            part = part.replace("~1", "/").replace("~0", "~")
            if isinstance(node, dict) and part in node:
                node = node[part]
            elif isinstance(node, list) and part.isdigit():
                node = node[int(part)]
            else:
                raise Unsupported(f"unresolvable $ref {ref}")
        return node, ref

    def body(self, name: str, schema: object, pointer: str) -> str:
        lines = [f"def {name}(v):"]
        if schema is True or schema == {}:
            return f"def {name}(v):\n    return True\n"
        if schema is False:
            return f"def {name}(v):\n    return False\n"
        if not isinstance(schema, dict):
            raise Unsupported(f"schema at {pointer} is not an object")
        if "$ref" in schema:
            target, ref = self.resolve(schema["$ref"])
            lines.append(f"    if not {self.function(target, ref)}(v):\n        return False")
            if self.legacy_ref:
                return "\n".join([*lines, "    return True", ""])
        for key, value in schema.items():
            if key in _IGNORED or key == "$ref":
                continue
            lines.extend(self.keyword(key, value, schema, pointer))
        lines.append("    return True")
        return "\n".join(lines) + "\n"

    def keyword(self, key: str, value: Any, schema: dict[str, Any], pointer: str) -> list[str]:
        fail = "        return False"
        if key == "type":
            types = value if isinstance(value, list) else [value]
            tests = [_TYPE_TESTS[t].format(v="v") for t in types if t in _TYPE_TESTS]
            if len(tests) != len(types):
                raise Unsupported(f"type {value!r}")
            return [f"    if not ({' or '.join(tests)}):", fail]
        if key == "enum":
            return [f"    if not any(_eq(v, o) for o in {self.const(value)}):", fail]
        if key == "const":
            return [f"    if not _eq(v, {self.const(value)}):", fail]
        if key in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"):
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise Unsupported(f"{key} {value!r}")  # draft-04 boolean exclusive*
            op = {"minimum": "<", "maximum": ">", "exclusiveMinimum": "<=", "exclusiveMaximum": ">="}.get(key)
            if op is None:
                return [f"    if _num(v) and not _multiple(v, {value!r}):", fail]
            return [f"    if _num(v) and v {op} {value!r}:", fail]
        if key in ("minLength", "maxLength"):
            op = "<" if key == "minLength" else ">"
            return [f"    if isinstance(v, str) and len(v) {op} {int(value)}:", fail]
        if key == "pattern":
            regex = self.const(translate(str(value)))  # Go RE2 semantics, as Helm's schema check
            return [
                f"    if isinstance(v, str) and _re.search({regex}, v, {FLAGS}) is None:",
                fail,
            ]
        if key in ("minItems", "maxItems", "minProperties", "maxProperties"):
            op = "<" if key.startswith("min") else ">"
            kind = "list" if key.endswith("Items") else "dict"
            return [f"    if isinstance(v, {kind}) and len(v) {op} {int(value)}:", fail]
        if key == "uniqueItems":
            return ["    if isinstance(v, list) and not _unique(v):", fail] if value else []
        if key == "required":
            return [
                f"    if isinstance(v, dict) and not all(k in v for k in {self.const(list(value))}):",
                fail,
            ]
        if key == "properties":
            out = []
            for prop, sub in value.items():
                fn = self.function(sub, f"{pointer}/properties/{prop}")
                out += [f"    if isinstance(v, dict) and {prop!r} in v and not {fn}(v[{prop!r}]):", fail]
            return out
        if key == "patternProperties":
            out = []
            for regex, sub in value.items():
                fn = self.function(sub, f"{pointer}/patternProperties/{regex}")
                out += [
                    "    if isinstance(v, dict) and not all("
                    f"{fn}(x) for k, x in v.items() if _re.search({self.const(regex)}, k)):",
                    fail,
                ]
            return out
        if key == "additionalProperties":
            known = self.const(tuple(schema.get("properties", {})))
            patterns = self.const(tuple(schema.get("patternProperties", {})))
            extra = (
                f"[x for k, x in v.items() if k not in {known} "
                f"and not any(_re.search(p, k) for p in {patterns})]"
            )
            if value is False:
                return [f"    if isinstance(v, dict) and {extra}:", fail]
            fn = self.function(value, f"{pointer}/additionalProperties")
            return [f"    if isinstance(v, dict) and not all({fn}(x) for x in {extra}):", fail]
        if key == "propertyNames":
            fn = self.function(value, f"{pointer}/propertyNames")
            return [f"    if isinstance(v, dict) and not all({fn}(k) for k in v):", fail]
        if key == "items":
            if isinstance(value, list):
                raise Unsupported("tuple items")
            fn = self.function(value, f"{pointer}/items")
            return [f"    if isinstance(v, list) and not all({fn}(x) for x in v):", fail]
        if key == "contains":
            fn = self.function(value, f"{pointer}/contains")
            return [f"    if isinstance(v, list) and not any({fn}(x) for x in v):", fail]
        if key in ("allOf", "anyOf", "oneOf"):
            fns = [self.function(sub, f"{pointer}/{key}/{i}") for i, sub in enumerate(value)]
            calls = ", ".join(f"{fn}(v)" for fn in fns)
            test = {"allOf": "all(({c},))", "anyOf": "any(({c},))", "oneOf": "sum(({c},)) == 1"}[key]
            return [f"    if not {test.format(c=calls)}:", fail]
        if key == "not":
            return [f"    if {self.function(value, pointer + '/not')}(v):", fail]
        if key == "if":
            cond = self.function(value, pointer + "/if")
            then = self.function(schema.get("then", True), pointer + "/then")
            other = self.function(schema.get("else", True), pointer + "/else")
            return [f"    if not ({then}(v) if {cond}(v) else {other}(v)):", fail]
        if key in ("then", "else"):
            return []
        if key == "dependencies":
            out = []
            for prop, dep in value.items():
                if isinstance(dep, list):
                    test = f"all(k in v for k in {self.const(dep)})"
                else:
                    test = f"{self.function(dep, f'{pointer}/dependencies/{prop}')}(v)"
                out += [f"    if isinstance(v, dict) and {prop!r} in v and not {test}:", fail]
            return out
        raise Unsupported(f"keyword {key!r}")


def compile_source(schema: dict[str, Any]) -> str:
    """Python source defining `check(values) -> bool` for this schema; raises Unsupported."""
    compiler = _Compiler(schema)
    entry = compiler.function(schema, "#")
    parts = [PRELUDE, *compiler.constants, *compiler.functions, f"check = {entry}\n"]
    return "\n".join(parts)


def load_schema(text: str) -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(text)
    return schema
