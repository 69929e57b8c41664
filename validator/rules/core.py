"""The rule machinery: the Context rules read, the Rule record, the registry and the runner.

Each topic module (refusals, redis, ingress, replicas) registers its rules with `@rule(...)` on import;
the package lists them topic by topic (TOPICS), which is the order findings are reported in.
"""

from __future__ import annotations

from validator.model import Finding, Loc, Positions

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from typing import Any

    Emit = Callable[..., Finding]  # Rule.finding bound to the running rule


class Context:
    """Merged values plus where each was written, and which paths the user (not the chart) set."""

    def __init__(
        self, values: dict[str, Any], positions: Positions, user_paths: set[tuple[str | int, ...]]
    ) -> None:
        self.values = values
        self.positions = positions
        self.user_paths = user_paths

    def get(self, *path: str | int) -> object:
        node: object = self.values
        for part in path:
            if isinstance(node, dict) and isinstance(part, str):
                node = node.get(part)
            elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
                node = node[part]
            else:
                return None
        return node

    def mapping(self, *path: str) -> dict[str, Any]:
        value = self.get(*path)
        return value if isinstance(value, dict) else {}

    def loc(self, *path: str | int) -> Loc | None:
        return self.positions.value(path)

    def user_set(self, *path: str) -> bool:
        return tuple(path) in self.user_paths

    def number(self, *path: str) -> int | None:
        value = self.get(*path)
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None
        if value != value or value in (float("inf"), float("-inf")):  # NaN / inf: the schema reports it
            return None
        return int(value)

    def replica_range(self) -> tuple[int, int]:
        """(lowest, highest) replica count: replicaCount, or the HPA's min/max when autoscaling is on."""
        if truthy(self.get("autoscaling", "enabled")):
            low = self.number("autoscaling", "minReplicas")
            high = self.number("autoscaling", "maxReplicas")
            return (1 if low is None else low, 1 if high is None else high)
        count = self.number("replicaCount")
        count = 1 if count is None else count
        return count, count

    def replicas_text(self) -> str:
        if truthy(self.get("autoscaling", "enabled")):
            return f"autoscaling.maxReplicas={_shown(self.get('autoscaling', 'maxReplicas'))}"
        return f"replicaCount={_shown(self.get('replicaCount'))}"


def _shown(value: object) -> object:
    """A number as Helm prints it: `1e1` in YAML is the float 10.0, rendered as 10."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def truthy(value: object) -> bool:
    """Go template truthiness: false, 0, "", nil and empty collections are false."""
    return bool(value)


class Rule:
    """A rule's documentation (id, default severity, summary) and its check function.

    The id and default severity are stated once, in `@rule(...)`: the check receives `finding`, which stamps
    them on every finding, so a finding can never carry another rule's id or a drifted severity. Calling the
    Rule with a Context runs its check.
    """

    __slots__ = ("check", "id", "severity", "summary")

    def __init__(
        self, rule_id: str, severity: str, summary: str, check: Callable[..., Iterator[Finding]]
    ) -> None:
        self.id = rule_id
        self.severity = severity
        self.summary = summary
        self.check = check

    def __call__(self, ctx: Context) -> Iterator[Finding]:
        return self.check(ctx, self.finding)

    def finding(
        self, message: str, fix: str, path: str, loc: Loc | None, *, severity: str | None = None
    ) -> Finding:
        """A finding of this rule; `severity` overrides the default only where it varies per finding."""
        return Finding(self.id, severity or self.severity, message, fix, path, loc)


REGISTERED: list[Rule] = []  # in definition order; validator.rules orders them by topic


def rule(rule_id: str, severity: str, summary: str) -> Callable[[Callable[..., Any]], Rule]:
    """Register `check(ctx, finding)` as a rule; the module-level name becomes the (callable) Rule."""

    def register(check: Callable[..., Any]) -> Rule:
        item = Rule(rule_id, severity, summary, check)
        REGISTERED.append(item)
        return item

    return register
