"""Traffic tiers for real: two ui and two agents aifactory-server replicas (one Redis, one auth secret)
behind a real HAProxy whose config deploy.haproxy generates from examples/tiers.yaml, exactly as the
chart's Ingress routes it. A task started through the balancer (POST /api/tasks) runs on an agents replica
and its progress reaches a WebSocket client connected, through the same balancer, to a ui replica."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import BrowserContext, expect
from websockets.asyncio.client import connect

from deploy.haproxy import lb_settings, load_values, render_tiers
from harness.app_servers import ServerSet, http_json, new_secret, start_servers
from harness.ports import free_port, wait_for_port
from harness.redis_servers import RedisServer
from tests.conftest import EXAMPLES
from tests.e2e.lb import SERVED_BY


class TierStack:
    """Redis, one ServerSet per tier (same secret), HAProxy in front; `stop()` ends only these processes."""

    def __init__(self) -> None:
        self.redis = RedisServer().start()
        self.secret = new_secret()
        self.tiers: dict[str, ServerSet] = {}
        self.haproxy: subprocess.Popen[bytes] | None = None
        self.port = free_port()
        self.workdir = Path(tempfile.mkdtemp(prefix="aif-tiers-"))

    def start(self) -> TierStack:
        for tier in ("ui", "agents"):
            names = [f"{tier}{i}" for i in (1, 2)]
            self.tiers[tier] = start_servers(2, redis_url=self.redis.url, secret=self.secret, names=names)
        for servers in self.tiers.values():
            servers.wait_bridge("connected")
        override = self.workdir / "no-tls.yaml"  # HAProxy speaks plain HTTP on loopback here
        override.write_text("ingress:\n  tls: []\n", encoding="utf-8")
        settings = lb_settings(load_values([EXAMPLES / "tiers.yaml", override]))
        backends = {t: [f"127.0.0.1:{s.port}" for s in servers] for t, servers in self.tiers.items()}
        cfg = self.workdir / "haproxy.cfg"
        cfg.write_text(
            render_tiers(settings, backends, bind=f"127.0.0.1:{self.port}", served_by_header=SERVED_BY)
        )
        binary = shutil.which("haproxy")
        if binary is None:  # `make test` installs it (SYSTEM_DEPS)
            raise RuntimeError("haproxy not found: run the tests through `make test`")
        log = open(self.workdir / "haproxy.log", "wb")  # noqa: SIM115 - closed with the process
        self.haproxy = subprocess.Popen([binary, "-db", "-f", str(cfg)], stdout=log, stderr=subprocess.STDOUT,
                                        start_new_session=True)  # fmt: skip
        wait_for_port(self.port, timeout=15)
        return self

    def replica_ids(self, tier: str) -> set[str]:
        return {http_json("GET", s.http + "/readyz")[1]["replica"] for s in self.tiers[tier]}

    def stop(self) -> None:
        if self.haproxy is not None and self.haproxy.poll() is None:
            self.haproxy.send_signal(signal.SIGTERM)
            self.haproxy.wait(timeout=10)
        for servers in self.tiers.values():
            servers.stop()
        self.redis.stop()


@pytest.fixture(scope="module")
def stack() -> Iterator[TierStack]:
    tiers = TierStack()
    try:
        yield tiers.start()
    finally:
        tiers.stop()


async def recv_json(ws: Any, timeout: float = 15.0) -> dict[str, Any]:
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


async def test_task_through_the_balancer_runs_on_agents_and_reaches_a_ui_socket(stack: TierStack) -> None:
    ui_ids, agent_ids = stack.replica_ids("ui"), stack.replica_ids("agents")
    assert len(ui_ids) == 2 and len(agent_ids) == 2 and not ui_ids & agent_ids
    token = stack.tiers["ui"].token("alice", org="org-a")
    lb = f"127.0.0.1:{stack.port}"
    async with connect(f"ws://{lb}/ws/events?token={token}") as ws:
        hello = await recv_json(ws)
        assert hello["type"] == "hello"
        assert hello["replica"] in ui_ids, "/ws/events is routed to the ui tier"
        assert ws.response.headers[SERVED_BY].startswith("ui/")

        status, body = await asyncio.to_thread(
            http_json,
            "POST",
            f"http://{lb}/api/tasks",
            {"name": "tiered", "steps": 3, "interval": 0.1},
            token,
        )
        assert status == 202, body
        assert body["replica"] in agent_ids, "POST /api/tasks is routed to the agents tier"

        progress: list[dict[str, Any]] = []
        deadline = asyncio.get_running_loop().time() + 30
        while not any(e.get("status") == "succeeded" for e in progress):
            assert asyncio.get_running_loop().time() < deadline, f"task events so far: {progress}"
            event = await recv_json(ws)
            if event.get("task_id") == body["task_id"]:
                progress.append(event)
        assert {e["replica"] for e in progress} == {body["replica"]}, "every event was fired on the agent"
        assert [e["step"] for e in progress if e["type"] == "task.progress"] == [0, 1, 2, 3]


async def test_other_paths_stay_on_ui_and_tasks_prefix_matches_by_path_element(stack: TierStack) -> None:
    ui_ids = stack.replica_ids("ui")
    lb = f"http://127.0.0.1:{stack.port}"
    status, body = await asyncio.to_thread(http_json, "GET", lb + "/readyz")
    assert status == 200 and body["replica"] in ui_ids
    # ingress.blockMetrics (default): /metrics is refused at the balancer, still served to Prometheus.
    status, _ = await asyncio.to_thread(http_json, "GET", lb + "/metrics")
    assert status == 403
    status, _ = await asyncio.to_thread(http_json, "GET", stack.tiers["ui"][0].http + "/metrics")
    assert status == 200
    # /api/tasksx is not under /api/tasks (Ingress Prefix semantics): the ui tier answers (404 there).
    status, _ = await asyncio.to_thread(http_json, "GET", lb + "/api/tasksx")
    assert status == 404


@pytest.mark.parametrize("helm_name", ["helm3", "helm4"])
def test_haproxy_tier_routing_agrees_with_the_chart_ingress(helm_name: str) -> None:
    """Every path the chart's Ingress routes goes to the same tier in the generated HAProxy config."""
    import yaml

    from tests.conftest import CHART, HELM_BINARIES, run_helm

    proc = run_helm(
        HELM_BINARIES[helm_name], "template", "aifactory", str(CHART), "-f", str(EXAMPLES / "tiers.yaml")
    )
    assert proc.returncode == 0, proc.stderr
    chart_routes = {
        p["path"]: p["backend"]["service"]["name"].removeprefix("aifactory-")
        for doc in yaml.safe_load_all(proc.stdout)
        if doc and doc["kind"] == "Ingress"
        for rule in doc["spec"]["rules"]
        for p in rule["http"]["paths"]
    }
    settings = lb_settings(load_values([EXAMPLES / "tiers.yaml"]))
    assert chart_routes == {path: settings.tier_for(path) for path in chart_routes}
    assert set(chart_routes.values()) == {"ui", "agents"}
    cfg = render_tiers(settings, {"ui": ["127.0.0.1:1"], "agents": ["127.0.0.1:2"]})
    assert "use_backend agents if route1" in cfg and "default_backend ui" in cfg


def test_haproxy_tier_config_refuses_a_tier_without_servers() -> None:
    from deploy.haproxy import ValuesError

    settings = lb_settings(load_values([EXAMPLES / "tiers.yaml"]))
    with pytest.raises(ValuesError, match="no --tier-server for tier"):
        render_tiers(settings, {"ui": ["127.0.0.1:1"]})


def test_browser_on_ui_tier_sees_a_task_that_runs_on_agents(
    stack: TierStack,
    browser: BrowserContext,  # the Debian chromium fixture (tests/e2e/conftest.py)
) -> None:
    """Debian's chromium through HAProxy: the page and its event socket are served by the ui tier, the
    task it starts runs on the agents tier (its audit record is written there), the bar fills to 100%."""
    lb = f"http://127.0.0.1:{stack.port}"
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(lb + "/")
    page.fill("#token", stack.tiers["ui"].token("erin", org="org-e"))
    page.click("#signin-button")
    expect(page.locator("#conn")).to_have_attribute("data-state", "connected")
    expect(page.locator("#replica")).to_have_attribute("data-replica", re.compile(r".+"))
    assert page.locator("#replica").get_attribute("data-replica") in stack.replica_ids("ui")

    page.fill("#task-name", "tiered build")
    page.click("#task-start")
    row = page.locator("#tasks li").first
    expect(row).to_have_attribute("data-percent", "100", timeout=30_000)

    def started_here(server: Any) -> bool:
        return server.audit_path.exists() and "tiered build" in server.audit_path.read_text()

    assert any(started_here(s) for s in stack.tiers["agents"]), "the task was started on an agents replica"
    assert not any(started_here(s) for s in stack.tiers["ui"]), "no ui replica ran the task"
    assert errors == [], errors
