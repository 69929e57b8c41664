"""Slow clients cannot hold connections forever: read timeout and connection ceiling on a real server.

Before: h11 has no timeout and uvicorn times only the gap between keep-alive requests, so 400 slowloris
sockets (a header line every half second) and one silent socket stayed open indefinitely; and uvicorn's
`limit_concurrency` never refuses a connection, only a completed request. Now (aifactory.http_guard) a
client gets AIFACTORY_HTTP_READ_TIMEOUT_SECONDS for its whole request, then 408 and close, and a connection
beyond AIFACTORY_MAX_CONNECTIONS gets 503 and close at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from harness.app_servers import ServerSet, http_json, start_servers
from tests.server.wsclient import WAIT, EventClient

pytestmark = pytest.mark.timeout(180)

READ_TIMEOUT = 2.0
KEEPALIVE = 2
CEILING = 64
SLOW_SOCKETS = 400


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerSet]:
    servers = start_servers(
        1,
        workdir=tmp_path_factory.mktemp("slowloris"),
        extra_env={
            "AIFACTORY_HTTP_READ_TIMEOUT_SECONDS": str(READ_TIMEOUT),
            "AIFACTORY_KEEPALIVE_SECONDS": str(KEEPALIVE),
            "AIFACTORY_MAX_CONNECTIONS": "1000",
        },
    )
    try:
        yield servers
    finally:
        servers.stop()


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerSet]:
    servers = start_servers(
        1,
        workdir=tmp_path_factory.mktemp("ceiling"),
        extra_env={"AIFACTORY_MAX_CONNECTIONS": str(CEILING), "AIFACTORY_HTTP_READ_TIMEOUT_SECONDS": "60"},
    )
    try:
        yield servers
    finally:
        servers.stop()


async def slowloris(port: int, *, silent: bool = False) -> tuple[float, bytes]:
    """Send a header line every 0.5 s (or nothing); return (seconds until the server closed, its reply)."""
    started = time.monotonic()  # before the connect: the server's timer starts at its accept
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    reply = bytearray()

    async def trickle() -> None:
        with contextlib.suppress(ConnectionError, OSError):
            if silent:
                return
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            for i in range(10_000):
                await asyncio.sleep(0.5)
                writer.write(f"X-Slow-{i}: a\r\n".encode())
                await writer.drain()

    task = asyncio.create_task(trickle())
    try:
        async with asyncio.timeout(WAIT * 3):
            with contextlib.suppress(ConnectionError, OSError):
                while data := await reader.read(4096):
                    reply.extend(data)
    finally:
        task.cancel()
        writer.close()
    return time.monotonic() - started, bytes(reply)


async def test_slowloris_and_silent_connections_are_cut_after_the_read_timeout(guarded: ServerSet) -> None:
    port = guarded[0].port
    results = await asyncio.gather(
        slowloris(port, silent=True), *(slowloris(port) for _ in range(SLOW_SOCKETS))
    )
    held = [seconds for seconds, _ in results]
    print(f"\n{len(results)} slow connections closed after {min(held):.1f}-{max(held):.1f}s")
    assert max(held) < READ_TIMEOUT + 10, f"a slow connection was held {max(held):.1f}s"
    assert min(held) >= READ_TIMEOUT - 0.1  # the timeout, not some other limit, cut them
    assert all(reply.startswith(b"HTTP/1.1 408") for _, reply in results), results[0][1]
    assert http_json("GET", guarded[0].http + "/healthz")[0] == 200


async def test_a_slow_second_keep_alive_request_gets_its_own_timeout(guarded: ServerSet) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", guarded[0].port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    first = await asyncio.wait_for(reader.readuntil(b"}"), WAIT)
    assert first.startswith(b"HTTP/1.1 200")
    started = time.monotonic()
    writer.write(b"GET /healthz HTTP/1.1\r\n")  # the next request starts, then trickles
    rest = bytearray()

    async def collect() -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await reader.read(4096):
                rest.extend(data)

    collector = asyncio.create_task(collect())
    with contextlib.suppress(ConnectionError, OSError):
        for i in range(100):
            await asyncio.sleep(0.3)
            if collector.done():
                break
            writer.write(f"X-{i}: a\r\n".encode())
    await asyncio.wait_for(collector, WAIT)
    assert rest.startswith(b"HTTP/1.1 408") and time.monotonic() - started < READ_TIMEOUT + 5, rest
    writer.close()


async def test_an_idle_keep_alive_connection_is_closed(guarded: ServerSet) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", guarded[0].port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    await asyncio.wait_for(reader.readuntil(b"}"), WAIT)
    started = time.monotonic()
    assert await asyncio.wait_for(reader.read(), WAIT) == b""
    assert time.monotonic() - started < KEEPALIVE + 5
    writer.close()


async def test_websockets_outlive_the_read_timeout(guarded: ServerSet) -> None:
    client = await EventClient.connect(guarded[0].ws_url(token=guarded.token("steady")), "steady")
    await asyncio.sleep(READ_TIMEOUT * 2)
    pong = await client.ws.ping()
    await asyncio.wait_for(pong, WAIT)
    assert client.ws.close_code is None
    await client.close()


async def test_connections_beyond_the_ceiling_get_503_at_once(small: ServerSet) -> None:
    port = small[0].port
    holders = [await asyncio.open_connection("127.0.0.1", port) for _ in range(CEILING)]
    await asyncio.sleep(0.5)
    started = time.monotonic()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    refused = await asyncio.wait_for(reader.read(), WAIT)
    assert refused.startswith(b"HTTP/1.1 503"), refused
    assert time.monotonic() - started < 5
    writer.close()
    with pytest.raises(InvalidStatus) as info:  # upgrades count too (limit_concurrency ignores them)
        async with connect(small[0].ws_url(token=small.token("late")), open_timeout=WAIT):
            pass
    assert info.value.response.status_code == 503
    for _, w in holders:
        w.close()
    deadline = time.monotonic() + WAIT
    while http_json("GET", small[0].http + "/healthz")[0] != 200:  # freed slots serve again
        assert time.monotonic() < deadline, "the server never recovered after the holders left"
        await asyncio.sleep(0.1)
    assert "connection ceiling reached" in small[0].log_text()


async def test_a_trickled_body_is_cut_by_the_same_timeout_without_a_traceback(guarded: ServerSet) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", guarded[0].port)
    token = guarded.token("slowpoke")
    writer.write(
        f"POST /api/tasks HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
        "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{".encode()
    )
    started = time.monotonic()
    reply = bytearray()

    async def collect() -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await reader.read(4096):
                reply.extend(data)

    collector = asyncio.create_task(collect())
    with contextlib.suppress(ConnectionError, OSError):
        while not collector.done() and time.monotonic() - started < WAIT:
            await asyncio.sleep(0.3)
            writer.write(b" ")
    await asyncio.wait_for(collector, WAIT)
    assert reply.startswith(b"HTTP/1.1 408") and time.monotonic() - started < READ_TIMEOUT + 5, reply
    writer.close()
    await asyncio.sleep(0.5)
    assert "Traceback" not in guarded[0].log_text() and "Exception in ASGI" not in guarded[0].log_text()
