"""AIFACTORY_TERMINALS=host: three web replicas, two terminal hosts, Redis, HAProxy without affinity.

A terminal opened through replica A is used through B and C (same shell); SIGKILL of A while the shell
streams output loses no byte and keeps the PID; the hosts accept only requests the web tier signed;
stopping a host closes its terminals with WS_TERMINAL_LOST and a new terminal can be opened.
"""

from __future__ import annotations

import asyncio
import re

import pytest
import redis
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from aifactory.constants import TERMINAL_PATH, WS_POLICY_VIOLATION, WS_TERMINAL_LOST
from aifactory.host_auth import HEADER, HostRequestSigner
from harness.app_servers import new_secret, run_server_once, start_servers
from harness.terminal_client import TerminalClient
from tests.e2e.conftest import HostStack

pytestmark = pytest.mark.timeout(240)

LINES = 400


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
    await client.send("echo pid-$$-host-$AIFACTORY_REPLICA_ID-end\n")
    pid = int((await client.read_until(r"pid-(\d+)-host"))[1])
    assert pid == first["pid"]
    for n, replica in enumerate((b, c), start=1):
        await client.ws.close()  # type: ignore[union-attr]
        await client.wait_closed()
        ready = await client.connect(hstack.url(replica, "shared", "hana"))
        assert ready["pid"] == pid and ready["new"] is False and ready["replica"] == first["replica"]
        await client.send(f"echo via-{n}-$((40+{n}))\n")
        await client.read_until(rf"via-{n}-{40 + n}")
    assert client.text().count(f"pid-{pid}-host") == 1  # reattaches replayed nothing twice
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
    await client.send(
        f"i=0; while [ $i -lt {LINES} ]; do i=$((i+1)); echo line-$i; sleep 0.005; done; echo done-$$\n"
    )
    await client.read_until(r"line-40\r\n")
    doomed.kill()  # mid-stream: no close frame, the relay's connection to the host just drops
    await client.wait_closed()
    await client.send("echo typed-during-outage-$((7*6))\n")  # kept and resent on reattach
    ready = await reconnect(client, hstack.url(None, "survivor", "hana"))  # through HAProxy, any replica
    assert ready["pid"] == pid and ready["new"] is False
    await client.read_until(rf"done-{pid}", timeout=60)
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
