"""AIFACTORY_TERMINALS=host: three web replicas, two terminal hosts, Redis, HAProxy without affinity.

A terminal opened through replica A is used through B and C (same shell); SIGKILL of A while the shell
streams output loses no byte and keeps the PID; the hosts accept only requests the web tier signed;
stopping a host closes its terminals with WS_TERMINAL_LOST and a new terminal can be opened.
"""

from __future__ import annotations

import asyncio
import os
import re

import pytest
import redis
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from aifactory.constants import TERMINAL_PATH, WS_INTERNAL_ERROR, WS_POLICY_VIOLATION, WS_TERMINAL_LOST
from aifactory.host_auth import HEADER, HostRequestSigner
from aifactory.terminal import SANDBOX_UNAVAILABLE
from harness.app_servers import base_env, new_secret, run_server_once, server_command, start_servers
from harness.redis_servers import RedisServer
from harness.terminal_client import TerminalClient
from tests.e2e.conftest import HostStack
from tests.server.conftest import REDIS_PASSWORD
from tests.server.shells import host_pid
from tests.server.test_terminal_security import DENIALS, start_wrapped
from tests.server.wsclient import refused

pytestmark = pytest.mark.timeout(240)

LINES = 400
SHELL_MARK = "${SHELL_ID:=$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')}"


async def reconnect(client: TerminalClient, url: str, attempts: int = 50) -> dict[str, object]:
    """Like the portal: retry until some replica answers (a dead one refuses or drops the connection)."""
    for _ in range(attempts):
        try:
            return await client.connect(url)
        except (OSError, InvalidStatus, AssertionError, TimeoutError):
            await asyncio.sleep(0.2)
        except Exception:
            await asyncio.sleep(0.2)
    raise AssertionError("no replica took the reconnect")


async def test_a_terminal_opened_through_a_is_used_through_b_and_c(hstack: HostStack) -> None:
    a, b, c = hstack.replicas
    client = TerminalClient(hstack.url(a, "shared", "hana"))
    first = await client.connect()
    assert first["new"] is True
    # a random number drawn once per shell names it ($$ is 2 in every sandbox's PID namespace)
    await client.send(f"echo mark-{SHELL_MARK}-host-$AIFACTORY_REPLICA_ID-end\n")
    mark = (await client.read_until(r"mark-(\d+)-host"))[1]
    pid = first["pid"]  # the host's child leading the shell's sandbox
    for n, replica in enumerate((b, c), start=1):
        await client.ws.close()  # type: ignore[union-attr]
        await client.wait_closed()
        ready = await client.connect(hstack.url(replica, "shared", "hana"))
        assert ready["pid"] == pid and ready["new"] is False and ready["replica"] == first["replica"]
        await client.send(f"echo via-{n}-$((40+{n}))-$SHELL_ID\n")
        await client.read_until(rf"via-{n}-{40 + n}-{mark}\b")  # the same shell: its marker is still set
    assert client.text().count(f"mark-{mark}-host") == 1  # reattaches replayed nothing twice
    await client.close()


async def test_another_user_gets_their_own_shell_for_the_same_id(hstack: HostStack) -> None:
    mine = TerminalClient(hstack.url(None, "main", "hana"))
    theirs = TerminalClient(hstack.url(None, "main", "ivo"))
    p1 = (await mine.connect())["pid"]
    p2 = (await theirs.connect())["pid"]
    assert p1 != p2
    await theirs.send("echo user-$AIFACTORY_TERMINAL_USER\n")
    await theirs.read_until("user-ivo")
    await mine.close()
    await theirs.close()


async def test_sigkill_of_the_replica_mid_stream_loses_no_byte_and_keeps_the_pid(hstack: HostStack) -> None:
    extra = start_servers(
        1,
        redis_url=hstack.redis.url,
        secret=hstack.replicas.secret,
        extra_env={"AIFACTORY_TERMINALS": "host"},
        names=["doomed"],
    )
    doomed = extra[0]
    client = TerminalClient(hstack.url(doomed, "survivor", "hana"))
    pid = (await client.connect())["pid"]
    await client.read_until(r"[$#] ")  # the first prompt: it must not land among the numbered lines
    await client.send(
        f"i=0; while [ $i -lt {LINES} ]; do i=$((i+1)); echo line-$i; sleep 0.005; done; echo done-$((4*2))\n"
    )
    await client.read_until(r"line-40\r\n")
    doomed.kill()  # mid-stream: no close frame, the relay's connection to the host just drops
    await client.wait_closed()
    await client.send("echo typed-during-outage-$((7*6))\n")  # kept and resent on reattach
    ready = await reconnect(client, hstack.url(None, "survivor", "hana"))  # through HAProxy, any replica
    assert ready["pid"] == pid and ready["new"] is False
    await client.read_until(r"done-8", timeout=60)
    await client.read_until(r"typed-during-outage-42", timeout=30)
    numbers = [int(n) for n in re.findall(r"(?m)^line-(\d+)\r$", client.text())]
    assert numbers == list(range(1, LINES + 1)), "output lost or duplicated across the kill"
    await client.close()
    extra.stop()


async def test_a_host_accepts_only_requests_signed_by_the_web_tier(hstack: HostStack) -> None:
    host = hstack.hosts[0]
    token = hstack.replicas.token("hana", "org-h")
    base = f"ws://127.0.0.1:{host.port}/attach/sneaky?user=hana"
    forged = HostRequestSigner(new_secret()).sign(user="hana", terminal="sneaky", host="x", token_exp=2**31)
    host_id = host.readyz()[1]["host"]
    good = HostRequestSigner(hstack.replicas.secret)
    for_other_user = good.sign(user="ivo", terminal="sneaky", host=host_id, token_exp=2**31)
    stale = good.sign(user="hana", terminal="sneaky", host=host_id, token_exp=2**31, now=1_000_000)
    attempts: list[tuple[str, dict[str, str]]] = [
        (base + f"&token={token}", {}),  # a user token is worth nothing on a host
        (base, {"Authorization": f"Bearer {token}"}),
        (base, {}),  # unsigned
        (base, {HEADER: forged}),  # signed with another key
        (base, {HEADER: for_other_user}),  # signed for another user: the MAC covers the user
        (base, {HEADER: stale}),  # replayed long after
        (base, {HEADER: "h1.1.2.zz.x"}),
    ]
    for url, headers in attempts:
        with pytest.raises(InvalidStatus) as refused:
            async with connect(url, additional_headers=headers, open_timeout=10):
                pass
        assert refused.value.response.status_code == 403, (url, headers)
    assert not redis.Redis.from_url(hstack.redis.url).keys("aifactory:th:term:sneaky:*")  # nothing opened


SHELL_ATTACK = """python3 - <<'PY'
import socket
s = socket.create_connection(("127.0.0.1", PORT))
s.sendall(b"GET /attach/victim?user=hana HTTP/1.1\\r\\nHost: x\\r\\n"
          b"Upgrade: websocket\\r\\nConnection: Upgrade\\r\\n"
          b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\\r\\nSec-WebSocket-Version: 13\\r\\n"
          b"x-aifactory-host-request: h1.1.2.00.x\\r\\n\\r\\n")
print("host-said", s.recv(200).split(b"\\r\\n")[0].decode())
PY
"""


async def test_a_shell_cannot_impersonate_the_web_tier_on_a_host_port(hstack: HostStack) -> None:
    client = TerminalClient(hstack.url(None, "attacker", "mallory"))
    await client.connect()
    await client.send("echo secret=[${AIFACTORY_AUTH_SECRET:-none}] redis=[${REDIS_URL:-none}]\n")
    await client.read_until(r"secret=\[none\] redis=\[none\]")
    for host in hstack.hosts:
        await client.send(SHELL_ATTACK.replace("PORT", str(host.port)))
        await client.read_until(r"host-said HTTP/1.1 403")
        client.output.clear()
    await client.close()


async def test_sigkill_of_a_host_retries_then_says_the_shell_is_lost(hstack: HostStack) -> None:
    extra = start_servers(
        1,
        redis_url=hstack.redis.url,
        secret=hstack.replicas.secret,
        extra_env={"AIFACTORY_TERMINAL_SHELL": "/bin/sh"},
        command="terminal-host",
        names=["doomed-host"],
    )
    doomed_id = extra[0].readyz()[1]["host"]
    landed = None
    for i in range(8):  # new terminals go to the host with the most free slots: one lands on the new host
        client = TerminalClient(hstack.url(None, f"probe-{i}", "hana"))
        if (await client.connect())["replica"] == doomed_id:
            landed = client
            break
        await client.close()
    assert landed is not None, "no terminal was placed on the new host"
    extra[0].kill()
    assert await landed.wait_closed() == 1013  # the relay lost the host: retry
    deadline = asyncio.get_running_loop().time() + 40
    codes = []
    while asyncio.get_running_loop().time() < deadline:
        async with connect(landed.url) as ws:
            await ws.wait_closed()
            codes.append(ws.close_code)
        if codes[-1] == WS_TERMINAL_LOST:
            break
        await asyncio.sleep(0.5)
    assert codes[-1] == WS_TERMINAL_LOST and set(codes) <= {1013, WS_TERMINAL_LOST}, codes
    fresh = TerminalClient(landed.url)
    assert (await fresh.connect())["new"] is True  # and the next open starts a new shell elsewhere
    await fresh.close()


async def test_stopping_a_host_closes_its_terminals_4410_and_a_new_one_opens(hstack: HostStack) -> None:
    client = TerminalClient(hstack.url(None, "fragile", "hana"))
    ready = await client.connect()
    owner = next(h for h in hstack.hosts if h.readyz()[1].get("host") == ready["replica"])
    owner.stop()  # SIGTERM: a rolling restart of the host
    assert await client.wait_closed() == WS_TERMINAL_LOST
    again = TerminalClient(hstack.url(None, "fragile", "hana"))
    fresh = await again.connect()
    assert fresh["new"] is True and fresh["replica"] != ready["replica"]
    await again.send("echo reborn-$((1+1))\n")
    await again.read_until("reborn-2")
    await again.close()


def test_host_mode_without_redis_is_a_one_line_error() -> None:
    result = run_server_once({"AIFACTORY_TERMINALS": "host"})
    assert result.returncode != 0
    assert "AIFACTORY_TERMINALS=host needs REDIS_URL" in result.stderr and "Traceback" not in result.stderr


async def test_bad_token_is_refused_by_the_replica_before_any_host_is_contacted(hstack: HostStack) -> None:
    async with connect(f"{hstack.lb.ws}{TERMINAL_PATH}/x?token=nope") as ws:
        await ws.wait_closed()
        assert ws.close_code == WS_POLICY_VIOLATION


# ---- the sandbox on a terminal host (the same bubblewrap sandbox as a local shell) --------------------

PROC_SCAN = (
    "for f in /proc/$PPID/environ /proc/1/environ /proc/[0-9]*/environ; do "
    'cat "$f" 2>/dev/null | tr "\\0" "\\n"; done > /tmp/env-scan; '
    "echo scan-$(wc -l < /tmp/env-scan)-lines; cat /tmp/env-scan; echo scan-done-$((40+2))\n"
)


async def test_a_host_shell_cannot_read_the_hosts_env_or_signal_another_users_shell(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """One host (so both users' shells share it): the host's secret and Redis password are not in any
    environ a shell can read, and a shell cannot signal the other user's shell by its host pids."""
    redis_server = RedisServer(password=REDIS_PASSWORD).start()
    workdir = tmp_path_factory.mktemp("host-sandbox")
    hosts = replicas = None
    try:
        env = {"AIFACTORY_TERMINAL_SHELL": "/bin/sh"}
        hosts = start_servers(
            1, redis_url=redis_server.url, extra_env=env, workdir=workdir, command="terminal-host"
        )
        replicas = start_servers(
            1,
            redis_url=redis_server.url,
            secret=hosts.secret,
            workdir=workdir,
            extra_env={"AIFACTORY_TERMINALS": "host"},
        )
        replica = replicas[0]

        def url(term: str, user: str) -> str:
            return (
                f"ws://127.0.0.1:{replica.port}{TERMINAL_PATH}/{term}?token={replicas.token(user, 'org-h')}"
            )

        victim = TerminalClient(url("victim", "ivo"))
        attacker = TerminalClient(url("attacker", "hana"))
        victim_ready = await victim.connect()
        attacker_ready = await attacker.connect()
        assert victim_ready["replica"] == attacker_ready["replica"]  # the same host process
        await victim.send("echo victim-$((6*7))-up\n")
        await victim.read_until("victim-42-up")

        await attacker.send(PROC_SCAN)
        found = await attacker.read_until(r"scan-(\d+)-lines[\s\S]*scan-done-42")
        assert int(found[1]) > 0, "the scan read no environ at all: it proves nothing"
        text = attacker.text()
        assert "AIFACTORY_TERMINAL_USER=hana" in text  # it did read its own shell's env
        for secret in (hosts.secret, REDIS_PASSWORD, redis_server.url):
            assert secret not in text, "a host shell read the host's env"

        leader = int(victim_ready["pid"])  # the host's child leading ivo's sandbox
        shell = host_pid(leader, 2)  # ivo's shell, as the host sees it
        await attacker.send(f"kill -KILL {leader} {shell} 2>&1; echo kill-rc-$?\n")
        await attacker.read_until(r"kill-rc-[1-9]")
        os.kill(leader, 0)  # both still alive (ProcessLookupError otherwise)
        os.kill(shell, 0)
        await victim.send("echo still-$((6*7))-alive\n")
        await victim.read_until("still-42-alive")
        await victim.close()
        await attacker.close()
    finally:
        for part in (replicas, hosts):
            if part is not None:
                part.stop()
        redis_server.stop()


async def test_a_host_without_a_sandbox_logs_one_error_and_refuses_with_1011(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """The host's startup probe: no user namespaces → one ERROR line, every terminal refused with 1011
    through the web tier (never an unsandboxed shell)."""
    redis_server = RedisServer().start()
    workdir = tmp_path_factory.mktemp("host-denied")
    secret = new_secret()
    env = base_env(workdir)
    env.update(
        AIFACTORY_AUTH_SECRET=secret,
        REDIS_URL=redis_server.url,
        AIFACTORY_TERMINAL_SHELL="/bin/sh",
        LOG_LEVEL="INFO",
    )
    wrapper = [
        *("unshare", "--user", "--map-root-user", "--mount", "--propagation", "private", "sh", "-c"),
        f'{DENIALS["no-userns"]} && exec "$@"',
        "sh",
        *server_command("terminal-host"),
    ]
    hosts = replicas = None
    try:
        hosts = start_wrapped(workdir, wrapper, env, secret)
        replicas = start_servers(
            1,
            redis_url=redis_server.url,
            secret=secret,
            workdir=workdir,
            extra_env={"AIFACTORY_TERMINALS": "host"},
        )
        log = hosts[0].wait_for_log("terminal sandbox unavailable")
        errors = [line for line in log.splitlines() if " ERROR " in line]
        assert len(errors) == 1 and "AIFACTORY_TERMINAL_SANDBOX=off" in errors[0], errors
        token = replicas.token("hana", "org-h")
        for term in ("h-1", "h-2"):
            url = f"ws://127.0.0.1:{replicas[0].port}{TERMINAL_PATH}/{term}?token={token}"
            assert await refused(url) == (WS_INTERNAL_ERROR, SANDBOX_UNAVAILABLE)
        assert [line for line in hosts[0].log_text().splitlines() if " ERROR " in line] == errors
    finally:
        for part in (replicas, hosts):
            if part is not None:
                part.stop()
        redis_server.stop()
