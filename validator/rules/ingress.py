"""Ingress rules: terminal affinity (stateful /ws/terminal sockets need it, /ws/events must not get it),
annotations on the object the controller actually reads."""

from __future__ import annotations

from aifactory.constants import TERMINAL_PATH
from validator.model import ERROR, WARNING, Finding
from validator.rules.core import Context, rule, truthy

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any

    from validator.rules.core import Emit

NGINX = "nginx.ingress.kubernetes.io/"
TRAEFIK_STICKY = "traefik.ingress.kubernetes.io/service.sticky"
NGINX_AFFINITY_KEYS = ("affinity", "affinity-mode", "session-cookie-")


def _nginx_affinity(annotations: dict[str, Any]) -> bool:
    return str(annotations.get(NGINX + "affinity", "")).lower() == "cookie"


def _traefik_sticky(annotations: dict[str, Any]) -> bool:
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
    if str(ctx.get("terminals", "mode")) == "host":  # any web pod reaches any terminal via its host
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
        "(and ingress.terminalAffinity.controller=nginx or traefik), or terminals.mode=host",
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


@rule("ingress-values-without-ingress", WARNING, "ingress.* values set while ingress.enabled=false")
def ingress_values_without_ingress(ctx: Context, finding: Emit) -> Iterator[Finding]:
    if truthy(ctx.get("ingress", "enabled")):
        return
    # Still used without the Ingress: terminalAffinity (its own rule covers nginx; Traefik's cookie lives on
    # the Service) and, with Traefik affinity, tls (the cookie's Secure flag).
    ta = ctx.mapping("ingress", "terminalAffinity")
    used = {"enabled", "terminalAffinity"}
    if truthy(ta.get("enabled")) and ta.get("controller") == "traefik":
        used.add("tls")
    keys = sorted(
        {
            str(path[1])
            for path in ctx.user_paths
            if len(path) >= 2 and path[0] == "ingress" and path[1] not in used and truthy(ctx.get(*path[:2]))
        }
    )
    if not keys:
        return
    shown = ", ".join(f"ingress.{k}" for k in keys)
    yield finding(
        f"{shown} set while ingress.enabled=false: the chart renders no Ingress, so these values do nothing "
        "(affinity and timeout annotations are dropped)",
        "set ingress.enabled=true (with ingress.hosts), or remove these values if you run your own Ingress",
        f"ingress.{keys[0]}",
        ctx.positions.key(("ingress", keys[0])),
    )
