"""/ws/events under the real uvicorn stack writes frames through the transport sink, not ASGI `send`.

The app runs in this process under the exact uvicorn config `aifactory-server` uses, so the test can look
at the server's registry: the socket's Subscriber must be attached to a sink. Real `websockets` clients,
one negotiating permessage-deflate (the shared frames are sent uncompressed, which RFC 7692 allows) and
one not, must both get hello first, then every event in order.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import uvicorn
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from aifactory import bus as bus_module
from aifactory.auth import mint_token
from aifactory.cli import uvicorn_config
from aifactory.config import load_settings
from aifactory.web import create_app
from harness.ports import free_port

SECRET = "s" * 40


@pytest.fixture
async def server(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[tuple[int, object]]:
    port = free_port()
    env = {
        "PORT": str(port),
        "AIFACTORY_AUTH_SECRET": SECRET,
        "AIFACTORY_AUDIT_LOG": str(tmp_path / "a.jsonl"),
    }
    settings = load_settings({**env, **getattr(request, "param", {})})
    app = create_app(settings)
    srv = uvicorn.Server(uvicorn_config(app, settings))
    serving = asyncio.create_task(srv.serve())
    deadline = time.monotonic() + 20
    while not srv.started:
        assert not serving.done() and time.monotonic() < deadline, "server did not start"
        await asyncio.sleep(0.02)
    try:
        yield port, app.state.server
    finally:
        srv.should_exit = True
        await serving


@pytest.mark.parametrize("compression", ["deflate", None])
async def test_events_go_through_the_transport_sink_in_order(
    server: tuple[int, object], compression: str | None
) -> None:
    port, state = server
    token = mint_token(SECRET, "alice", "acme")
    async with connect(f"ws://127.0.0.1:{port}/ws/events?token={token}", compression=compression) as ws:
        assert json.loads(await ws.recv())["type"] == "hello"
        subs = list(state.bus.registry.audience("user", "alice"))  # type: ignore[attr-defined]
        assert len(subs) == 1 and subs[0].attached
        for i in range(50):
            bus_module.get_bus().send_to_user("alice", {"type": "t", "i": i, "pad": "x" * (i * 40)})
        got = [json.loads(await asyncio.wait_for(ws.recv(), 10)) for _ in range(50)]
        assert [f["i"] for f in got] == list(range(50))
        assert subs[0].pending() == 0


@pytest.mark.parametrize(
    "server", [{"AIFACTORY_WS_OVERFLOW": "disconnect", "AIFACTORY_WS_QUEUE": "4"}], indirect=True
)
async def test_backed_up_socket_queues_then_disconnect_policy_closes_it_with_1013(
    server: tuple[int, object],
) -> None:
    """A client that stops reading backs its transport up; its frames queue (bounded), the overflow closes
    it with 1013 once the close frame can be written, and a fast client of the same user gets everything."""
    port, state = server
    url = f"ws://127.0.0.1:{port}/ws/events?token={mint_token(SECRET, 'alice', 'acme')}"
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.setblocking(False)
    slow = await connect(url, sock=sock, max_queue=1, max_size=None, compression=None)
    await slow.recv()  # hello; then it reads nothing
    async with connect(url, max_size=None, max_queue=None) as fast:
        await fast.recv()

        async def read_all() -> list[int]:
            return [json.loads(await asyncio.wait_for(fast.recv(), 20))["i"] for _ in range(60)]

        reader = asyncio.create_task(read_all())
        for i in range(60):
            bus_module.get_bus().send_to_user("alice", {"type": "bulk", "i": i, "pad": "x" * 200_000})
            await asyncio.sleep(0.01)  # a reading client keeps up at this pace; the slow one cannot
        assert await reader == list(range(60))
        assert len(state.bus.registry) == 1  # type: ignore[attr-defined]  # the slow one was dropped at once
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    with pytest.raises(ConnectionClosed):
        while True:
            await asyncio.wait_for(slow.recv(), 20)
    assert slow.close_code == 1013 and slow.close_reason == "client too slow; reconnect"
