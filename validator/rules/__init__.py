"""Cross-field rules: one function per rule, each returning findings with a stable id.

The chart-parity rules (CHART_RULES, in `refusals` and `tiers` plus `redis-url-invalid`) mirror the chart's
render-time refusals with the same ids and Go-template truthiness, so `helm template` fails exactly when
one of them reports an error. The rest are multi-replica mistakes Helm cannot see. Rules read the merged
values defensively: they also run when the schema failed, and must never crash on a wrong type.
Add a rule: a function with `@rule(id, severity, summary)` in the topic module it belongs to, a case in
tests/validator/test_rules.py, a row in docs/validator.md.
"""

from __future__ import annotations

from validator.model import Finding
from validator.rules import ingress, redis, refusals, replicas, tiers
from validator.rules.core import REGISTERED, Context, Rule, rule, truthy

TOPICS = (refusals, redis, ingress, replicas, tiers)  # report order
RULES: list[Rule] = sorted(REGISTERED, key=lambda r: [t.__name__ for t in TOPICS].index(r.check.__module__))

CHART_RULES = (
    "redis-source-missing",
    "redis-source-ambiguous",
    "redis-url-invalid",
    "hpa-min-above-max",
    "extra-env-reserved",
    "tier-route-unknown",
    "tier-path-unrouted",
    "tiers-without-redis",
    "tier-no-replicas",
    "terminals-host-without-redis",
)


def run_rules(ctx: Context) -> list[Finding]:
    findings: list[Finding] = []
    for item in RULES:
        findings.extend(item.check(ctx, item.finding))
    return findings


__all__ = ["CHART_RULES", "RULES", "Context", "Rule", "rule", "run_rules", "truthy"]
