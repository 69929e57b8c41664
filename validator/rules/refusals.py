"""The chart's own render-time refusals (`aifactory.validate` in the chart's templates), same ids and the
same Go-template truthiness, so `helm template` fails exactly when one of these reports an error."""

from __future__ import annotations

from validator.model import ERROR, Finding
from validator.rules.core import Context, rule, truthy
from validator.rules.tiers import go_int, tier_values

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator

    from validator.rules.core import Emit

RESERVED_ENV = (
    "REDIS_URL",
    "REDIS_CHANNEL",
    "AIFACTORY_AUTH_SECRET",
    "PORT",
    "LOG_LEVEL",
    "AIFACTORY_HISTORY_SIZE",
    "AIFACTORY_HISTORY_TTL",
)


@rule("redis-source-missing", ERROR, "redis.enabled=true with neither redis.url nor redis.externalSecretName")
def redis_source_missing(ctx: Context, finding: Emit) -> Iterator[Finding]:
    redis = ctx.mapping("redis")
    if (
        truthy(redis.get("enabled"))
        and not truthy(redis.get("url"))
        and not truthy(redis.get("externalSecretName"))
    ):
        yield finding(
            "redis.enabled=true but neither redis.externalSecretName nor redis.url is set; "
            "the chart refuses to render",
            "create the Secret (kubectl create secret generic aifactory-redis "
            "--from-literal=REDIS_URL='redis://:<password>@redis.aifactory.svc:6379/0') and set "
            "redis.externalSecretName=aifactory-redis (or redis.url for dev only, or redis.enabled=false)",
            "redis.enabled",
            ctx.loc("redis", "enabled"),
        )


@rule("redis-source-ambiguous", ERROR, "redis.url and redis.externalSecretName both set")
def redis_source_ambiguous(ctx: Context, finding: Emit) -> Iterator[Finding]:
    redis = ctx.mapping("redis")
    if truthy(redis.get("enabled")) and truthy(redis.get("url")) and truthy(redis.get("externalSecretName")):
        yield finding(
            "redis.url and redis.externalSecretName are both set, so REDIS_URL would be ambiguous; "
            "the chart refuses to render",
            "remove redis.url to use the Secret (the production path), or remove redis.externalSecretName "
            "to use the inline dev-only URL",
            "redis.url",
            ctx.loc("redis", "url"),
        )


@rule("hpa-min-above-max", ERROR, "autoscaling.minReplicas > autoscaling.maxReplicas (even while disabled)")
def hpa_min_above_max(ctx: Context, finding: Emit) -> Iterator[Finding]:
    low, high = ctx.number("autoscaling", "minReplicas"), ctx.number("autoscaling", "maxReplicas")
    if low is not None and high is not None and low > high:
        yield finding(
            f"autoscaling.minReplicas ({low}) is greater than autoscaling.maxReplicas ({high}); "
            "the chart refuses to render (even while autoscaling is disabled)",
            "lower autoscaling.minReplicas or raise autoscaling.maxReplicas",
            "autoscaling.minReplicas",
            ctx.loc("autoscaling", "minReplicas"),
        )
    tiers = ctx.mapping("tiers")
    for name in sorted(tiers):
        tier = tiers[name]
        if not (isinstance(tier, dict) and "autoscaling" in tier):
            continue  # the top-level check above covers a tier that inherits autoscaling
        merged = tier_values(ctx, tier, "autoscaling")
        merged = merged if isinstance(merged, dict) else {}
        low, high = go_int(merged.get("minReplicas")), go_int(merged.get("maxReplicas"))
        if low > high:
            yield finding(
                f"tiers.{name}.autoscaling.minReplicas ({low}) is greater than its maxReplicas ({high}); "
                "the chart refuses to render",
                f"lower tiers.{name}.autoscaling.minReplicas or raise its maxReplicas",
                f"tiers.{name}.autoscaling",
                ctx.loc("tiers", name, "autoscaling"),
            )


@rule("extra-env-reserved", ERROR, "extraEnv sets a variable the chart manages (REDIS_URL, PORT, ...)")
def extra_env_reserved(ctx: Context, finding: Emit) -> Iterator[Finding]:
    lists: list[tuple[tuple[str, ...], object]] = [(("extraEnv",), ctx.get("extraEnv"))]
    for name, tier in sorted(ctx.mapping("tiers").items()):
        if isinstance(tier, dict):
            lists.append((("tiers", name, "extraEnv"), tier.get("extraEnv")))
    for prefix, env in lists:
        if not isinstance(env, list):
            continue
        where = ".".join(prefix)
        for i, item in enumerate(env):
            env_name = item.get("name") if isinstance(item, dict) else None
            if isinstance(env_name, str) and env_name in RESERVED_ENV:
                yield finding(
                    f"{where} sets {env_name}, which the chart manages itself; the chart refuses to render",
                    "remove it from extraEnv and use redis.externalSecretName / redis.url / redis.channel / "
                    "auth.existingSecret / server.logLevel instead",
                    f"{where}[{i}].name",
                    ctx.loc(*prefix, i, "name"),
                )


@rule("terminals-host-without-redis", ERROR, "terminals.mode=host while redis.enabled=false")
def terminals_host_without_redis(ctx: Context, finding: Emit) -> Iterator[Finding]:
    if str(ctx.get("terminals", "mode")) == "host" and not truthy(ctx.get("redis", "enabled")):
        yield finding(
            "terminals.mode=host but redis.enabled=false: Redis is the directory that tells web pods which "
            "terminal host owns a terminal; the chart refuses to render",
            "set redis.enabled=true with redis.externalSecretName, or terminals.mode=local",
            "terminals.mode",
            ctx.loc("terminals", "mode"),
        )
