"""Traffic tiers: the chart's tier refusals (`aifactory.validate.tier*` in _validate.tpl), same ids and the
same Go-template semantics (a tier's keys replace the top-level ones; maps merge one level deep), so
`helm template` fails exactly when one of these reports an error."""

from __future__ import annotations

from validator.model import ERROR, Finding
from validator.rules.core import Context, rule, truthy

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any

    from validator.rules.core import Emit


def tier_values(ctx: Context, tier: object, key: str) -> object:
    """A tier's effective value for `key`: its own, with maps merged one level over the top-level one."""
    own = tier.get(key) if isinstance(tier, dict) else None
    top = ctx.get(key)
    if isinstance(own, dict) and isinstance(top, dict):
        return {**top, **own}
    return own if isinstance(tier, dict) and key in tier else top


def go_int(value: object) -> int:
    """Go's `int` on a value from YAML: numbers truncate, anything else (nil, strings, inf) counts as 0."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0
    if value != value or abs(value) == float("inf"):
        return 0
    return int(value)


def _tier_max_replicas(ctx: Context, tier: object) -> int:
    """The chart's aifactory.tierMaxReplicas: maxReplicas under the tier's HPA, else replicaCount."""
    autoscaling = tier_values(ctx, tier, "autoscaling")
    autoscaling = autoscaling if isinstance(autoscaling, dict) else {}
    if truthy(autoscaling.get("enabled")):
        return go_int(autoscaling.get("maxReplicas"))
    return go_int(tier_values(ctx, tier, "replicaCount"))


def _routes(ctx: Context) -> list[dict[str, Any]]:
    routes = ctx.get("tierRoutes")
    return [r for r in routes if isinstance(r, dict)] if isinstance(routes, list) else []


@rule("tier-route-unknown", ERROR, "a tierRoutes entry names a tier that is not defined in tiers")
def tier_route_unknown(ctx: Context, finding: Emit) -> Iterator[Finding]:
    tiers = ctx.mapping("tiers")
    for i, route in enumerate(_routes(ctx)):
        name = route.get("tier")
        if str(name) not in tiers:
            yield finding(
                f"tierRoutes sends {route.get('path')} to tier {name!r}, which is not defined "
                f"(tiers: {', '.join(sorted(tiers)) or 'none'}); the chart refuses to render",
                "route each path to one of the keys of tiers, or add that tier",
                f"tierRoutes[{i}].tier",
                ctx.loc("tierRoutes", i, "tier"),
            )


@rule("tier-path-unrouted", ERROR, "tiers set without a tierRoutes entry for / (paths routed to no tier)")
def tier_path_unrouted(ctx: Context, finding: Emit) -> Iterator[Finding]:
    if truthy(ctx.get("tiers")) and not any(r.get("path") == "/" for r in _routes(ctx)):
        yield finding(
            'tiers are set but no tierRoutes entry has path "/", so every path not listed would be routed '
            "to no tier; the chart refuses to render",
            "add {path: /, tier: <the interactive tier, e.g. ui>} to tierRoutes",
            "tierRoutes",
            ctx.loc("tierRoutes") or ctx.loc("tiers"),
        )


@rule("tiers-without-redis", ERROR, "tiers set while redis.enabled=false (events would not cross tiers)")
def tiers_without_redis(ctx: Context, finding: Emit) -> Iterator[Finding]:
    if truthy(ctx.get("tiers")) and not truthy(ctx.get("redis", "enabled")):
        yield finding(
            "tiers are set while redis.enabled=false: events fired on one tier (task progress on agents) "
            "would never reach WebSocket clients on another (ui); the chart refuses to render",
            "set redis.enabled=true and redis.externalSecretName=<Secret with key REDIS_URL>",
            "redis.enabled",
            ctx.loc("redis", "enabled") or ctx.loc("tiers"),
        )


@rule("tier-no-replicas", ERROR, "a tier with replicaCount 0 and no HPA (its routed paths would fail)")
def tier_no_replicas(ctx: Context, finding: Emit) -> Iterator[Finding]:
    tiers = ctx.mapping("tiers")
    for name in sorted(tiers):
        if _tier_max_replicas(ctx, tiers[name]) == 0:
            yield finding(
                f"tier {name} would run no pod (replicaCount 0 and no HPA), so the paths routed to it would "
                "fail; the chart refuses to render",
                f"set tiers.{name}.replicaCount to 1 or more (or tiers.{name}.autoscaling.enabled=true), "
                "or remove the tier",
                f"tiers.{name}.replicaCount",
                ctx.loc("tiers", name, "replicaCount") or ctx.loc("tiers", name),
            )
