"""Redis rules: several replicas without the bus, and what is wrong with an inline redis.url (the chart's
shape check `redis-url-invalid` included, since it shares the parser helpers)."""

from __future__ import annotations

from validator.model import ERROR, WARNING, Finding, Loc
from validator.rules.core import Context, rule, truthy

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator

    from validator.rules.core import Emit

LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1", "0.0.0.0", "ip6-localhost")


@rule("multi-replica-without-redis", WARNING, "more than one replica possible while redis.enabled=false")
def multi_replica_without_redis(ctx: Context, finding: Emit) -> Iterator[Finding]:
    _, high = ctx.replica_range()
    if high > 1 and not truthy(ctx.get("redis", "enabled")):
        path = (
            ("autoscaling", "maxReplicas") if truthy(ctx.get("autoscaling", "enabled")) else ("replicaCount",)
        )
        yield finding(
            f"{ctx.replicas_text()} with redis.enabled=false: each replica's WebSocket clients will only see "
            "events fired on their own replica",
            "set redis.enabled=true with redis.externalSecretName (a Secret with key REDIS_URL), "
            "or run one replica",
            ".".join(path),
            ctx.loc(*path),
        )


def _redis_url(ctx: Context) -> str | None:
    url = ctx.get("redis", "url")
    return url if isinstance(url, str) and url.strip() else None


def _parse(url: str) -> tuple[object | None, str | None]:
    """(target, None) or (None, error message) with the shared server parser, imported only when needed."""
    from aifactory.redis_url import RedisUrlError, parse_redis_url

    try:
        return parse_redis_url(url), None
    except RedisUrlError as exc:
        return None, str(exc)


def _from_set(loc: Loc | None) -> bool:
    return loc is not None and loc.source.startswith("--set")


@rule("redis-url-inline", WARNING, "redis.url is inline (dev only); production uses redis.externalSecretName")
def redis_url_inline(ctx: Context, finding: Emit) -> Iterator[Finding]:
    url = _redis_url(ctx)
    if url and truthy(ctx.get("redis", "enabled")) and not truthy(ctx.get("redis", "externalSecretName")):
        yield finding(
            "redis.url is set inline, which is meant for local development: the URL sits in your values "
            "and ends up in a chart-managed Secret rendered from them",
            "create a Secret with key REDIS_URL and set redis.externalSecretName instead (unset redis.url)",
            "redis.url",
            ctx.loc("redis", "url"),
        )


@rule("redis-url-password", ERROR, "redis.url contains a password (error in a file, warning via --set)")
def redis_url_password(ctx: Context, finding: Emit) -> Iterator[Finding]:
    url = _redis_url(ctx)
    if not url:
        return
    target, _ = _parse(url)
    if target is not None:
        has_password = bool(getattr(target, "password", None) or getattr(target, "sentinel_password", None))
    else:  # unparsable: still look for user:pass@ without ever echoing it
        _, _, rest = url.partition("://")
        userinfo = rest.split("/", 1)[0].rpartition("@")[0]
        has_password = (":" in userinfo and bool(userinfo.split(":", 1)[1])) or "password=" in url
    if not has_password:
        return
    loc = ctx.loc("redis", "url")
    where = "on your command line (shell history, CI logs)" if _from_set(loc) else "in a values file"
    yield finding(
        f"redis.url contains a password, so the secret now sits {where}",
        "put the URL in a Secret (kubectl create secret generic aifactory-redis "
        "--from-literal=REDIS_URL=...) "
        "and set redis.externalSecretName; rotate the exposed password",
        "redis.url",
        loc,
        severity=WARNING if _from_set(loc) else ERROR,
    )


# The chart's regex (Go RE2: \S is ASCII-only, $ is end of text), applied to `toString .Values.redis.url`.
_CHART_URL = r"^(rediss?|unix|rediss?\+sentinel|rediss?\+cluster)://[^\t\n\f\r ]+\Z"


@rule("redis-url-invalid", ERROR, "redis.url is not a Redis URL (the chart's own shape check)")
def redis_url_invalid(ctx: Context, finding: Emit) -> Iterator[Finding]:
    import re

    url = ctx.get("redis", "url")
    if not (truthy(ctx.get("redis", "enabled")) and truthy(url)):
        return
    if re.match(_CHART_URL, str(url)):
        return
    _, error = _parse(str(url))
    yield finding(
        "redis.url is not a Redis URL; the chart refuses to render"
        + (f" ({error})" if error else " (it must start with a redis scheme and contain no spaces)"),
        "use redis://, rediss://, unix://, redis+sentinel:// or redis+cluster:// (docs/redis-url.md), "
        "or better a Secret with key REDIS_URL and redis.externalSecretName",
        "redis.url",
        ctx.loc("redis", "url"),
    )


@rule(
    "redis-url-rejected", ERROR, "redis.url has a Redis scheme but the server's REDIS_URL parser refuses it"
)
def redis_url_rejected(ctx: Context, finding: Emit) -> Iterator[Finding]:
    import re

    url = _redis_url(ctx)
    if not url:
        return
    enabled = truthy(ctx.get("redis", "enabled"))
    if enabled and not re.match(_CHART_URL, url):
        return  # the chart refuses it already: reported as redis-url-invalid
    _, error = _parse(url)
    if error is None:
        return
    yield finding(
        f"redis.url renders but the server would refuse it: {error}"
        + ("" if enabled else " (redis.enabled=false for now)"),
        "fix the URL as the message says; syntax in docs/redis-url.md",
        "redis.url",
        ctx.loc("redis", "url"),
        severity=ERROR if enabled else WARNING,
    )


@rule(
    "redis-url-localhost",
    ERROR,
    "redis.url points at localhost/127.0.0.1/a unix socket with several replicas",
)
def redis_url_localhost(ctx: Context, finding: Emit) -> Iterator[Finding]:
    url = _redis_url(ctx)
    _, high = ctx.replica_range()
    if not url or high <= 1 or not truthy(ctx.get("redis", "enabled")):
        return
    target, _ = _parse(url)
    if target is None:
        return
    hosts = [h for h, _ in getattr(target, "hosts", ())]
    local = [h for h in hosts if h.lower() in LOCAL_HOSTS or h.startswith("127.")]
    if getattr(target, "unix_path", None) is None and not local:
        return
    what = f"host {local[0]}" if local else "a unix socket"
    yield finding(
        f"redis.url points at {what} while {ctx.replicas_text()}: each pod's localhost is the pod itself, "
        "so the replicas would not share one Redis",
        "point redis.url (better: the REDIS_URL in redis.externalSecretName) at a Redis Service reachable "
        "from every pod, e.g. redis://redis.aifactory.svc:6379/0",
        "redis.url",
        ctx.loc("redis", "url"),
    )


@rule(
    "redis-values-without-redis",
    WARNING,
    "redis.externalSecretName or redis.url set while redis.enabled=false",
)
def redis_values_without_redis(ctx: Context, finding: Emit) -> Iterator[Finding]:
    if truthy(ctx.get("redis", "enabled")):
        return
    for key in ("externalSecretName", "url"):
        if ctx.user_set("redis", key) and truthy(ctx.get("redis", key)):
            yield finding(
                f"redis.{key} is set while redis.enabled=false: the pods get no REDIS_URL and run without "
                "the Redis bus, so each replica's clients see only its own events",
                f"set redis.enabled=true, or remove redis.{key}",
                f"redis.{key}",
                ctx.loc("redis", key),
            )
