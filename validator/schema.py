"""Check merged values against the chart's own values.schema.json.

Valid path: a compiled predicate (validator.compiler), cached by the schema's sha256, answers yes/no
without importing jsonschema. Invalid path (or a schema the compiler cannot handle): jsonschema against
the real schema explains every violation as a finding with the values path, its source location and a
"did you mean" for unknown keys. Messages never echo values of secret-looking keys (redis.url, ...).
"""

from __future__ import annotations

import marshal
import os
import sys

from validator.model import ERROR, Finding, Positions, format_path

COMPILER_VERSION = "2"
# Finding id -> one-line description (SARIF shortDescription; the table in docs/validator.md says more).
SUMMARIES = {
    "schema-unknown-key": "a key the chart's values.schema.json does not declare",
    "schema-type": "a value of the wrong type for the chart's schema",
    "schema-enum": "a value outside the schema's allowed values",
    "schema-required": "a key the schema requires is missing (often deleted with null)",
    "schema-range": "a number outside the schema's minimum/maximum",
    "schema-length": "a string or list shorter or longer than the schema allows",
    "schema-pattern": "a string that does not match the schema's pattern (Go RE2 semantics)",
    "schema-invalid": "a value that fails another keyword of the chart's schema",
}
_SENSITIVE = ("url", "password", "secret", "token", "key")

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from typing import Any


def cache_dir() -> str:
    explicit = os.environ.get("AIFACTORY_VALIDATE_CACHE")
    if explicit:
        return explicit
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "aifactory-validate")


def schema_digest(schema_bytes: bytes) -> str:
    try:
        from _sha256 import sha256  # type: ignore[import-not-found]  # C implementation, no stub; `hashlib` costs ~2 ms to import (OpenSSL)
    except ImportError:  # pragma: no cover - other interpreters
        from hashlib import sha256
    digest: str = sha256(schema_bytes).hexdigest()
    return digest


def fast_checker(schema_bytes: bytes) -> Callable[[object], bool] | None:
    """The compiled predicate for this schema (from the cache, else compiled and cached), or None."""
    digest = schema_digest(schema_bytes)
    tag = sys.implementation.cache_tag or "py"
    path = os.path.join(cache_dir(), f"schema-{digest}-{tag}-v{COMPILER_VERSION}.bin")
    code = None
    try:
        with open(path, "rb") as fh:
            code = marshal.loads(fh.read())
    except (OSError, ValueError, EOFError, TypeError):
        code = None
    if code is None:
        from validator.compiler import Unsupported, compile_source, load_schema

        try:
            source = compile_source(load_schema(schema_bytes.decode("utf-8")))
        except (Unsupported, ValueError, RecursionError):
            return None
        code = compile(source, f"<compiled {os.path.basename(path)}>", "exec")
        _write_cache(path, marshal.dumps(code))
    namespace: dict[str, object] = {}
    exec(code, namespace)
    return namespace["check"]  # type: ignore[return-value]


def _write_cache(path: str, data: bytes) -> None:
    """Best effort: a read-only home just means compiling again next time."""
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except OSError:
        pass


def validate(schema_bytes: bytes, values: dict[str, Any], positions: Positions) -> list[Finding]:
    """Every schema violation as a finding; [] when valid."""
    check = fast_checker(schema_bytes)
    if check is not None and check(values):
        return []
    return explain(schema_bytes, values, positions)


def explain(schema_bytes: bytes, values: dict[str, Any], positions: Positions) -> list[Finding]:
    """Run jsonschema against the real schema and turn each error into a finding."""
    import json

    schema = json.loads(schema_bytes)
    validator = jsonschema_validator(schema)
    findings: list[Finding] = []
    errors = sorted(validator.iter_errors(values), key=lambda e: [str(p) for p in e.absolute_path])
    for error in errors:
        findings.extend(_findings_for(error, positions, schema))
    return findings


def jsonschema_validator(schema: dict[str, Any]) -> Any:
    """jsonschema's validator for the schema's draft, with Helm's (Go) `pattern` semantics."""
    import jsonschema

    base = jsonschema.validators.validator_for(schema, default=jsonschema.Draft7Validator)
    return jsonschema.validators.extend(base, {"pattern": _go_pattern})(schema)


def _go_pattern(
    validator: object, pattern: str, instance: object, schema: dict[str, Any]
) -> Iterator[object]:
    """jsonschema's `pattern`, with Helm's Go regexp semantics (see validator.goregex)."""
    import re

    import jsonschema

    from validator.goregex import FLAGS, translate

    if isinstance(instance, str) and re.search(translate(pattern), instance, FLAGS) is None:
        yield jsonschema.ValidationError(f"does not match {pattern!r}")


def _sensitive(path: tuple[str | int, ...]) -> bool:
    return any(isinstance(p, str) and any(s in p.lower() for s in _SENSITIVE) for p in path) or (
        len(path) >= 3 and path[0] == "extraEnv" and path[-1] == "value"
    )


def _show(value: object, path: tuple[str | int, ...]) -> str:
    if _sensitive(path):
        return "(value hidden)"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "list" if isinstance(value, list) else "mapping"


def _all_property_paths(schema: dict[str, Any]) -> dict[str, list[str]]:
    """name -> dotted paths where the schema declares it (to point at a key written at the wrong level)."""
    found: dict[str, list[str]] = {}

    def walk(node: object, prefix: str, depth: int) -> None:
        if not isinstance(node, dict) or depth > 8:
            return
        for name, sub in (node.get("properties") or {}).items():
            path = f"{prefix}.{name}" if prefix else name
            found.setdefault(name, []).append(path)
            walk(sub, path, depth + 1)

    walk(schema, "", 0)
    return found


def _findings_for(error: object, positions: Positions, schema: dict[str, Any]) -> list[Finding]:
    import difflib

    keyword = error.validator  # type: ignore[attr-defined]
    path = tuple(error.absolute_path)  # type: ignore[attr-defined]
    value = error.instance  # type: ignore[attr-defined]
    sub = error.schema if isinstance(error.schema, dict) else {}  # type: ignore[attr-defined]
    where = format_path(path)
    loc = positions.value(path)
    if keyword == "additionalProperties" and isinstance(value, dict):
        declared = list(sub.get("properties", {}))
        out = []
        everywhere = _all_property_paths(schema)
        for key in value:
            if key in declared:
                continue
            key_path = (*path, key)
            close = difflib.get_close_matches(key, declared, n=1, cutoff=0.6)
            if close:
                fix = f"did you mean {format_path((*path, close[0]))}?"
            elif key in everywhere:
                fix = f"{key} belongs at {' or '.join(everywhere[key])}; move it there"
            else:
                known = ", ".join(declared) or "none"
                fix = f"remove it; keys allowed under {where}: {known}"
            out.append(
                Finding(
                    "schema-unknown-key",
                    ERROR,
                    f"{format_path(key_path)} is not a key of the chart (the schema refuses unknown keys)",
                    fix,
                    format_path(key_path),
                    positions.key(key_path),
                )
            )
        return out
    if keyword == "type":
        expected = error.validator_value  # type: ignore[attr-defined]
        expected = expected if isinstance(expected, list) else [expected]
        rule, message = "schema-type", f"{where} must be {' or '.join(expected)}, not {_kind(value)}"
        fix = f"write {where} as {' or '.join(expected)}"
        if "string" in expected and not isinstance(value, str):
            fix += " (quote it)"
    elif keyword == "enum":
        options = ", ".join(str(o) for o in error.validator_value)  # type: ignore[attr-defined]
        rule, message = "schema-enum", f"{where} is {_show(value, path)}, not one of the allowed values"
        fix = f"use one of: {options}"
    elif keyword == "required":
        missing = error.validator_value  # type: ignore[attr-defined]
        absent = [k for k in missing if isinstance(value, dict) and k not in value]
        rule = "schema-required"
        message = f"{where} lacks required key(s) {', '.join(absent)} (deleted with null?)"
        fix = f"set {', '.join(format_path((*path, k)) for k in absent)} (see the chart's values.yaml)"
    elif keyword in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"):
        bound = error.validator_value  # type: ignore[attr-defined]
        words = {"minimum": "at least", "maximum": "at most", "exclusiveMinimum": "above"}
        rule = "schema-range"
        message = f"{where} is {_show(value, path)}; it must be {words.get(keyword, 'below')} {bound}"
        fix = f"set {where} to a value {words.get(keyword, 'below')} {bound}"
        lo, hi = sub.get("minimum"), sub.get("maximum")
        if lo is not None and hi is not None:
            fix = f"set {where} between {lo} and {hi}"
    elif keyword in ("minLength", "maxLength", "minItems", "maxItems"):
        bound = error.validator_value  # type: ignore[attr-defined]
        what = "characters" if keyword.endswith("Length") else "items"
        side = "at least" if keyword.startswith("min") else "at most"
        rule = "schema-length"
        message = f"{where} has {len(value)} {what}; it must have {side} {bound}"
        fix = f"give {where} {side} {bound} {what}"
    elif keyword == "pattern":
        rule = "schema-pattern"
        message = f"{where} is {_show(value, path)}, which does not match the pattern the chart requires"
        fix = f"match {error.validator_value}"  # type: ignore[attr-defined]
        if sub.get("description"):
            fix += f" ({sub['description']})"
    else:
        rule, message = "schema-invalid", f"{where} does not satisfy the schema's {keyword!r}"
        fix = "see the chart's values.schema.json"
    return [Finding(rule, ERROR, message, fix, where, loc)]
