"""The validator as one pure function: file texts + --set expressions -> merged values and findings.

load (each file) -> merge (Helm order) -> schema (chart's values.schema.json) -> rules. No I/O here beyond
what the chart object already read, so tests and the CLI share exactly the same path.
"""

from __future__ import annotations

from validator import loader, merge, rules, schema, setvals
from validator.model import ERROR, Finding, Positions

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from validator.chart import Chart


class Result:
    __slots__ = ("findings", "positions", "values")

    def __init__(self, values: dict[str, Any], positions: Positions, findings: list[Finding]) -> None:
        self.values = values
        self.positions = positions
        self.findings = findings


def run(chart: Chart, files: list[tuple[str, bytes]], sets: list[tuple[str, bool]]) -> Result:
    """Validate. `files` are (display name, raw bytes) in -f order; `sets` are (expr, is_string) in order.

    Raises setvals.SetError for a malformed --set (a usage error). Unusable files become findings.
    """
    findings: list[Finding] = []
    positions = Positions()
    try:
        defaults = loader.load(chart.values_text, chart.display_values_path())
        positions.update(defaults.positions)
        default_values = defaults.values
    except loader.LoadError as exc:
        findings.append(exc.finding)
        default_values = {}
    user_positions = Positions()
    user: dict[str, Any] = {}
    unreadable = False
    for name, raw in files:
        try:
            loaded = loader.load(loader.decode(raw, name), name)
        except loader.LoadError as exc:
            findings.append(exc.finding)
            unreadable = True
            continue
        findings.extend(loaded.findings)
        user = merge.merge_maps(user, loaded.values)
        user_positions.update(loaded.positions)
    # Helm applies every --set before every --set-string, whatever their order on the command line.
    for expr, as_string in sorted(sets, key=lambda s: s[1]):
        setvals.parse_into(expr, user, user_positions, as_string=as_string)
    positions.update(user_positions)
    if unreadable:
        return Result(user, positions, findings)  # a file could not be read: do not guess further
    values = merge.coalesce(default_values, user, positions, findings)
    findings.extend(schema.validate(chart.schema_bytes, values, positions))
    ctx = rules.Context(values, positions, set(user_positions.values) | set(user_positions.keys))
    findings.extend(rules.run_rules(ctx))
    return Result(values, positions, findings)


def apply_strict(findings: list[Finding]) -> list[Finding]:
    """--strict: every warning counts (and is shown) as an error."""
    for finding in findings:
        finding.severity = ERROR
    return findings
