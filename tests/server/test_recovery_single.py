"""Recovery on one replica without Redis (the in-process ring), and AIFACTORY_HISTORY_SIZE=0 (off)."""

from __future__ import annotations

import asyncio
import json
import signal
from urllib.parse import quote

import pytest
from websockets.asyncio.client import connect

from harness.app_servers import ServerSet, http_json, start_servers
from tests.server.wsclient import EventClient

pytestmark = pytest.mark.timeout(90)


def fire(servers: ServerSet, n: int) -> None:
    service = servers.token("svc", "ops", "service")
    body = {"scope": "user", "target": "ann", "event": {"type": "load", "n": n}}
    assert http_json("POST", servers[0].http + "/api/events", body, token=service)[0] == 202


async def test_single_replica_resumes_from_its_ring() -> None:
    servers = start_servers(1)
    try:
        url = servers[0].ws_url(token=servers.token("ann", "o1"))
        first = await EventClient.connect(url, "first")
        fire(servers, 1)
        await first.wait_for(lambda f: f.get("n") == 1)
        await first.close()
        for n in (2, 3):
            fire(servers, n)
        again = await EventClient.connect(url + "&since=" + quote(first.offsets[0] or ""), "again")
        assert again.hello["recovered"] is True and again.hello["replayed"] == 2
        fire(servers, 4)
        await again.wait_for(lambda f: f.get("n") == 4)
        assert [f["n"] for f in again.frames] == [2, 3, 4]
        bad = await EventClient.connect(url + "&since=garbage", "bad")
        assert bad.hello["recovered"] is False and bad.hello["replayed"] == 0
        await bad.wait_for(lambda f: f.get("type") == "resync")
        assert bad.frames[0] == {"type": "resync", "reason": "history"}
        for c in (again, bad):
            await c.close()
    finally:
        servers.stop()


async def test_history_size_zero_keeps_frames_and_hello_as_without_recovery() -> None:
    servers = start_servers(1, extra_env={"AIFACTORY_HISTORY_SIZE": "0"})
    try:
        url = servers[0].ws_url(token=servers.token("ann", "o1")) + "&since=whatever"
        async with connect(url) as ws:
            hello = json.loads(await ws.recv())
            assert set(hello) == {"type", "replica", "user", "org"}
            fire(servers, 1)
            assert await ws.recv() == '{"type":"load","n":1}'
    finally:
        servers.stop()


async def test_sigterm_closes_fast_path_sockets_with_1012_after_their_frames() -> None:
    """Events sockets are detached from ASGI (the fast path): the drain reaches them through their sink."""
    servers = start_servers(1)
    try:
        url = servers[0].ws_url(token=servers.token("ann", "o1"))
        plain = await EventClient.connect(url, "plain")
        fire(servers, 1)
        await plain.wait_for(lambda f: f.get("n") == 1)
        resumed = await EventClient.connect(url + "&since=" + quote(plain.offsets[0] or ""), "resumed")
        assert resumed.hello["recovered"] is True
        for n in range(2, 41):
            fire(servers, n)
        proc = servers[0].proc
        assert proc is not None
        proc.send_signal(signal.SIGTERM)
        for c in (plain, resumed):
            await asyncio.wait_for(c.ws.wait_closed(), 30)
            assert c.ws.close_code == 1012, (c.label, c.ws.close_code, c.ws.close_reason)
            assert c.ws.close_reason == "server restarting; resume elsewhere", "our drain, not uvicorn's"
            assert [f["n"] for f in c.frames if "n" in f][-39:] == list(range(2, 41)), c.label
        assert proc.wait(timeout=30) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal it caught
    finally:
        servers.stop()
