"""Headless Chromium (Debian's, driven by Playwright; never a downloaded browser) through HAProxy.

The portal page signs in with a token, lands its event socket on some replica B, and shows an event
fired directly on another replica A; a task started from the page fills its progress bar to 100%; the
terminal pane runs a command on the replica its affinity cookie pins. Screenshot: test-artifacts/.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import BrowserContext, Page, expect, sync_playwright

from aifactory.constants import TERMINAL_PATH
from harness.app_servers import http_json
from tests.conftest import ROOT
from tests.e2e.conftest import Stack

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = ROOT / "test-artifacts"


@pytest.fixture
def browser() -> Iterator[BrowserContext]:
    if not Path(CHROMIUM).is_file():  # `make test` installs Debian's chromium (SYSTEM_DEPS)
        raise RuntimeError(f"{CHROMIUM} missing: run the tests through `make test`")
    profile = tempfile.mkdtemp(prefix="aif-chromium-")  # a fresh --user-data-dir every time
    with sync_playwright() as pw:
        ctx = pw.chromium.launch_persistent_context(
            profile,
            executable_path=CHROMIUM,
            headless=True,
            args=FLAGS,
            viewport={"width": 1200, "height": 860},
        )
        try:
            yield ctx
        finally:
            ctx.close()
            shutil.rmtree(profile, ignore_errors=True)


def sign_in(page: Page, stack: Stack, token: str) -> str:
    page.goto(stack.lb.http + "/")
    page.fill("#token", token)
    page.click("#signin-button")
    expect(page.locator("#conn")).to_have_attribute("data-state", "connected")
    expect(page.locator("#replica")).to_have_attribute("data-replica", re.compile(r".+"))
    return page.locator("#replica").get_attribute("data-replica") or ""


def test_portal_through_haproxy(stack: Stack, browser: BrowserContext) -> None:
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    replica_b = sign_in(page, stack, stack.replicas.token("dana", org="org-d"))
    ids = {s.readyz()[1]["replica"]: s for s in stack.replicas}
    assert replica_b in ids

    # an event fired directly on a different replica A reaches the page on B through Redis
    replica_a = next(s for rid, s in ids.items() if rid != replica_b)
    service = stack.replicas.token("firer", role="service")
    event = {"type": "deploy.finished", "note": f"fired on {replica_a.name}"}
    status, body = http_json(
        "POST", replica_a.http + "/api/events", {"scope": "broadcast", "event": event}, service
    )
    assert status == 202 and body["replica"] != replica_b
    expect(page.locator('#events li[data-type="deploy.finished"]')).to_contain_text(
        f"fired on {replica_a.name}"
    )

    # a task started from the page (its POST is balanced to any replica) fills its progress bar
    page.fill("#task-name", "nightly build")
    page.click("#task-start")
    row = page.locator("#tasks li").first
    expect(row).to_have_attribute("data-percent", "100", timeout=20_000)
    expect(row.locator(".tstatus")).to_have_text("100%")
    assert row.locator("progress").evaluate("el => el.value") == 100

    # the terminal pane: a real shell on the replica the affinity cookie pins
    page.fill("#terminal-id", "dana-term")
    page.click("#terminal-open")
    expect(page.locator("#terminal-state")).to_have_attribute("data-state", "open")
    page.fill("#terminal-input", "echo hello-from-$AIFACTORY_REPLICA_ID")
    page.press("#terminal-input", "Enter")
    # the shell's answer, not the echoed command line: $AIFACTORY_REPLICA_ID expanded to a uuid
    expect(page.locator("#terminal-output")).to_contain_text(
        re.compile(r"hello-from-[0-9a-f]{8}-"), timeout=10_000
    )
    cookies = {c["name"]: c for c in browser.cookies(stack.lb.http)}
    assert "aifactory-affinity" not in cookies, "the affinity cookie must not travel with / or /ws/events"
    pinned = {c["name"]: c for c in browser.cookies(f"{stack.lb.http}{TERMINAL_PATH}/dana-term")}
    assert pinned["aifactory-affinity"]["path"] == TERMINAL_PATH
    assert pinned["aifactory-affinity"]["httpOnly"]

    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "portal.png"), full_page=True)
    expect(page.locator("#signin")).to_be_hidden()
    assert errors == [], errors


def test_portal_progress_bar_keeps_moving_through_a_kill_of_its_replica(
    stack: Stack, browser: BrowserContext
) -> None:
    """The page's event socket is on B; a task runs on A; B is SIGKILLed mid-task. The portal reconnects
    (through HAProxy, to a live replica) with `since`, and the bar goes on to 100 %."""
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    token = stack.replicas.token("erin", org="org-e")
    replica_b = sign_in(page, stack, token)
    ids = {s.readyz()[1]["replica"]: s for s in stack.replicas}
    b = ids[replica_b]
    a = next(s for rid, s in ids.items() if rid != replica_b)
    status, body = http_json(
        "POST", a.http + "/api/tasks", {"name": "survivor", "steps": 30, "interval": 0.3}, token
    )
    assert status == 202
    row = page.locator(f'#tasks li[data-task="{body["task_id"]}"]')
    expect(row).to_have_attribute("data-percent", re.compile(r"^([1-9]\d?)$"), timeout=10_000)
    before = int(row.get_attribute("data-percent") or "0")
    assert b.proc is not None
    b.proc.kill()
    b.proc.wait()
    try:
        expect(page.locator("#replica")).not_to_have_attribute("data-replica", replica_b, timeout=30_000)
        expect(row).to_have_attribute("data-percent", "100", timeout=30_000)
        assert int(row.get_attribute("data-percent") or "0") > before
        expect(row).to_have_attribute("data-status", "succeeded")
        # recovered, not merely reconnected: every step shown exactly once (the ones fired while the
        # page was away were replayed)
        steps = page.locator('#events li[data-type="task.progress"]').evaluate_all(
            "els => els.map(e => JSON.parse(e.textContent.slice('task.progress'.length)))"
        )
        mine = sorted(ev["step"] for ev in steps if ev.get("task_id") == body["task_id"])
        assert mine == list(range(31)), mine
        assert errors == [], errors
    finally:
        b.start()
        b.wait_ready()
        b.wait_bridge("connected")
