"""A client that stops reading must not delay anyone else on the same replica; its backlog is dropped."""

from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import Iterator

import pytest
from websockets.asyncio.client import connect

from harness.app_servers import ServerSet, http_json, start_servers
from tests.server.wsclient import EventClient

pytestmark = pytest.mark.timeout(90)

EVENTS = 100
# 100 × 200 kB = 20 MB, uncompressed (the slow socket negotiates no deflate): far beyond the
# TCP buffers (≤ 4 MB here) and the 20-frame queue
PAYLOAD = "x" * 200_000


@pytest.fixture(scope="module")
def replica(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerSet]:
    servers = start_servers(
        1, workdir=tmp_path_factory.mktemp("slow"), extra_env={"AIFACTORY_WS_QUEUE": "20"}
    )
    try:
        yield servers
    finally:
        servers.stop()


async def test_slow_client_does_not_delay_a_fast_one(replica: ServerSet) -> None:
    token = replica.token("alice", "org-a")
    # max_queue=1 and a tiny kernel receive buffer: the library stops reading, so TCP backs up to the server
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", replica[0].port))
    sock.setblocking(False)
    slow = await connect(
        replica[0].ws_url(token=token),
        sock=sock,
        max_queue=1,
        max_size=None,
        open_timeout=20,
        compression=None,
    )
    await slow.recv()  # hello; after this the slow client reads nothing while the events flow
    fast = await EventClient.connect(replica[0].ws_url(token=token), "fast", max_size=None)
    service = replica.token("svc", "ops", "service")
    for i in range(EVENTS):
        status, _ = await asyncio.to_thread(
            http_json,
            "POST",
            replica[0].http + "/api/events",
            {"scope": "user", "target": "alice", "event": {"type": "bulk", "n": i, "pad": PAYLOAD}},
            service,
        )
        assert status == 202
    got = await fast.wait_for(lambda f: f.get("type") == "bulk", count=EVENTS)
    assert [f["n"] for f in got] == list(range(EVENTS)), "the fast client got every event, in order"

    # the server gave up on the slow client's backlog instead of letting it grow or block the loop
    status, text = http_json("GET", replica[0].http + "/metrics")
    dropped = re.search(r'^aifactory_bus_dropped_total\{reason="client_overflow"\} (\S+)$', text, re.M)
    assert dropped and float(dropped.group(1)) > 0, text
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)  # read the rest quickly
    frames = []
    while True:  # now read the slow socket: somewhere in it is the resync notice that replaced the backlog
        frames.append(await asyncio.wait_for(slow.recv(), 20))
        if '"resync"' in frames[-1]:
            break
    assert len(frames) < EVENTS
    slow.transport.abort()  # its reads are paused, so a close handshake would wait for the timeout
    await fast.close()
