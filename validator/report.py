"""Render findings as text (people), json (documented shape), github (workflow annotations) or sarif."""

from __future__ import annotations

from validator.model import ERROR, Finding

TOOL = "aifactory-validate"
JSON_VERSION = 1
INFO_URI = "https://github.com/aifactory/aifactory/blob/main/docs/validator.md"


def counts(findings: list[Finding]) -> tuple[int, int]:
    errors = sum(1 for f in findings if f.severity == ERROR)
    return errors, len(findings) - errors


def text(findings: list[Finding], files: list[str], strict: bool) -> str:
    lines = []
    for f in findings:
        where = f"{f.location}: " if f.location else ""
        lines.append(f"{where}{f.severity} [{f.rule}] {f.message}")
        lines.append(f"    fix: {f.fix}")
    errors, warnings = counts(findings)
    subject = ", ".join(files) if files else "chart defaults"
    if errors:
        lines.append(f"INVALID: {subject}: {errors} error(s), {warnings} warning(s)")
    else:
        extra = f" with {warnings} warning(s)" if warnings else ""
        lines.append(f"OK: {subject} valid{extra}" + (" (--strict)" if strict else ""))
    return "\n".join(lines) + "\n"


def as_json(findings: list[Finding], files: list[str], strict: bool, chart: str) -> str:
    import json

    errors, warnings = counts(findings)
    doc = {
        "version": JSON_VERSION,
        "valid": errors == 0,
        "strict": strict,
        "chart": chart,
        "files": files,
        "summary": {"errors": errors, "warnings": warnings},
        "findings": [f.as_dict() for f in findings],
    }
    return json.dumps(doc, indent=2) + "\n"


def _escape_data(value: str) -> str:
    return value.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(value: str) -> str:
    return _escape_data(value).replace(":", "%3A").replace(",", "%2C")


def github(findings: list[Finding]) -> str:
    """GitHub Actions workflow commands: one ::error/::warning line per finding."""
    lines = []
    for f in findings:
        props = [f"title={_escape_property(f'{TOOL} [{f.rule}]')}"]
        loc = f.location
        if loc and loc.line:
            props[:0] = [
                f"file={_escape_property(loc.source)}",
                f"line={loc.line}",
                f"col={loc.column}",
            ]
        where = f" ({loc.source})" if loc and not loc.line else ""
        message = f"{f.path}: {f.message}{where}. Fix: {f.fix}" if f.path else f"{f.message}. Fix: {f.fix}"
        lines.append(f"::{f.severity} {','.join(props)}::{_escape_data(message)}")
    return "\n".join(lines) + ("\n" if lines else "")


def sarif(findings: list[Finding], rule_docs: dict[str, str]) -> str:
    """SARIF 2.1.0 for code-scanning UIs."""
    import json

    used = sorted({f.rule for f in findings})
    rules = [
        {
            "id": rule_id,
            "shortDescription": {"text": rule_docs.get(rule_id, rule_id)},
            "helpUri": f"{INFO_URI}#{rule_id}",
        }
        for rule_id in used
    ]
    results = []
    for f in findings:
        result: dict[str, object] = {
            "ruleId": f.rule,
            "level": "error" if f.severity == ERROR else "warning",
            "message": {"text": f"{f.message}. Fix: {f.fix}"},
            "properties": {"valuesPath": f.path},
        }
        loc = f.location
        if loc and loc.line:
            result["locations"] = [
                {
                    "physicalLocation": {
                        "artifactLocation": {"uri": loc.source},
                        "region": {"startLine": loc.line, "startColumn": loc.column},
                    }
                }
            ]
        elif loc:
            result["properties"] = {"valuesPath": f.path, "source": loc.source}
        results.append(result)
    doc = {
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [
            {
                "tool": {"driver": {"name": TOOL, "informationUri": INFO_URI, "rules": rules}},
                "results": results,
            }
        ],
    }
    return json.dumps(doc, indent=2) + "\n"
