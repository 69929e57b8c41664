"""Attacks from inside a terminal against real servers, real Redis and real shells (issue #10, shell half).

Every test here failed before the sandbox: the shell ran with the server's uid, so `/proc/<server>/environ`
was one read away, `/dev/pts/N` of another user was writable, 24 concurrent opens all started, and each
refused open was audited as `terminal.open`.
"""

from __future__ import annotations

import asyncio
import base64
import glob
import json
import os
import re
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from aifactory.constants import TERMINAL_PATH, WS_INTERNAL_ERROR, WS_POLICY_VIOLATION, WS_TRY_AGAIN_LATER
from aifactory.terminal import SANDBOX_UNAVAILABLE
from harness.app_servers import ServerProc, ServerSet, base_env, new_secret, server_command, start_servers
from harness.redis_servers import RedisServer, wait_until
from tests.server.conftest import REDIS_PASSWORD
from tests.server.shells import host_pid, leader_pid, read_until
from tests.server.test_readonly_root import APP_VIEW, sandbox_script
from tests.server.wsclient import EventClient, refused

pytestmark = pytest.mark.timeout(120)

WAIT = 20.0
POD_UID = 10001  # the image's user


def start_wrapped(workdir: Path, wrapper: list[str], env: dict[str, str], secret: str) -> ServerSet:
    """One server started through `wrapper` (argv that ends by exec-ing the server)."""
    server = ServerProc(name="wrapped", env=env, workdir=workdir)
    env["PORT"] = str(server.port)
    with open(server.log_path, "ab") as log:
        server.proc = subprocess.Popen(
            wrapper, env=env, stdout=log, stderr=subprocess.STDOUT, cwd="/", start_new_session=True
        )
    servers = ServerSet([server], secret)
    try:
        server.wait_ready()
    except BaseException:
        servers.stop()
        raise
    return servers


def start_as_pod_user(workdir: Path, extra_env: dict[str, str]) -> ServerSet:
    """The server as the image runs it: uid 10001, read-only root, a private /tmp (root needed to set
    that up; an unprivileged test run is already the non-root case and starts the server as itself)."""
    secret = new_secret()
    if os.geteuid() == 0:
        env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "HOME": "/tmp",
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONPATH": APP_VIEW,
        }
        wrapper = ["unshare", "--mount", "--propagation", "private", "sh", "-c", sandbox_script()]
    else:
        env = base_env(workdir)
        wrapper = server_command()
    env.update(AIFACTORY_HOST="127.0.0.1", AIFACTORY_AUTH_SECRET=secret, LOG_LEVEL="INFO", **extra_env)
    return start_wrapped(workdir, wrapper, env, secret)


# What pods get in the way: a seccomp profile that forbids new user namespaces (here:
# user.max_user_namespaces=0: no sandbox at all), and the runtime's masked /proc (here: /proc/keys covered:
# no fresh procfs can be mounted).
DENIALS = {
    "no-userns": "echo 0 > /proc/sys/user/max_user_namespaces",
    "masked-proc": "mount --bind /dev/null /proc/keys",
}


def denied_wrapper(denial: str) -> list[str]:
    """Run the server in its own user namespace where the sandbox is denied in the way `denial` names."""
    setup = DENIALS[denial]
    return [
        "unshare",
        "--user",
        "--map-root-user",
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        f'{setup} && exec "$@"',
        "sh",
        *server_command(),
    ]


def term_url(servers: ServerSet, term: str, user: str) -> str:
    return servers[0].ws_url(f"{TERMINAL_PATH}/{term}", token=servers.token(user, "org-a"))


async def run_report(ws: ClientConnection, script: str) -> str:
    """Run `script` in the shell; return its stdout+stderr (base64 on the wire: the echo never matches)."""
    tag = uuid.uuid4().hex[:8]
    encoded = base64.b64encode(script.encode()).decode()
    await ws.send(
        f"echo {encoded} | base64 -d > /tmp/{tag}.sh; "
        f"echo B-{tag}-$((1)); sh /tmp/{tag}.sh 2>&1 | base64 -w0; echo; echo E-{tag}-$((2))\n"
    )
    found = await read_until(ws, rf"B-{tag}-1\r\n([A-Za-z0-9+/=\r\n]*)E-{tag}-2")
    return base64.b64decode(re.sub(r"\s", "", found[1])).decode(errors="replace")


ATTACK = r"""
P={pid}
for f in /proc/$P/environ /proc/$P/cmdline /proc/$P/maps /proc/$PPID/environ /proc/1/environ {paths}; do
  if cat "$f" > /tmp/got 2>/dev/null && [ -s /tmp/got ]; then echo "read $f"; cat /tmp/got; echo
  else echo "denied $f"; fi
done
if ls /proc/$P/fd > /dev/null 2>&1; then echo "read fd"; ls -l /proc/$P/fd/; else echo "denied fd"; fi
for d in /proc/[0-9]*; do
  tr '\0' '\n' < $d/environ 2>/dev/null; tr '\0' ' ' < $d/cmdline 2>/dev/null; echo
done
python3 - $P <<'EOF'
import ctypes, os, sys
pid = int(sys.argv[1])
libc = ctypes.CDLL(None, use_errno=True)
attached = libc.ptrace(16, pid, 0, 0)  # PTRACE_ATTACH
print("ptrace", attached, ctypes.get_errno())
if attached == 0:  # let the attacked server go on answering: wait for its stop, detach, continue
    os.waitpid(pid, 0x40000000)  # __WALL
    libc.ptrace(17, pid, 0, 0)  # PTRACE_DETACH
    os.kill(pid, 18)  # SIGCONT
try:
    os.close(os.open(f"/proc/{pid}/mem", os.O_RDONLY))
    print("mem opened")
except OSError as exc:
    print("mem denied", exc.errno)
EOF
"""


def assert_nothing_leaked(report: str, secrets: list[str], targets: list[str]) -> None:
    for secret in secrets:
        assert secret not in report, f"a server secret is readable from the terminal:\n{report}"
    for target in targets:
        assert f"denied {target}\n" in report, f"{target} readable from the terminal:\n{report}"
    assert "denied fd\n" in report, report
    ptrace = re.search(r"ptrace (-?\d+) (\d+)", report)
    assert ptrace and ptrace[1] == "-1" and int(ptrace[2]) in (1, 3), report  # EPERM or ESRCH
    assert re.search(r"mem denied (2|13)", report), report  # ENOENT (not in our pid ns) or EACCES


@pytest.fixture(scope="module")
def secured(module_redis: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerSet]:
    """One replica on a password-protected Redis, shells sandboxed (the default), audit in a file."""
    servers = start_servers(
        1,
        redis_url=module_redis.url,
        workdir=tmp_path_factory.mktemp("secured"),
        extra_env={"AIFACTORY_TERMINAL_SHELL": "/bin/sh", "AIFACTORY_TERMINAL_GRACE_SECONDS": "1"},
    )
    try:
        servers.wait_bridge("connected")
        yield servers
    finally:
        servers.stop()


async def test_a_shell_cannot_read_any_secret_of_the_server(secured: ServerSet) -> None:
    server = secured[0]
    assert server.proc is not None
    files = [str(server.audit_path), str(server.log_path), str(server.workdir)]
    async with connect(term_url(secured, f"t-{uuid.uuid4().hex[:6]}", "mallory")) as ws:
        report = await run_report(ws, ATTACK.format(pid=server.proc.pid, paths=" ".join(files)))
    procs = ["/proc/{pid}/environ", "/proc/{pid}/cmdline", "/proc/{pid}/maps"]
    targets = [p.format(pid=server.proc.pid) for p in procs] + files
    assert_nothing_leaked(report, [secured.secret, REDIS_PASSWORD], targets)
    assert "AIFACTORY_TERMINAL_USER=mallory" in report  # the scan did read the sandbox's own environs


async def test_a_shell_cannot_read_the_dev_secret_file(tmp_path_factory: pytest.TempPathFactory) -> None:
    workdir = tmp_path_factory.mktemp("devmode")
    servers = start_servers(1, secret="", workdir=workdir, extra_env={"AIFACTORY_TERMINAL_SHELL": "/bin/sh"})
    try:
        dev_file = workdir / "dev-secret"
        dev_secret = dev_file.read_text().strip()
        servers = ServerSet(servers.servers, dev_secret)
        server = servers[0]
        assert server.proc is not None
        async with connect(term_url(servers, "t-dev", "mallory")) as ws:
            report = await run_report(ws, ATTACK.format(pid=server.proc.pid, paths=str(dev_file)))
        assert_nothing_leaked(report, [dev_secret], [str(dev_file), f"/proc/{server.proc.pid}/environ"])
    finally:
        servers.stop()


CANARY = "canary-" + uuid.uuid4().hex  # any env value the server was started with stays out of reach


@pytest.fixture(scope="module")
def pod_user(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerSet]:
    servers = start_as_pod_user(
        tmp_path_factory.mktemp("pod"), {"AIFACTORY_TERMINAL_SHELL": "/bin/sh", "SOME_DB_PASSWORD": CANARY}
    )
    try:
        yield servers
    finally:
        servers.stop()


async def test_as_the_image_uid_a_shell_is_sandboxed_too(pod_user: ServerSet) -> None:
    server = pod_user[0]
    assert server.proc is not None
    async with connect(term_url(pod_user, "t-pod", "mallory")) as ws:
        report = await run_report(ws, ATTACK.format(pid=server.proc.pid, paths="") + "id -u; touch /x || :")
    assert_nothing_leaked(report, [pod_user.secret, CANARY], [f"/proc/{server.proc.pid}/environ"])
    if os.geteuid() == 0:
        assert f"\n{POD_UID}\n" in report, report


async def test_users_cannot_write_to_signal_or_read_each_other(secured: ServerSet) -> None:
    server = secured[0]
    assert server.proc is not None
    alice_term, bob_term = f"t-a-{uuid.uuid4().hex[:6]}", f"t-b-{uuid.uuid4().hex[:6]}"
    async with (
        connect(term_url(secured, alice_term, "alice")) as alice,
        connect(term_url(secured, bob_term, "bob")) as bob,
    ):
        seen: list[str] = []
        await alice.send("echo alice-private > /workspace/diary; echo ns-$$-pid\n")
        alice_pid = host_pid(
            leader_pid(secured, alice_term), int((await read_until(alice, r"ns-(\d+)-pid", seen))[1])
        )
        alice_pts = os.readlink(f"/proc/{alice_pid}/fd/0")
        assert alice_pts.startswith("/dev/pts/")
        alice_ws = glob.glob(f"{tempfile.gettempdir()}/aifactory-terminals-*/{alice_term}-*")
        alice_dir = alice_ws[0] if alice_ws else "/nonexistent"  # asserted below, after the attack
        attack = f"""
for pts in {alice_pts} /dev/pts/[0-9]*; do
  echo INTRUDER > $pts 2>/dev/null && echo "wrote $pts" || echo "denied $pts"
done
for pid in {alice_pid} {leader_pid(secured, alice_term)} {server.proc.pid}; do
  kill -0 $pid 2>/dev/null && echo "killed $pid" || echo "denied kill $pid"  # -0: could it be signalled
done
cat {alice_dir}/diary 2>/dev/null || echo "denied diary"
ls -A /workspace; find /tmp /dev /run /workspace -name diary 2>/dev/null; echo "no diary elsewhere"
cat {server.audit_path} 2>/dev/null || echo "denied audit"
"""
        report = await run_report(bob, attack)
        await alice.send("echo alive-$((6*7))\n")
        await read_until(alice, "alive-42", seen)
    assert "wrote" not in report and "killed" not in report and "alice-private" not in report, report
    assert f"denied {alice_pts}" in report and "denied diary" in report and "denied audit" in report, report
    assert report.count("denied kill") == 3, report
    assert "INTRUDER" not in "".join(seen)
    assert len(alice_ws) == 1 and Path(alice_dir, "diary").read_text() == "alice-private\n"
    assert server.proc.poll() is None


@pytest.fixture(scope="module")
def capped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerSet]:
    servers = start_servers(
        1,
        workdir=tmp_path_factory.mktemp("capped"),
        extra_env={
            "AIFACTORY_TERMINAL_SHELL": "/bin/sh",
            "AIFACTORY_TERMINAL_MAX": "6",
            "AIFACTORY_TERMINAL_GRACE_SECONDS": "0",
            "AIFACTORY_MAX_SOCKETS_PER_USER": "3",
        },
    )
    try:
        yield servers
    finally:
        servers.stop()


def audit_records(server: ServerProc, action: str) -> list[dict[str, object]]:
    lines = server.audit_path.read_text().splitlines() if server.audit_path.exists() else []
    return [r for r in map(json.loads, lines) if r["action"] == action]


async def _open_or_refusal(url: str) -> tuple[ClientConnection | None, int | None]:
    ws = await connect(url, open_timeout=WAIT)
    try:
        await asyncio.wait_for(ws.recv(), WAIT)  # the shell's first prompt
        return ws, None
    except ConnectionClosed as exc:
        return None, exc.rcvd.code if exc.rcvd else None


async def test_terminal_max_holds_under_24_concurrent_opens(capped: ServerSet) -> None:
    before = len(audit_records(capped[0], "terminal.open"))
    urls = [term_url(capped, f"t-race-{i}", f"racer-{i}") for i in range(24)]
    outcomes = await asyncio.gather(*(_open_or_refusal(url) for url in urls))
    opened = [ws for ws, _ in outcomes if ws is not None]
    codes = [code for ws, code in outcomes if ws is None]
    try:
        assert (len(opened), len(codes)) == (6, 18), f"opened {len(opened)} of 24 with a max of 6"
        assert set(codes) == {WS_TRY_AGAIN_LATER}
        assert len(audit_records(capped[0], "terminal.open")) - before == 6, "refused opens were audited"
    finally:
        await asyncio.gather(*(ws.close() for ws in opened))
    wait_until(lambda: capped[0].readyz()[1]["terminals"] == 0, "terminals reaped")


async def test_per_user_socket_cap_covers_events_and_terminals(capped: ServerSet) -> None:
    server = capped[0]
    alice = capped.token("alice", "org-a")
    first = await EventClient.connect(server.ws_url(token=alice))
    second = await EventClient.connect(server.ws_url(token=alice))
    async with connect(term_url(capped, "t-cap", "alice")) as term:
        await read_until(term, r"[$#] ")
        code, reason = await refused(server.ws_url(token=alice))
        assert (code, reason) == (
            WS_TRY_AGAIN_LATER,
            "too many connections for this user on this replica (limit 3)",
        )
        code, _ = await refused(term_url(capped, "t-cap-2", "alice"))
        assert code == WS_TRY_AGAIN_LATER
        other = await EventClient.connect(
            server.ws_url(token=capped.token("bob", "org-a"))
        )  # others unaffected
        await other.close()
    await first.close()

    async def reconnects() -> bool:
        try:
            client = await EventClient.connect(server.ws_url(token=alice))
        except AssertionError:
            return False
        await client.close()
        return True

    for _ in range(100):  # the server frees a slot when it sees the close
        if await reconnects():
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError("alice could not reconnect after closing sockets")
    await second.close()


async def test_refused_opens_are_not_audited_and_their_log_lines_are_rate_limited(capped: ServerSet) -> None:
    server = capped[0]
    term = f"t-own-{uuid.uuid4().hex[:6]}"
    async with connect(term_url(capped, term, "alice")) as ws:
        await read_until(ws, r"[$#] ")
        for _ in range(30):
            code, _ = await refused(term_url(capped, term, "mallory"))
            assert code == WS_POLICY_VIOLATION
    opens = [r for r in audit_records(server, "terminal.open") if r["terminal"] == term]
    assert len(opens) == 1 and opens[0]["actor"]["sub"] == "alice", opens  # type: ignore[index]
    assert server.log_text().count(f"terminal {term} refused for mallory") == 1


async def test_ctrl_c_interrupts_a_foreground_job_in_the_sandbox(capped: ServerSet) -> None:
    async with connect(term_url(capped, "t-ctrlc", "alice")) as ws:
        seen: list[str] = []
        await ws.send("sleep 60; echo not-interrupted\n")
        await read_until(ws, "sleep 60", seen)
        await asyncio.sleep(0.5)  # let sleep become the foreground job
        started = asyncio.get_running_loop().time()
        await ws.send("\x03")
        await ws.send("echo after-$((20+22))\n")
        await read_until(ws, "after-42", seen)
        assert asyncio.get_running_loop().time() - started < 10
        assert "\nnot-interrupted" not in "".join(seen)


def _start_denied(workdir: Path, mode: str, denial: str = "no-userns") -> ServerSet:
    env = base_env(workdir)
    secret = new_secret()
    env.update(
        AIFACTORY_AUTH_SECRET=secret,
        AIFACTORY_AUDIT_LOG=str(workdir / "audit.jsonl"),
        AIFACTORY_TERMINAL_SHELL="/bin/sh",
        AIFACTORY_TERMINAL_SANDBOX=mode,
        LOG_LEVEL="INFO",
    )
    return start_wrapped(workdir, denied_wrapper(denial), env, secret)


async def test_no_sandbox_means_one_error_and_1011_never_a_silent_fallback(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    servers = _start_denied(tmp_path_factory.mktemp("denied"), "on")
    try:
        server = servers[0]
        log = server.wait_for_log("terminal sandbox unavailable")
        errors = [line for line in log.splitlines() if " ERROR " in line]
        assert len(errors) == 1 and "ERROR aifactory.terminal: terminal sandbox unavailable" in errors[0]
        assert "AIFACTORY_TERMINAL_SANDBOX=off" in errors[0] and "user namespaces" in errors[0]
        assert "bwrap: Creating new namespace failed" in errors[0], errors[0]  # bwrap's own reason
        for term in ("t-1", "t-2"):
            assert await refused(term_url(servers, term, "alice")) == (WS_INTERNAL_ERROR, SANDBOX_UNAVAILABLE)
        client = await EventClient.connect(server.ws_url(token=servers.token("alice", "org-a")))
        await client.close()  # the rest of the server serves
        assert audit_records(server, "terminal.open") == []
        assert [line for line in server.log_text().splitlines() if " ERROR " in line] == errors
    finally:
        servers.stop()


async def test_a_masked_proc_gives_shells_an_empty_proc_and_one_warning_not_less_isolation(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    servers = _start_denied(tmp_path_factory.mktemp("masked"), "on", "masked-proc")
    try:
        server = servers[0]
        assert server.proc is not None
        async with connect(term_url(servers, "t-masked", "mallory")) as ws:
            report = await run_report(
                ws, ATTACK.format(pid=server.proc.pid, paths="") + "echo proc-entries=$(ls -A /proc | wc -l)"
            )
        assert_nothing_leaked(report, [servers.secret], [f"/proc/{server.proc.pid}/environ"])
        assert "proc-entries=0" in report, report
        log = server.log_text()
        assert log.count("WARNING aifactory.terminal: terminal sandbox without a fresh /proc") == 1
        assert " ERROR " not in log
    finally:
        servers.stop()


async def test_sandbox_off_is_a_warning_and_shells_start(tmp_path_factory: pytest.TempPathFactory) -> None:
    servers = _start_denied(tmp_path_factory.mktemp("off"), "off")
    try:
        server = servers[0]
        async with connect(term_url(servers, "t-off", "alice")) as ws:
            await ws.send("echo up-$((1+1))\n")
            await read_until(ws, "up-2")
        log = server.log_text()
        assert log.count("WARNING aifactory.terminal: AIFACTORY_TERMINAL_SANDBOX=off") == 1
        assert " ERROR " not in log
    finally:
        servers.stop()


async def test_the_server_is_not_dumpable_even_for_an_unsandboxed_shell_of_its_own_uid(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    servers = start_as_pod_user(
        tmp_path_factory.mktemp("undumpable"),
        {"AIFACTORY_TERMINAL_SANDBOX": "off", "AIFACTORY_TERMINAL_SHELL": "/bin/sh"},
    )
    try:
        server = servers[0]
        assert server.proc is not None
        pid = server.proc.pid
        async with connect(term_url(servers, "t-same-uid", "mallory")) as ws:
            report = await run_report(
                ws, f"id -u; tr '\\0' '\\n' < /proc/$PPID/environ; ls /proc/{pid}/fd | wc -l"
            )
        assert servers.secret not in report, report
        assert "Permission denied" in report, report
        if os.geteuid() == 0:
            assert report.split()[0] == str(POD_UID), report
            outside = subprocess.run(
                [
                    "setpriv",
                    f"--reuid={POD_UID}",
                    f"--regid={POD_UID}",
                    "--clear-groups",
                    "cat",
                    f"/proc/{pid}/environ",
                ],
                capture_output=True,
                check=False,
            )
        else:
            outside = subprocess.run(["cat", f"/proc/{pid}/environ"], capture_output=True, check=False)
        assert outside.returncode != 0 and servers.secret.encode() not in outside.stdout
    finally:
        servers.stop()
