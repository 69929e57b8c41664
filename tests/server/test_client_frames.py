"""Client WebSocket frames are bounded: a flood of huge frames cannot grow a real server's memory.

The attack (issue #10): 30 sockets each send one 16 MB text frame, some before their token is even
checked. uvicorn's default `ws_max_size` (16 MiB) let the server buffer every one of them (~500 MB RSS).
Now every message is capped at AIFACTORY_TERMINAL_INPUT_MAX_BYTES (64 KiB) by the protocol, which refuses
the frame from its header alone, and /ws/events (one-way) refuses any client frame over 4 KiB (close 1009).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from harness.app_servers import ServerProc, ServerSet, start_servers
from harness.terminal_client import recv_output
from tests.server.wsclient import WAIT, EventClient

pytestmark = pytest.mark.timeout(180)

ATTACK_SOCKETS = 30
ATTACK_FRAME = 16_000_000
RSS_GROWTH_LIMIT_MIB = 48  # before the fix the same attack grew the peak RSS by ~460 MiB
MESSAGE_TOO_BIG = 1009


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerSet]:
    servers = start_servers(
        1, workdir=tmp_path_factory.mktemp("frames"), extra_env={"AIFACTORY_TERMINAL_SHELL": "/bin/sh"}
    )
    try:
        yield servers
    finally:
        servers.stop()


def peak_rss_mib(proc: ServerProc) -> float:
    """The process's high-water RSS (VmHWM): a transient spike cannot hide between two samples."""
    assert proc.proc is not None
    for line in Path(f"/proc/{proc.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM in /proc/<pid>/status")


def frame_header(length: int) -> bytes:
    """A masked FIN text frame header declaring `length` payload bytes (zero mask: payload is as sent)."""
    return bytes([0x81, 0x80 | 127]) + struct.pack("!Q", length) + b"\0\0\0\0"


async def flood_one(port: int, path: str) -> tuple[bytes, bytes]:
    """Upgrade, then at once stream one 16 MB frame; return (handshake reply, what the server sent after).

    The frame goes out as soon as the 101 arrives, so on a refused token it races the server's close: the
    server must not buffer the frame it is busy refusing either."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT)
    received = bytearray()

    async def collect() -> None:  # read while writing: after the server's close, our writes get a reset
        with contextlib.suppress(ConnectionError, OSError):
            while data := await reader.read(65536):
                received.extend(data)

    collector = asyncio.create_task(collect())
    writer.write(frame_header(ATTACK_FRAME))
    chunk = b"a" * 65536
    try:
        for _ in range(ATTACK_FRAME // len(chunk) + 1):
            writer.write(chunk)
            await writer.drain()
    except (ConnectionError, OSError):
        pass  # the server closed on us: the point
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(collector, WAIT)
    writer.close()
    return head, bytes(received)


async def test_a_flood_of_16mb_frames_does_not_grow_server_memory(server: ServerSet) -> None:
    proc = server[0]
    token = server.token("flooder")
    before = peak_rss_mib(proc)
    paths = [f"/ws/events?token={token}"] * (ATTACK_SOCKETS // 3)  # authenticated
    paths += ["/ws/events?token=not-a-token"] * (ATTACK_SOCKETS // 3)  # refused token, frame sent first
    paths += ["/ws/events"] * (ATTACK_SOCKETS - len(paths))  # no token at all
    replies = await asyncio.gather(*(flood_one(proc.port, path) for path in paths))
    growth = peak_rss_mib(proc) - before
    print(f"\npeak RSS growth under {ATTACK_SOCKETS} x 16 MB frames: {growth:.1f} MiB (before {before:.1f})")
    assert growth < RSS_GROWTH_LIMIT_MIB, f"peak RSS grew by {growth:.0f} MiB under the frame flood"
    assert all(head.startswith(b"HTTP/1.1 101") for head, _ in replies), replies[0][0]
    # closed for the frame's size: a close frame carrying 1009 (some resets overtake it on the wire)
    assert any(struct.pack("!H", MESSAGE_TOO_BIG) in r for _, r in replies[: ATTACK_SOCKETS // 3])
    # and the server still serves
    client = await EventClient.connect(proc.ws_url(token=token), "after")
    await client.close()


async def close_code_after(url: str, message: str | bytes) -> int | None:
    async with connect(url, open_timeout=WAIT, max_size=None) as ws:
        await ws.send(message)
        try:
            while True:
                await asyncio.wait_for(ws.recv(), WAIT)
        except ConnectionClosed as exc:
            return exc.rcvd.code if exc.rcvd else None


async def test_events_socket_refuses_client_frames_over_4_kib(server: ServerSet) -> None:
    url = server[0].ws_url(token=server.token("chatty"))
    assert await close_code_after(url, "x" * 4097) == MESSAGE_TOO_BIG
    assert await close_code_after(url, b"\0" * 5000) == MESSAGE_TOO_BIG
    # a small frame is read and ignored: the socket stays open and keeps receiving
    client = await EventClient.connect(url, "small")
    await client.ws.send("ping")
    await client.ws.send("x" * 4096)
    await client.ws.ping()
    assert client.ws.close_code is None
    await client.close()


async def test_terminal_input_is_capped_but_a_paste_fits(server: ServerSet) -> None:
    url = server[0].ws_url("/ws/terminal/paste", token=server.token("typist"))
    async with connect(url, open_timeout=WAIT) as ws:
        await ws.send(b"cat > /dev/null\n")  # terminal bytes travel as binary frames (docs/terminals.md)
        await ws.send(b"y" * 60_000 + b"\n")  # a 60 KB paste goes through
        await ws.send(b"\x04echo pasted-$((6*7))\n")
        seen = ""
        while "pasted-42" not in seen:
            seen += await asyncio.wait_for(recv_output(ws), WAIT)
    assert await close_code_after(url.replace("paste", "huge"), b"z" * (64 * 1024 + 1)) == MESSAGE_TOO_BIG
