"""Headless Chromium (Debian's, driven by Playwright; never a downloaded browser) through HAProxy.

The portal page signs in with a token, lands its event socket on some replica B, and shows an event
fired directly on another replica A; a task started from the page fills its progress bar to 100%; the
terminal pane runs a command on the replica its affinity cookie pins. Screenshot: test-artifacts/.
"""

from __future__ import annotations

import re
import time

from playwright.sync_api import BrowserContext, Page, expect

from aifactory.constants import TERMINAL_PATH
from harness.app_servers import ServerProc, http_json
from tests.e2e.conftest import ARTIFACTS, HostStack, Stack


def sign_in(page: Page, stack: Stack | HostStack, token: str) -> str:
    page.goto(stack.lb.http + "/")
    page.fill("#token", token)
    page.click("#signin-button")
    expect(page.locator("#conn")).to_have_attribute("data-state", "connected")
    expect(page.locator("#replica")).to_have_attribute("data-replica", re.compile(r".+"))
    return page.locator("#replica").get_attribute("data-replica") or ""


def screen(page: Page) -> str:
    return str(page.evaluate("window.aifTerminal.screenText()"))


def wait_screen(page: Page, pattern: str, timeout: float = 15.0) -> re.Match[str]:
    """Poll the xterm.js buffer (what the user sees) until `pattern` matches."""
    deadline = time.monotonic() + timeout
    while not (found := re.search(pattern, screen(page))):
        if time.monotonic() > deadline:
            raise AssertionError(f"{pattern!r} never appeared on the terminal screen:\n{screen(page)}")
        page.wait_for_timeout(100)
    return found


def type_line(page: Page, line: str) -> None:
    page.locator("#terminal").click()
    page.keyboard.type(line)
    page.keyboard.press("Enter")


def drive_terminal(page: Page) -> None:
    """Colours, a full-screen program, resize following the pane, Ctrl-C reaching the shell."""
    type_line(page, "echo hello-from-$AIFACTORY_REPLICA_ID; printf '\\033[31mred\\033[0m-ok\\n'")
    # the shell's answer, not the echoed command line: $AIFACTORY_REPLICA_ID expanded to a uuid
    wait_screen(page, r"hello-from-[0-9a-f]{8}-")
    wait_screen(page, r"(?m)^red-ok")  # the escape sequences were interpreted, not printed
    red = page.evaluate(
        """() => { const b = window.aifTerminal.term.buffer.active;
        for (let i = b.length - 1; i >= 0; i--) { const l = b.getLine(i);
          if (l.translateToString(true).startsWith('red-ok')) return l.getCell(0).getFgColor(); }
        return -1; }"""
    )
    assert red == 1, f"'red' is not drawn in ANSI colour 1 (got {red})"

    type_line(page, "top -n 1 -b | head -3; top -n 1 >/dev/null; echo top-$((6*7))")
    wait_screen(page, r"top-42")  # full-screen top drew and exited (alternate screen restored)

    page.evaluate("document.getElementById('terminal').style.width = '520px'")
    page.evaluate("document.getElementById('terminal').style.height = '220px'")
    page.wait_for_function("window.aifTerminal.term.cols < 70")
    rows, cols = page.evaluate("[window.aifTerminal.term.rows, window.aifTerminal.term.cols]")
    type_line(page, "stty size")
    wait_screen(page, rf"(?m)^{rows} {cols}\s*$")

    type_line(page, "sleep 1000")
    page.wait_for_timeout(300)
    page.keyboard.press("Control+C")
    type_line(page, "echo after-ctrl-c-$?")
    wait_screen(page, r"after-ctrl-c-130")  # 128 + SIGINT: the sleep was interrupted, not the shell

    type_line(page, "vi -c 'normal ihello-vi' /tmp/vi-$$.txt")
    wait_screen(page, r"hello-vi")
    page.wait_for_timeout(300)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "terminal-vi.png"), full_page=True)
    page.keyboard.press("Escape")
    page.keyboard.type(":q!")
    page.keyboard.press("Enter")
    type_line(page, "echo vi-done-$((1+1))")
    wait_screen(page, r"vi-done-2")


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

    # the terminal pane: xterm.js on a real shell on the replica the affinity cookie pins
    page.fill("#terminal-id", "dana-term")
    page.click("#terminal-open")
    expect(page.locator("#terminal-state")).to_have_attribute("data-state", "open")
    drive_terminal(page)
    cookies = {c["name"]: c for c in browser.cookies(stack.lb.http)}
    assert "aifactory-affinity" not in cookies, "the affinity cookie must not travel with / or /ws/events"
    pinned = {c["name"]: c for c in browser.cookies(f"{stack.lb.http}{TERMINAL_PATH}/dana-term")}
    assert pinned["aifactory-affinity"]["path"] == TERMINAL_PATH
    assert pinned["aifactory-affinity"]["httpOnly"]

    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "portal.png"), full_page=True)
    expect(page.locator("#signin")).to_be_hidden()
    assert errors == [], errors


def test_portal_terminal_through_terminal_hosts_survives_a_web_replica_kill(
    hstack: HostStack, browser: BrowserContext
) -> None:
    """AIFACTORY_TERMINALS=host behind HAProxy without affinity: the same terminal checks, then SIGKILL of
    the replica relaying the socket; the page reattaches by itself to the same shell, nothing doubled."""
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    sign_in(page, hstack, hstack.replicas.token("dana", org="org-d"))
    page.fill("#terminal-id", "dana-hosted")
    page.click("#terminal-open")
    expect(page.locator("#terminal-state")).to_have_attribute("data-state", "open")
    drive_terminal(page)
    # a random number drawn once per shell names it ($$ is 2 in every sandbox's PID namespace)
    type_line(page, "echo before-${SHELL_ID:=$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')}-kill")
    mark = wait_screen(page, r"before-(\d+)-kill")[1]
    pid = page.locator("#terminal").get_attribute("data-pid")  # ready.pid: the sandbox's leader on the host
    assert pid and int(pid) > 0
    relaying = wait_relaying_replica(hstack)
    relaying.kill()
    page.wait_for_function("document.getElementById('terminal').dataset.attaches === '2'", timeout=30_000)
    expect(page.locator("#terminal-state")).to_have_attribute("data-state", "open")
    assert page.locator("#terminal").get_attribute("data-pid") == pid  # the same shell
    type_line(page, "echo after-$SHELL_ID-kill")
    wait_screen(page, rf"after-{mark}-kill")  # the same shell: its marker is still set
    assert screen(page).count(f"before-{mark}-kill") == 1  # resumed at its offset: nothing replayed twice
    page.screenshot(path=str(ARTIFACTS / "terminal-host-after-replica-kill.png"), full_page=True)
    assert errors == [], errors


def wait_relaying_replica(hstack: HostStack, timeout: float = 15.0) -> ServerProc:
    """The replica whose /readyz counts the one relayed terminal socket."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for replica in hstack.replicas:
            if replica.readyz()[1].get("terminals") == 1:
                return replica
        time.sleep(0.1)
    raise AssertionError("no replica reports the relayed terminal socket")


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
