"""Generate an HAProxy config that routes exactly like the chart's ingress, from the same chart values.

The chart's ingress annotations (cookie name, cookie path, WebSocket timeouts) and this config are both
computed from `chart/values.yaml` merged with the operator's values files, so a value changed in one place
changes both. `tests/e2e/test_haproxy_drift.py` renders the chart with real helm and compares.

Usage: python -m deploy.haproxy -f my-values.yaml --server 10.0.0.5:8000 --server ... > haproxy.cfg
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# The chart's Ingress paths: TERMINAL_PATH carries the affinity cookie and is its Path attribute, so the
# cookie never travels with /ws/events or API calls (they stay free to balance).
from aifactory.constants import EVENTS_PATH, TERMINAL_PATH

DEFAULT_COOKIE = "aifactory-affinity"
METRICS_PATH = "/metrics"
# Plain HTTP request/idle timeouts; WebSockets use `timeout tunnel` from ingress.websocketTimeoutSeconds.
HTTP_TIMEOUT_SECONDS = 60


class ValuesError(ValueError):
    """A values file or value that cannot drive the load balancer; str() is one line with the fix."""


def load_values(files: Iterable[Path], chart_dir: str | None = None) -> dict[str, Any]:
    """The chart's defaults, then each -f file in order, merged and checked by the validator's pipeline.

    One merge for the validator and the load balancer: the HAProxy config is generated from exactly the
    values `aifactory-validate` (and so `helm install -f a -f b`) would accept, or not at all.
    """
    from validator import pipeline
    from validator.chart import Chart, ChartError
    from validator.model import ERROR

    inputs: list[tuple[str, bytes]] = []
    for path in files:
        try:
            inputs.append((str(path), Path(path).read_bytes()))
        except OSError as exc:
            raise ValuesError(f"{path}: cannot read ({exc.strerror}); pass an existing values file") from None
    try:
        result = pipeline.run(Chart(chart_dir), inputs, [])
    except ChartError as exc:
        raise ValuesError(str(exc)) from None
    errors = [f for f in result.findings if f.severity == ERROR]
    if errors:
        first = errors[0]
        where = f"{first.location}: " if first.location else ""
        raise ValuesError(
            f"{where}[{first.rule}] {first.message}; {first.fix} "
            f"(run aifactory-validate for all {len(errors)} problem(s))"
        )
    return result.values


@dataclass(frozen=True)
class Route:
    """One path prefix the ingress routes: pinned by the affinity cookie or not, WebSocket or plain HTTP."""

    path: str
    affinity: bool
    websocket: bool
    # Refused at the edge (403): ingress.blockMetrics keeps /metrics cluster-internal; exact path match.
    blocked: bool = False


@dataclass(frozen=True)
class LbSettings:
    """What the ingress does, as plain data: the same fields the chart turns into annotations."""

    affinity: bool
    controller: str
    cookie_name: str
    cookie_path: str
    samesite: str
    secure: bool
    mode: str
    websocket_timeout_s: int
    # (path prefix, tier) from tierRoutes, longest prefix first; empty without tiers.
    tier_routes: tuple[tuple[str, str], ...] = ()
    block_metrics: bool = False

    def tier_for(self, path: str) -> str:
        """The tier the chart's Ingress sends `path` to: the longest tierRoutes prefix (path elements)."""
        for prefix, tier in self.tier_routes:
            base = prefix.rstrip("/")
            if base == "" or path == base or path.startswith(base + "/"):
                return tier
        raise ValuesError(f"no tierRoutes entry covers {path}; add {{path: /, tier: <tier>}} to tierRoutes")

    @property
    def routes(self) -> tuple[Route, ...]:
        """The chart's Ingress paths: / plain, /ws/events balanced, /ws/terminal pinned if affinity is on,
        plus any other tierRoutes prefix (the chart adds those to its Ingress too)."""
        standard = (
            Route("/", affinity=False, websocket=False),
            Route(EVENTS_PATH, affinity=False, websocket=True),
            Route(TERMINAL_PATH, affinity=self.affinity, websocket=True),
        )
        known = {r.path for r in standard}
        extra = tuple(
            Route(path, affinity=False, websocket=path.startswith("/ws/"))
            for path in sorted({p for p, _ in self.tier_routes} - known)
        )
        blocked = (
            (Route(METRICS_PATH, affinity=False, websocket=False, blocked=True),)
            if self.block_metrics
            else ()
        )
        return standard + extra + blocked

    def deny_lines(self) -> list[str]:
        """Frontend lines refusing the blocked paths, as ingress-nginx's denylist does (403)."""
        return [
            f"    http-request deny deny_status 403 if {{ path {r.path} }}" for r in self.routes if r.blocked
        ]


def lb_settings(values: Mapping[str, Any]) -> LbSettings:
    """Pick the ingress fields out of merged chart values, refusing anything HAProxy cannot express."""
    ingress = values.get("ingress") or {}
    aff = ingress.get("terminalAffinity") or {}
    cookie = aff.get("cookieName") or DEFAULT_COOKIE  # the chart's template applies the same default
    if not isinstance(cookie, str) or any(c in cookie for c in ' ;,="\t'):
        raise ValuesError(
            f"ingress.terminalAffinity.cookieName={cookie!r} is not a cookie name; "
            f"set it like {DEFAULT_COOKIE}"
        )
    timeout = ingress.get("websocketTimeoutSeconds")
    if not isinstance(timeout, int) or isinstance(timeout, bool) or timeout < 1:
        raise ValuesError(
            f"ingress.websocketTimeoutSeconds={timeout!r} is not a positive whole number; set it e.g. to 3600"
        )
    mode = aff.get("mode", "persistent")
    if mode not in ("persistent", "balanced"):
        raise ValuesError(f"ingress.terminalAffinity.mode={mode!r}; set it to persistent or balanced")
    controller = aff.get("controller", "nginx")
    if controller not in ("nginx", "traefik"):
        raise ValuesError(f"ingress.terminalAffinity.controller={controller!r}; set it to nginx or traefik")
    routes = values.get("tierRoutes") or []
    tiers = values.get("tiers") or {}
    pairs = [(str(r.get("path")), str(r.get("tier"))) for r in routes if isinstance(r, dict)] if tiers else []
    for path, tier in pairs:  # the validator refuses these too; never emit a backend that does not exist
        if tier not in tiers:
            raise ValuesError(f"tierRoutes sends {path} to tier {tier!r}, which is not a key of tiers")
    return LbSettings(
        tier_routes=tuple(sorted(pairs, key=lambda pair: -len(pair[0]))),
        block_metrics=bool(ingress.get("blockMetrics")),
        affinity=bool(aff.get("enabled")),
        controller=controller,
        cookie_name=cookie,
        cookie_path=TERMINAL_PATH,
        samesite="Lax",
        secure=bool(ingress.get("tls")),
        mode=mode,
        websocket_timeout_s=timeout,
    )


def _head(settings: LbSettings, bind: str, source: str) -> list[str]:
    """Global, defaults and the start of the frontend (bind, denied paths), shared by both layouts."""
    return [
        f"# Generated by deploy.haproxy from {source}; do not edit by hand.",
        "global",
        "    maxconn 4000",
        "",
        "defaults",
        "    mode http",
        "    option http-server-close",
        "    timeout connect 5s",
        f"    timeout client {HTTP_TIMEOUT_SECONDS}s",
        f"    timeout server {HTTP_TIMEOUT_SECONDS}s",
        "    timeout http-request 10s",
        f"    timeout tunnel {settings.websocket_timeout_s}s"
        "  # ingress.websocketTimeoutSeconds (nginx proxy-read/send-timeout)",
        "    timeout client-fin 5s",
        "",
        "frontend aifactory",
        f"    bind {bind}",
        *settings.deny_lines(),
    ]


def render(
    settings: LbSettings,
    servers: Sequence[str],
    bind: str = "127.0.0.1:8080",
    served_by_header: str | None = None,
) -> str:
    """The haproxy.cfg text. `servers` are host:port of the replicas; names r1..rN are the cookie values.

    `served_by_header` (tests, debugging) adds a response header naming the replica that answered.
    """
    if not servers:
        raise ValuesError("no --server given; pass at least one replica as host:port")
    names = [f"r{i}" for i in range(1, len(servers) + 1)]
    lines = [
        *_head(settings, bind, "the chart values"),
        f"    acl terminal path_beg {TERMINAL_PATH}",
        "    use_backend terminal if terminal",
        "    default_backend balanced",
        "",
        "# / (API, portal) and /ws/events: any replica; Redis fan-out delivers every event everywhere.",
        "backend balanced",
        "    balance roundrobin",
        "    option httpchk GET /readyz",
    ]
    if served_by_header:
        lines.append(f"    http-response set-header {served_by_header} %s")
    lines += [f"    server {n} {s} check inter 1s fall 2 rise 1" for n, s in zip(names, servers, strict=True)]
    lines += [
        "",
        f"# {TERMINAL_PATH}: stateful PTY per replica, pinned by the affinity cookie scoped to its path.",
        "backend terminal",
        "    balance roundrobin",
        "    option httpchk GET /readyz",
    ]
    if served_by_header:
        lines.append(f"    http-response set-header {served_by_header} %s")
    if settings.affinity:
        lines.append(_cookie_line(settings))
        lines += [
            f"    server {n} {s} check inter 1s fall 2 rise 1 cookie {n}"
            for n, s in zip(names, servers, strict=True)
        ]
    else:
        lines += [
            f"    server {n} {s} check inter 1s fall 2 rise 1" for n, s in zip(names, servers, strict=True)
        ]
    return "\n".join(lines) + "\n"


def _cookie_line(settings: LbSettings) -> str:
    """The affinity cookie of the terminal backend.

    HAProxy always writes "path=/" first; the later Path attribute wins (RFC 6265 5.2.4 / 5.3 step 7)."""
    secure = " secure" if settings.secure else ""
    return (
        f"    cookie {settings.cookie_name} insert indirect nocache httponly{secure}"
        f' attr "SameSite={settings.samesite}" attr "Path={settings.cookie_path}"'
    )


def _server_lines(servers: Sequence[str], prefix: str, cookie: bool) -> list[str]:
    return [
        f"    server {prefix}{i} {s} check inter 1s fall 2 rise 1"
        + (f" cookie {prefix}{i}" if cookie else "")
        for i, s in enumerate(servers, start=1)
    ]


def render_tiers(
    settings: LbSettings,
    tier_servers: Mapping[str, Sequence[str]],
    bind: str = "127.0.0.1:8080",
    served_by_header: str | None = None,
) -> str:
    """haproxy.cfg for traffic tiers: each tierRoutes prefix goes to its tier's replicas, as the chart's
    Ingress sends it to that tier's Service; the terminal path is pinned within its tier by the cookie."""
    if not settings.tier_routes:
        raise ValuesError("tier servers given but the values set no tiers/tierRoutes")
    used = {tier for _, tier in settings.tier_routes}
    missing = sorted(t for t in used if not tier_servers.get(t))
    if missing:
        raise ValuesError(
            f"no --tier-server for tier(s) {', '.join(missing)}; pass e.g. {missing[0]}=host:port"
        )
    terminal_tier = settings.tier_for(TERMINAL_PATH)
    lines = [
        *_head(settings, bind, "the chart values (tiers, tierRoutes)"),
        f"    acl terminal path_beg {TERMINAL_PATH}",
        f"    use_backend {terminal_tier}_terminal if terminal",
    ]
    default = settings.tier_for("/")
    for i, (prefix, tier) in enumerate(settings.tier_routes, start=1):
        base = prefix.rstrip("/")
        if base == "":
            continue
        # Ingress Prefix semantics: /api/tasks matches /api/tasks and /api/tasks/..., not /api/tasksx.
        lines += [f"    acl route{i} path {base}", f"    acl route{i} path_beg {base}/"]
        lines.append(f"    use_backend {tier} if route{i}")
    lines.append(f"    default_backend {default}")
    for tier in sorted(used):
        lines += ["", f"# tier {tier}: its own replicas; Redis carries its events to every tier."]
        lines += [f"backend {tier}", "    balance roundrobin", "    option httpchk GET /readyz"]
        if served_by_header:
            lines.append(f"    http-response set-header {served_by_header} {tier}/%s")
        lines += _server_lines(tier_servers[tier], f"{tier}-", cookie=False)
    lines += [
        "",
        f"# {TERMINAL_PATH} on tier {terminal_tier}: pinned by the affinity cookie scoped to its path.",
    ]
    lines += [f"backend {terminal_tier}_terminal", "    balance roundrobin", "    option httpchk GET /readyz"]
    if served_by_header:
        lines.append(f"    http-response set-header {served_by_header} {terminal_tier}/%s")
    if settings.affinity:
        lines.append(_cookie_line(settings))
    lines += _server_lines(tier_servers[terminal_tier], f"{terminal_tier}-", cookie=settings.affinity)
    return "\n".join(lines) + "\n"


def _tier_server(text: str) -> tuple[str, str]:
    tier, sep, server = text.partition("=")
    if not sep or not tier or not server:
        raise argparse.ArgumentTypeError(f"{text!r}: expected TIER=host:port, e.g. agents=10.0.0.7:8000")
    return tier, server


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.haproxy", description=__doc__.splitlines()[0])
    parser.add_argument(
        "-f", "--values", action="append", default=[], type=Path, help="values file (repeatable)"
    )
    parser.add_argument("--server", action="append", default=[], help="replica host:port (repeatable)")
    parser.add_argument(
        "--tier-server", action="append", default=[], type=_tier_server,
        help="with tiers: TIER=host:port of one replica of that tier (repeatable)",
    )  # fmt: skip
    parser.add_argument("--bind", default="127.0.0.1:8080", help="address HAProxy listens on")
    args = parser.parse_args(argv)
    try:
        settings = lb_settings(load_values(args.values))
        if args.tier_server:
            by_tier: dict[str, list[str]] = {}
            for tier, server in args.tier_server:
                by_tier.setdefault(tier, []).append(server)
            text = render_tiers(settings, by_tier, bind=args.bind)
        else:
            text = render(settings, args.server, bind=args.bind)
    except ValuesError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
