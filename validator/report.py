"""Render a report as text (people), json (documented shape), github (workflow annotations) or sarif.

One table, REPORTER_BY_NAME, serves both the values check and `--cluster`: the CLI builds a Report
(severities already final, `--strict` applied) and prints `REPORTER_BY_NAME[fmt](report)`.
"""

from __future__ import annotations

from validator.exitcodes import PROG
from validator.model import ERROR, Finding

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

JSON_VERSION = 1
INFO_URI = "https://github.com/aifactory/aifactory/blob/main/docs/validator.md"


class Report:
    """What one run checked (`subject`: the values files, or the release), what it saw and found."""

    __slots__ = ("chart", "facts", "findings", "strict", "subject")

    def __init__(
        self,
        findings: list[Finding],
        subject: list[str],
        *,
        strict: bool = False,
        chart: str = "",
        facts: list[str] | None = None,
    ) -> None:
        self.findings = findings
        self.subject = subject
        self.strict = strict
        self.chart = chart
        self.facts = facts or []

    @property
    def valid(self) -> bool:
        return not any(f.severity == ERROR for f in self.findings)


def apply_strict(findings: list[Finding]) -> list[Finding]:
    """--strict: every warning counts (and is shown) as an error. The CLI calls this once, for every mode."""
    for finding in findings:
        finding.severity = ERROR
    return findings


def counts(findings: list[Finding]) -> tuple[int, int]:
    errors = sum(1 for f in findings if f.severity == ERROR)
    return errors, len(findings) - errors


def _summary(report: Report) -> str:
    errors, warnings = counts(report.findings)
    subject = ", ".join(report.subject) if report.subject else "chart defaults"
    if errors:
        return f"INVALID: {subject}: {errors} error(s), {warnings} warning(s)"
    extra = f" with {warnings} warning(s)" if warnings else ""
    return f"OK: {subject} valid{extra}" + (" (--strict)" if report.strict else "")


def text(report: Report) -> str:
    lines = [f"  {fact}" for fact in report.facts]
    for f in report.findings:
        where = f"{f.location}: " if f.location else ""
        lines.append(f"{where}{f.severity} [{f.rule}] {f.message}")
        lines.append(f"    fix: {f.fix}")
    lines.append(_summary(report))
    return "\n".join(lines) + "\n"


def as_json(report: Report) -> str:
    import json

    errors, warnings = counts(report.findings)
    doc = {
        "version": JSON_VERSION,
        "valid": errors == 0,
        "strict": report.strict,
        "chart": report.chart,
        "files": report.subject,
        "summary": {"errors": errors, "warnings": warnings},
        "findings": [f.as_dict() for f in report.findings],
    }
    return json.dumps(doc, indent=2) + "\n"


def _escape_data(value: str) -> str:
    return value.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(value: str) -> str:
    return _escape_data(value).replace(":", "%3A").replace(",", "%2C")


def github(report: Report) -> str:
    """GitHub Actions workflow commands: one ::error/::warning line per finding, else the OK line."""
    lines = []
    for f in report.findings:
        props = [f"title={_escape_property(f'{PROG} [{f.rule}]')}"]
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
    if not report.findings:
        lines.append(f"{PROG} {_summary(report)}")
    return "\n".join(lines) + "\n"


def help_anchor(rule_id: str) -> str:
    """The docs/validator.md heading (GitHub anchor) whose section documents `rule_id`."""
    from validator.rules import CHART_RULES

    if rule_id in CHART_RULES:
        return "chart-refusals"
    for prefix, anchor in (
        ("schema-", "schema"),
        ("yaml-", "reading-the-files"),
        ("values-", "reading-the-files"),
        ("render-", "render"),
        ("cluster-", "live-cluster-check"),
    ):
        if rule_id.startswith(prefix):
            return anchor
    return "multi-replica-rules"


def rule_docs() -> dict[str, str]:
    """One-line description of every finding id the validator can emit (SARIF `shortDescription`)."""
    from validator import cluster, loader, merge, render, schema
    from validator.rules import RULES

    docs = {**loader.SUMMARIES, **merge.SUMMARIES, **schema.SUMMARIES, **render.SUMMARIES}
    docs.update(cluster.SUMMARIES)
    docs.update({r.id: r.summary for r in RULES})
    return docs


def sarif(report: Report) -> str:
    """SARIF 2.1.0 for code-scanning UIs: the rules used (described, with their docs section), one result
    per finding."""
    import json

    docs = rule_docs()
    used = sorted({f.rule for f in report.findings})
    rules = [
        {
            "id": rule_id,
            "shortDescription": {"text": docs.get(rule_id, rule_id)},
            "helpUri": f"{INFO_URI}#{help_anchor(rule_id)}",
        }
        for rule_id in used
    ]
    results = []
    for f in report.findings:
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
                "tool": {"driver": {"name": PROG, "informationUri": INFO_URI, "rules": rules}},
                "results": results,
            }
        ],
    }
    return json.dumps(doc, indent=2) + "\n"


REPORTER_BY_NAME: dict[str, Callable[[Report], str]] = {
    "text": text,
    "json": as_json,
    "github": github,
    "sarif": sarif,
}
