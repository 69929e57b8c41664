"""The HAProxy config and the chart's ingress come from the same values, so they cannot drift.

Each case renders the chart with real helm from a values file and generates the HAProxy config from the
same file; every routing fact (which paths are pinned, cookie name/path/SameSite/Secure, WebSocket
timeout, affinity mode) must agree. A tampered config must be caught, so the comparison can fail.
"""

from __future__ import annotations

import dataclasses
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from aifactory.constants import TERMINAL_PATH
from deploy.haproxy import LbSettings, lb_settings, load_values, render
from deploy.haproxy import main as haproxy_main
from tests.conftest import CHART, EXAMPLES, run_helm

NGINX = "nginx.ingress.kubernetes.io/"
TRAEFIK = "traefik.ingress.kubernetes.io/service.sticky.cookie"
BASE = {"replicaCount": 3, "redis": {"enabled": True, "url": "redis://redis.example:6379/0"}}

CASES: dict[str, dict[str, Any]] = {
    "nginx-defaults": {"ingress": {"enabled": True, "terminalAffinity": {"enabled": True}}},
    "nginx-custom": {
        "ingress": {
            "enabled": True,
            "tls": [{"secretName": "t", "hosts": ["aifactory.example.com"]}],
            "terminalAffinity": {"enabled": True, "cookieName": "pin-me", "mode": "balanced"},
            "websocketTimeoutSeconds": 1234,
        }
    },
    "traefik": {
        "ingress": {"enabled": True, "terminalAffinity": {"enabled": True, "controller": "traefik"}},
    },
    "no-affinity": {"ingress": {"enabled": True, "websocketTimeoutSeconds": 99}},
    "metrics-exposed": {"ingress": {"enabled": True, "blockMetrics": False}},
}


def _example_files() -> list[Path]:
    """Shipped examples that turn the ingress on: they must agree with HAProxy too."""
    found = []
    for path in sorted(EXAMPLES.glob("*.yaml")):
        data = yaml.safe_load(path.read_text()) or {}
        if isinstance(data, dict) and (data.get("ingress") or {}).get("enabled"):
            found.append(path)
    return found


def ingress_facts(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per routed path: what the rendered chart tells the controller (affinity, cookie, timeout)."""
    service = next(d for d in docs if d["kind"] == "Service")
    svc_ann = service["metadata"].get("annotations") or {}
    facts: dict[str, dict[str, Any]] = {}
    for doc in docs:
        if doc["kind"] != "Ingress":
            continue
        ann = doc["metadata"].get("annotations") or {}
        for rule in doc["spec"]["rules"]:
            for p in rule["http"]["paths"]:
                path = p["path"]
                fact: dict[str, Any] = {
                    "timeout": ann.get(NGINX + "proxy-read-timeout"),
                    "blocked": ann.get(NGINX + "denylist-source-range") == "0.0.0.0/0,::/0"
                    and p["pathType"] == "Exact",
                }
                assert ann.get(NGINX + "proxy-send-timeout") == fact["timeout"], path
                if ann.get(NGINX + "affinity") == "cookie":
                    fact.update(
                        affinity=True,
                        cookie=ann[NGINX + "session-cookie-name"],
                        cookie_path=ann[NGINX + "session-cookie-path"],
                        samesite=ann[NGINX + "session-cookie-samesite"],
                        secure=ann.get(NGINX + "session-cookie-secure") == "true",
                        mode=ann[NGINX + "affinity-mode"],
                    )
                elif svc_ann.get(TRAEFIK) == "true" and path.startswith(svc_ann[TRAEFIK + ".path"]):
                    # Traefik pins per Service; the cookie's Path decides which requests carry it.
                    fact.update(
                        affinity=True,
                        cookie=svc_ann[TRAEFIK + ".name"],
                        cookie_path=svc_ann[TRAEFIK + ".path"],
                        samesite=svc_ann[TRAEFIK + ".samesite"],
                        secure=svc_ann[TRAEFIK + ".secure"] == "true",
                        mode="persistent",
                    )
                else:
                    fact["affinity"] = False
                facts[path] = fact
    return facts


def haproxy_facts(cfg: str) -> dict[str, Any]:
    """The same facts, read back from the generated haproxy.cfg text."""
    tunnel = re.search(r"^\s*timeout tunnel (\d+)s", cfg, re.M)
    acl = re.search(r"^\s*acl terminal path_beg (\S+)", cfg, re.M)
    balanced = cfg.split("backend balanced", 1)[1].split("backend terminal", 1)[0]
    cookie = re.search(r"^\s*cookie (\S+) insert (.*)$", cfg, re.M)
    out: dict[str, Any] = {
        "tunnel": int(tunnel.group(1)) if tunnel else None,
        "terminal_prefix": acl.group(1) if acl else None,
        "balanced_has_cookie": re.search(r"^\s*cookie |\scookie r\d", balanced, re.M) is not None,
        "cookie": None,
    }
    if cookie:
        attrs = dict(re.findall(r'attr "([^=]+)=([^"]*)"', cookie.group(2)))
        out.update(
            cookie=cookie.group(1),
            cookie_path=attrs.get("Path"),
            samesite=attrs.get("SameSite"),
            secure=" secure" in f" {cookie.group(2)}",
        )
    return out


def mismatches(facts: dict[str, dict[str, Any]], settings: LbSettings, cfg: str) -> list[str]:
    """Every disagreement between the rendered ingress, the generator's settings and the config text."""
    hp = haproxy_facts(cfg)
    errors: list[str] = []
    routed = {r.path for r in settings.routes}
    if set(facts) != routed:
        errors.append(f"chart routes {sorted(facts)}, HAProxy model routes {sorted(routed)}")
    for route in settings.routes:
        fact = facts.get(route.path, {})
        if bool(fact.get("affinity")) != route.affinity:
            errors.append(
                f"{route.path}: chart affinity={fact.get('affinity')} HAProxy affinity={route.affinity}"
            )
        if route.websocket and fact.get("timeout") != str(hp["tunnel"]):
            errors.append(
                f"{route.path}: chart timeout {fact.get('timeout')} vs HAProxy tunnel {hp['tunnel']}"
            )
        if route.affinity:
            if hp["terminal_prefix"] != route.path or hp["cookie"] is None:
                errors.append(f"{route.path}: HAProxy does not pin it (acl {hp['terminal_prefix']})")
            for key in ("cookie", "cookie_path", "samesite", "secure"):
                if str(fact.get(key)).lower() != str(hp.get(key)).lower():
                    errors.append(
                        f"{route.path}: chart {key}={fact.get(key)!r} HAProxy {key}={hp.get(key)!r}"
                    )
            if fact.get("mode") != settings.mode:
                errors.append(f"{route.path}: chart mode {fact.get('mode')} vs values mode {settings.mode}")
    for route in settings.routes:
        fact = facts.get(route.path, {})
        denied = f"http-request deny deny_status 403 if {{ path {route.path} }}" in cfg
        if bool(fact.get("blocked")) != route.blocked or denied != route.blocked:
            errors.append(f"{route.path}: chart blocked={fact.get('blocked')} HAProxy denies={denied}")
    if not any(r.affinity for r in settings.routes) and hp["cookie"] is not None:
        errors.append("HAProxy pins terminals but the chart does not")
    if hp["balanced_has_cookie"]:
        errors.append("the balanced backend (/, /ws/events) carries an affinity cookie")
    return errors


def render_both(helm4: str, values_file: Path) -> tuple[dict[str, dict[str, Any]], LbSettings, str]:
    result = run_helm(helm4, "template", "rel", str(CHART), "-f", str(values_file))
    assert result.returncode == 0, result.stderr
    docs = [d for d in yaml.safe_load_all(result.stdout) if d]
    settings = lb_settings(load_values([values_file]))
    cfg = render(settings, ["127.0.0.1:18001", "127.0.0.1:18002", "127.0.0.1:18003"])
    return ingress_facts(docs), settings, cfg


def _write(tmp_path: Path, name: str, case: dict[str, Any]) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({**BASE, **case}))
    return path


@pytest.mark.parametrize("name", sorted(CASES))
def test_haproxy_matches_rendered_ingress(helm4: str, tmp_path: Path, name: str) -> None:
    facts, settings, cfg = render_both(helm4, _write(tmp_path, name, CASES[name]))
    assert mismatches(facts, settings, cfg) == []
    check = subprocess.run(["haproxy", "-c", "-f", "/dev/stdin"], input=cfg, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr


@pytest.mark.parametrize("example", _example_files(), ids=lambda p: p.name)
def test_shipped_examples_match(helm4: str, example: Path) -> None:
    facts, settings, cfg = render_both(helm4, example)
    assert mismatches(facts, settings, cfg) == []


def test_values_change_moves_both(helm4: str, tmp_path: Path) -> None:
    """Changing a value changes the ingress and HAProxy alike: the generator reads, never hardcodes."""
    facts, settings, cfg = render_both(helm4, _write(tmp_path, "c", CASES["nginx-custom"]))
    assert facts[TERMINAL_PATH]["cookie"] == "pin-me" and "cookie pin-me insert" in cfg
    assert facts["/ws/events"]["timeout"] == "1234" and "timeout tunnel 1234s" in cfg
    assert settings.secure and " secure " in cfg


def test_comparison_catches_tampering(helm4: str, tmp_path: Path) -> None:
    """A config that disagrees with the chart in any one fact is reported, so the tests above can fail."""
    facts, settings, _ = render_both(helm4, _write(tmp_path, "d", CASES["nginx-defaults"]))
    servers = ["127.0.0.1:1"]
    for change in (
        {"cookie_name": "other"},
        {"websocket_timeout_s": 60},
        {"affinity": False},
        {"samesite": "Strict"},
        {"secure": True},
        {"mode": "balanced"},
        {"block_metrics": False},
    ):
        tampered = dataclasses.replace(settings, **change)
        assert mismatches(facts, tampered, render(tampered, servers)), change
    cfg = render(settings, servers).replace(
        "acl terminal path_beg /ws/terminal", "acl terminal path_beg /ws/t"
    )
    assert mismatches(facts, settings, cfg)


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ("ingress:\n  websocketTimeoutSeconds: 1h\n", "ingress.websocketTimeoutSeconds"),
        ("ingress:\n  terminalAffinity:\n    cookieName: 'a b'\n", "ingress.terminalAffinity.cookieName"),
        ("ingress:\n  terminalAffinity:\n    controller: envoy\n", "ingress.terminalAffinity.controller"),
        ("- not a mapping\n", "yaml-not-a-mapping"),
        ("ingress: [\n", "invalid YAML"),
    ],
)
def test_bad_values_give_one_line_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], values: str, field: str
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(values)
    assert haproxy_main(["-f", str(bad), "--server", "127.0.0.1:1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and field in err, err
    assert "Traceback" not in err


def test_no_server_is_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert haproxy_main([]) == 2
    assert "--server" in capsys.readouterr().err
