"""Cross-field rules: one function per rule, each returning findings with a stable id.

The chart-parity rules (CHART_RULES) mirror the chart's render-time refusals (`aifactory.validate` in
_helpers.tpl) with the same ids and Go-template truthiness, so `helm template` fails exactly when one of
them reports an error. The rest are multi-replica mistakes Helm cannot see. Rules read the merged values
defensively: they also run when the schema failed, and must never crash on a wrong type.
"""

from __future__ import annotations

from aifactory.constants import TERMINAL_PATH
from validator.model import ERROR, WARNING, Finding, Loc, Positions

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    Emit = Callable[..., Finding]  # Rule.finding bound to the running rule

CHART_RULES = (
    "redis-source-missing",
    "redis-source-ambiguous",
    "redis-url-invalid",
    "hpa-min-above-max",
    "extra-env-reserved",
)
RESERVED_ENV = ("REDIS_URL", "REDIS_CHANNEL", "AIFACTORY_AUTH_SECRET", "PORT", "LOG_LEVEL")
NGINX = "nginx.ingress.kubernetes.io/"
TRAEFIK_STICKY = "traefik.ingress.kubernetes.io/service.sticky"
NGINX_AFFINITY_KEYS = ("affinity", "affinity-mode", "session-cookie-")
LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1", "0.0.0.0", "ip6-localhost")


class Context:
    """Merged values plus where each was written, and which paths the user (not the chart) set."""

    def __init__(self, values: dict, positions: Positions, user_paths: set[tuple]) -> None:
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

    def mapping(self, *path: str) -> dict:
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
            return f"autoscaling.maxReplicas={self.get('autoscaling', 'maxReplicas')}"
        return f"replicaCount={self.get('replicaCount')}"


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

    def __init__(self, rule_id: str, severity: str, summary: str, check: Callable) -> None:
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


RULES: list[Rule] = []


def rule(rule_id: str, severity: str, summary: str) -> Callable[[Callable], Rule]:
    """Register `check(ctx, finding)` as a rule; the module-level name becomes the (callable) Rule."""

    def register(check: Callable) -> Rule:
        item = Rule(rule_id, severity, summary, check)
        RULES.append(item)
        return item

    return register


def run_rules(ctx: Context) -> list[Finding]:
    findings: list[Finding] = []
    for item in RULES:
        findings.extend(item.check(ctx, item.finding))
    return findings


# --- the chart's own refusals (same ids, same conditions) -------------------------------------------


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


@rule("extra-env-reserved", ERROR, "extraEnv sets a variable the chart manages (REDIS_URL, PORT, ...)")
def extra_env_reserved(ctx: Context, finding: Emit) -> Iterator[Finding]:
    env = ctx.get("extraEnv")
    if not isinstance(env, list):
        return
    for i, item in enumerate(env):
        name = item.get("name") if isinstance(item, dict) else None
        if isinstance(name, str) and name in RESERVED_ENV:
            yield finding(
                f"extraEnv sets {name}, which the chart manages itself; the chart refuses to render",
                "remove it from extraEnv and use redis.externalSecretName / redis.url / redis.channel / "
                "auth.existingSecret / server.logLevel instead",
                f"extraEnv[{i}].name",
                ctx.loc("extraEnv", i, "name"),
            )


# --- multi-replica mistakes Helm cannot see ---------------------------------------------------------


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
            "redis.url is set inline: the spec reserves it for dev; the URL ends up in a chart-managed "
            "Secret rendered from your values",
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


@rule("hpa-target-without-requests", ERROR, "HPA CPU/memory target without resources.requests.cpu/memory")
def hpa_target_without_requests(ctx: Context, finding: Emit) -> Iterator[Finding]:
    if not truthy(ctx.get("autoscaling", "enabled")):
        return
    requests = ctx.get("resources", "requests")
    requests = requests if isinstance(requests, dict) else {}
    for metric, key in (
        ("cpu", "targetCPUUtilizationPercentage"),
        ("memory", "targetMemoryUtilizationPercentage"),
    ):
        if truthy(ctx.get("autoscaling", key)) and not truthy(requests.get(metric)):
            yield finding(
                f"autoscaling.{key} is set but resources.requests.{metric} is not: the HPA cannot compute "
                f"{metric} utilisation and will never scale",
                f"set resources.requests.{metric} (e.g. {'250m' if metric == 'cpu' else '256Mi'}), "
                f"or set autoscaling.{key}=null",
                f"autoscaling.{key}",
                ctx.loc("autoscaling", key),
            )


def _nginx_affinity(annotations: dict) -> bool:
    return str(annotations.get(NGINX + "affinity", "")).lower() == "cookie"


def _traefik_sticky(annotations: dict) -> bool:
    return str(annotations.get(TRAEFIK_STICKY + ".cookie", "")).lower() == "true"


@rule(
    "ingress-without-terminal-affinity",
    WARNING,
    "several replicas behind the ingress without terminal affinity",
)
def ingress_without_terminal_affinity(ctx: Context, finding: Emit) -> Iterator[Finding]:
    _, high = ctx.replica_range()
    if high <= 1 or not truthy(ctx.get("ingress", "enabled")):
        return
    if truthy(ctx.get("ingress", "terminalAffinity", "enabled")):
        return
    if _nginx_affinity(ctx.mapping("ingress", "annotations")) or _traefik_sticky(
        ctx.mapping("service", "annotations")
    ):
        return
    yield finding(
        f"{ctx.replicas_text()} behind the ingress without terminal affinity: a /ws/terminal WebSocket that "
        "lands on another replica loses its terminal (terminal streams are stateful per replica)",
        "set ingress.terminalAffinity.enabled=true "
        "(and ingress.terminalAffinity.controller=nginx or traefik)",
        "ingress.terminalAffinity.enabled",
        ctx.loc("ingress", "terminalAffinity", "enabled"),
    )


@rule("affinity-cookie-path", WARNING, "hand-written affinity cookie not scoped to /ws/terminal")
def affinity_cookie_path(ctx: Context, finding: Emit) -> Iterator[Finding]:
    checks = (
        ("ingress", _nginx_affinity, NGINX + "session-cookie-path", "ingress-nginx"),
        ("service", _traefik_sticky, TRAEFIK_STICKY + ".cookie.path", "Traefik"),
    )
    for obj, enabled, key, name in checks:
        annotations = ctx.mapping(obj, "annotations")
        if not enabled(annotations):
            continue
        path = annotations.get(key)
        if str(path or "").rstrip("/") == TERMINAL_PATH:
            continue
        shown = f"is {path!r}" if path else "is not set (the cookie covers every path)"
        yield finding(
            f"the {name} affinity cookie path {shown}: /ws/events and the portal get pinned to one "
            "replica too",
            f"set {obj}.annotations.{key}: /ws/terminal, or remove the hand-written annotations and use "
            "ingress.terminalAffinity.enabled=true (the chart scopes the cookie itself)",
            f"{obj}.annotations",
            ctx.loc(obj, "annotations", key) or ctx.loc(obj, "annotations"),
        )


@rule(
    "affinity-annotation-wrong-object",
    ERROR,
    "nginx affinity on the Service or Traefik sticky on the Ingress",
)
def affinity_annotation_wrong_object(ctx: Context, finding: Emit) -> Iterator[Finding]:
    service = ctx.mapping("service", "annotations")
    ingress = ctx.mapping("ingress", "annotations")
    for key in service:
        if (
            isinstance(key, str)
            and key.startswith(NGINX)
            and key[len(NGINX) :].startswith(NGINX_AFFINITY_KEYS)
        ):
            yield finding(
                f"service.annotations has {key}, but ingress-nginx reads affinity annotations from the "
                "Ingress: no affinity would apply",
                "use ingress.terminalAffinity.enabled=true with controller=nginx "
                "(or move it to ingress.annotations)",
                f"service.annotations.{key}",
                ctx.loc("service", "annotations", key),
            )
    for key in ingress:
        if isinstance(key, str) and key.startswith(TRAEFIK_STICKY):
            yield finding(
                f"ingress.annotations has {key}, but Traefik reads sticky-cookie annotations from the "
                "Service: no affinity would apply",
                "use ingress.terminalAffinity.enabled=true with controller=traefik "
                "(or move it to service.annotations)",
                f"ingress.annotations.{key}",
                ctx.loc("ingress", "annotations", key),
            )


@rule("annotation-managed-by-chart", ERROR, "an annotation the chart itself renders on the same object")
def annotation_managed_by_chart(ctx: Context, finding: Emit) -> Iterator[Finding]:
    if truthy(ctx.get("ingress", "enabled")):
        managed = {NGINX + "proxy-read-timeout", NGINX + "proxy-send-timeout"}
        ta = ctx.mapping("ingress", "terminalAffinity")
        if truthy(ta.get("enabled")) and ta.get("controller") == "nginx":
            managed |= {
                NGINX + k for k in ("affinity", "affinity-mode", "session-cookie-name", "session-cookie-path")
            }
            managed |= {NGINX + "session-cookie-samesite", NGINX + "session-cookie-secure"}
        for key in sorted(k for k in ctx.mapping("ingress", "annotations") if k in managed):
            yield finding(
                f"ingress.annotations sets {key}, which the chart also renders on its WebSocket Ingress: the "
                "rendered object has the key twice and the result depends on the tool applying it",
                "remove it; use ingress.websocketTimeoutSeconds / ingress.terminalAffinity.* instead",
                f"ingress.annotations.{key}",
                ctx.loc("ingress", "annotations", key),
            )
    ta = ctx.mapping("ingress", "terminalAffinity")
    if truthy(ta.get("enabled")) and ta.get("controller") == "traefik":
        for key in sorted(
            k for k in ctx.mapping("service", "annotations") if str(k).startswith(TRAEFIK_STICKY)
        ):
            yield finding(
                f"service.annotations sets {key} while ingress.terminalAffinity renders Traefik's sticky "
                "cookie on the Service itself: the key would appear twice",
                "remove it; the chart sets the sticky cookie (name from ingress.terminalAffinity.cookieName)",
                f"service.annotations.{key}",
                ctx.loc("service", "annotations", key),
            )


@rule("affinity-mode-balanced-with-hpa", WARNING, "ingress-nginx affinity-mode balanced with the HPA")
def affinity_mode_balanced_with_hpa(ctx: Context, finding: Emit) -> Iterator[Finding]:
    if not truthy(ctx.get("autoscaling", "enabled")):
        return
    ta = ctx.mapping("ingress", "terminalAffinity")
    if truthy(ta.get("enabled")) and ta.get("controller") == "nginx" and ta.get("mode") == "balanced":
        where, loc = "ingress.terminalAffinity.mode", ctx.loc("ingress", "terminalAffinity", "mode")
    elif str(ctx.mapping("ingress", "annotations").get(NGINX + "affinity-mode", "")).lower() == "balanced":
        key = NGINX + "affinity-mode"
        where, loc = f"ingress.annotations.{key}", ctx.loc("ingress", "annotations", key)
    else:
        return
    fix = f"set {where}: persistent"
    yield finding(
        "affinity mode balanced with autoscaling: every HPA scale-up rebalances sessions onto new pods, "
        "killing open terminals",
        fix,
        where,
        loc,
    )


@rule("affinity-controller-mismatch", WARNING, "terminalAffinity.controller differs from ingress.className")
def affinity_controller_mismatch(ctx: Context, finding: Emit) -> Iterator[Finding]:
    ta = ctx.mapping("ingress", "terminalAffinity")
    cls = ctx.get("ingress", "className")
    if not (truthy(ctx.get("ingress", "enabled")) and truthy(ta.get("enabled")) and isinstance(cls, str)):
        return
    controller = ta.get("controller")
    other = {"nginx": "traefik", "traefik": "nginx"}.get(str(controller))
    if other and other in cls.lower() and str(controller) not in cls.lower():
        yield finding(
            f"ingress.className is {cls!r} but ingress.terminalAffinity.controller is {controller!r}: the "
            "affinity annotations target a controller that does not serve this Ingress",
            f"set ingress.terminalAffinity.controller={other}",
            "ingress.terminalAffinity.controller",
            ctx.loc("ingress", "terminalAffinity", "controller"),
        )


@rule(
    "terminal-affinity-without-ingress",
    WARNING,
    "terminalAffinity.enabled with ingress.enabled=false (nginx)",
)
def terminal_affinity_without_ingress(ctx: Context, finding: Emit) -> Iterator[Finding]:
    ta = ctx.mapping("ingress", "terminalAffinity")
    if (
        truthy(ta.get("enabled"))
        and ta.get("controller") == "nginx"
        and not truthy(ctx.get("ingress", "enabled"))
    ):
        yield finding(
            "ingress.terminalAffinity.enabled=true but ingress.enabled=false: the nginx affinity lives on "
            "the chart's Ingress, so nothing pins terminals",
            "set ingress.enabled=true, or configure affinity on the Ingress you manage yourself",
            "ingress.terminalAffinity.enabled",
            ctx.loc("ingress", "terminalAffinity", "enabled"),
        )


def _unavailable(value: object, pods: int) -> int | None:
    """PDB maxUnavailable resolved like the disruption controller (percentages round up)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.endswith("%") and value[:-1].isdigit():
        return -(-int(value[:-1]) * pods // 100)
    return None


@rule("pdb-blocks-eviction", ERROR, "PodDisruptionBudget that can never allow an eviction")
def pdb_blocks_eviction(ctx: Context, finding: Emit) -> Iterator[Finding]:
    low, _ = ctx.replica_range()
    pdb = ctx.mapping("podDisruptionBudget")
    if not truthy(pdb.get("enabled")) or low <= 1:
        return
    allowed = _unavailable(pdb.get("maxUnavailable"), low)
    if allowed is not None and allowed <= 0:
        yield finding(
            f"podDisruptionBudget.maxUnavailable={pdb.get('maxUnavailable')} allows no eviction: node drains "
            "and cluster upgrades would block forever",
            "set podDisruptionBudget.maxUnavailable to 1 (or a percentage that rounds to at least one pod)",
            "podDisruptionBudget.maxUnavailable",
            ctx.loc("podDisruptionBudget", "maxUnavailable"),
        )


@rule("pdb-allows-full-outage", WARNING, "PDB maxUnavailable covers every pod at the minimum replica count")
def pdb_allows_full_outage(ctx: Context, finding: Emit) -> Iterator[Finding]:
    low, _ = ctx.replica_range()
    pdb = ctx.mapping("podDisruptionBudget")
    if not truthy(pdb.get("enabled")) or low <= 1:
        return
    allowed = _unavailable(pdb.get("maxUnavailable"), low)
    if allowed is not None and allowed >= low:
        yield finding(
            f"podDisruptionBudget.maxUnavailable={pdb.get('maxUnavailable')} lets a drain evict all {low} "
            "pods at once: the budget protects nothing",
            f"set podDisruptionBudget.maxUnavailable below {low} (1 is the usual choice)",
            "podDisruptionBudget.maxUnavailable",
            ctx.loc("podDisruptionBudget", "maxUnavailable"),
        )


@rule(
    "pdb-not-rendered",
    WARNING,
    "podDisruptionBudget.enabled set explicitly, but at most one pod is guaranteed",
)
def pdb_not_rendered(ctx: Context, finding: Emit) -> Iterator[Finding]:
    low, _ = ctx.replica_range()
    if (
        low <= 1
        and ctx.user_set("podDisruptionBudget", "enabled")
        and truthy(ctx.get("podDisruptionBudget", "enabled"))
    ):
        source = "autoscaling.minReplicas" if truthy(ctx.get("autoscaling", "enabled")) else "replicaCount"
        yield finding(
            f"podDisruptionBudget.enabled=true but {source}={low}: the chart renders no PodDisruptionBudget "
            "(one pod cannot be protected), so a drain may take the service down",
            f"raise {source} to 2 or more for a budget that keeps one pod serving",
            "podDisruptionBudget.enabled",
            ctx.loc("podDisruptionBudget", "enabled"),
        )


@rule("replica-count-ignored", WARNING, "replicaCount set while autoscaling.enabled=true (the HPA decides)")
def replica_count_ignored(ctx: Context, finding: Emit) -> Iterator[Finding]:
    if truthy(ctx.get("autoscaling", "enabled")) and ctx.user_set("replicaCount"):
        yield finding(
            "replicaCount is ignored while autoscaling.enabled=true (the Deployment has no replicas field; "
            "the HPA picks between minReplicas and maxReplicas)",
            "remove replicaCount, and set autoscaling.minReplicas instead",
            "replicaCount",
            ctx.loc("replicaCount"),
        )


@rule("image-tag-latest", WARNING, "image.tag is latest (replicas may run different builds)")
def image_tag_latest(ctx: Context, finding: Emit) -> Iterator[Finding]:
    tag = ctx.get("image", "tag")
    if isinstance(tag, str) and tag.lower() == "latest":
        yield finding(
            "image.tag is 'latest': pods started at different times may run different builds, and a rollback "
            "cannot return to the previous one",
            "pin an immutable version (leave image.tag empty for the chart's appVersion)",
            "image.tag",
            ctx.loc("image", "tag"),
        )
