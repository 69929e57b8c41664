"""Three real replicas behind a real HAProxy configured from the chart's production example.

/ws/events and /api are balanced freely; /ws/terminal is pinned by the `aifactory-affinity` cookie.
Without the cookie a reconnect may land on another replica, which does not know the terminal id and
so RE-CREATES it: a fresh shell under the same id, owned by the same user (ids are per replica; the
old shell lingers on its replica until the grace period reaps it). Nothing is refused, but the
session's state is gone — which is why the ingress pins /ws/terminal.
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from aifactory.constants import TERMINAL_PATH
from harness.app_servers import http_json
from tests.e2e.conftest import Stack
from tests.e2e.lb import SERVED_BY

MARK = re.compile(r"MARK:([0-9a-f-]{36}):(\d+)")


async def recv_json(ws: ClientConnection, timeout: float = 10.0) -> dict[str, Any]:
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


async def fire(url: str, token: str, event: dict[str, Any]) -> dict[str, Any]:
    status, body = await asyncio.to_thread(
        http_json, "POST", url + "/api/events", {"scope": "broadcast", "event": event}, token
    )
    assert status == 202, body
    return body


async def test_event_sockets_land_on_every_replica_and_all_receive_every_event(stack: Stack) -> None:
    token = stack.replicas.token("alice", org="org-a")
    sockets: list[ClientConnection] = []
    placed: list[tuple[str, str]] = []  # (replica id from the server's hello, HAProxy server name)
    try:
        for _ in range(6):
            ws = await connect(f"{stack.lb.ws}/ws/events?token={token}")
            sockets.append(ws)
            hello = await recv_json(ws)
            assert hello["type"] == "hello"
            placed.append((hello["replica"], ws.response.headers[SERVED_BY]))
        assert len({rid for rid, _ in placed}) == 3, f"round robin should use all three replicas: {placed}"
        assert len(set(placed)) == 3, "one replica id per HAProxy server: the header and the hello agree"
        assert not any("aifactory-affinity" in ws.response.headers.get("set-cookie", "") for ws in sockets)

        service = stack.replicas.token("firer", role="service")
        fired_on = set()
        for n in range(6):  # through the balancer: the POSTs themselves land on different replicas
            fired_on.add((await fire(stack.lb.http, service, {"type": "lb.test", "n": n}))["replica"])
        assert len(fired_on) >= 2, fired_on
        for ws, (rid, _) in zip(sockets, placed, strict=True):
            got = [(await recv_json(ws))["n"] for _ in range(6)]
            assert sorted(got) == list(range(6)), f"socket on replica {rid} got {got}"
        for ws in sockets:  # no double delivery: nothing else is pending
            try:
                extra = await asyncio.wait_for(ws.recv(), 0.3)
            except TimeoutError:
                continue
            raise AssertionError(f"unexpected extra frame {extra}")
    finally:
        for ws in sockets:
            await ws.close()


async def terminal_visit(
    stack: Stack, term: str, token: str, cookie: str | None
) -> tuple[str, str, int, str | None]:
    """Open a terminal via HAProxy and ask the shell who it is: (served-by, replica, shell id, cookie)."""
    headers = {"Cookie": cookie} if cookie else None
    async with connect(
        f"{stack.lb.ws}{TERMINAL_PATH}/{term}?token={token}", additional_headers=headers
    ) as ws:
        # a random number drawn once per shell names it ($$ is the same in every sandbox's PID namespace)
        await ws.send(
            "echo MARK:$AIFACTORY_REPLICA_ID:${SHELL_ID:=$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')}\n"
        )
        out = ""
        while not (m := MARK.search(out)):
            out += await asyncio.wait_for(ws.recv(), 10)
        set_cookie = ws.response.headers.get("set-cookie")
        return ws.response.headers[SERVED_BY], m.group(1), int(m.group(2)), set_cookie


async def test_affinity_cookie_reaches_the_same_terminal_on_every_reconnect(stack: Stack) -> None:
    token = stack.replicas.token("bob", org="org-b")
    served, replica, pid, set_cookie = await terminal_visit(stack, "bob-work", token, None)
    assert set_cookie is not None and set_cookie.startswith(f"aifactory-affinity={served};"), set_cookie
    assert f"Path={TERMINAL_PATH}" in set_cookie and "HttpOnly" in set_cookie and "SameSite=Lax" in set_cookie
    cookie = set_cookie.split(";", 1)[0]
    for _ in range(4):
        again = await terminal_visit(stack, "bob-work", token, cookie)
        assert again[:3] == (served, replica, pid), "the cookie must bring the browser back to the same shell"
        assert again[3] is None, "a valid cookie is not re-issued"


async def test_without_the_cookie_the_terminal_is_recreated_on_another_replica(stack: Stack) -> None:
    token = stack.replicas.token("carol", org="org-c")
    visits = [await terminal_visit(stack, "carol-work", token, None) for _ in range(3)]
    replicas = {v[1] for v in visits}
    pids = {v[2] for v in visits}
    assert len(replicas) == 3, f"without the cookie, reconnects are balanced like any request: {visits}"
    assert len(pids) == 3, "each replica spawned its own fresh shell under the same terminal id"
    # each replica now holds its own 'work' terminal for carol (until the grace period reaps it)
    terminals = [http_json("GET", s.http + "/readyz")[1]["terminals"] for s in stack.replicas]
    assert all(n >= 1 for n in terminals), terminals
