"""A load-client process: holds many WebSockets to one replica and records event latency per phase.

Runs apart from the firing process so receiving thousands of frames does not skew the firing schedule,
and is as cheap per frame as a Python client gets (one asyncio Protocol per socket parsing frames in
`data_received`, no task per socket, no per-message wakeup), so the servers, not the driver, saturate.
Offers no permessage-deflate, so every server sends plain frames. Speaks JSON text frames (aifactory's
`/ws/events`, the bare relays) and Socket.IO (Engine.IO v4 text packets), the same code for every server.

Protocol on stdio: argv[1] is a JSON plan `[{"url": ..., "proto": "json"|"sio", "count": n}]`.
Prints `READY <n>` when every socket is open; reads `DUMP` (prints one JSON line: latencies recorded since
the last DUMP keyed by phase, duplicated and out-of-order frames per phase, closed sockets) and `QUIT`.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import resource
import struct
import sys
import time
from collections import defaultdict
from urllib.parse import urlsplit

CONNECT_PARALLEL = 50


class Recorder:
    """Latency samples (ms) per phase; events carry `t` (monotonic seconds), `phase` and sequence `i`."""

    def __init__(self) -> None:
        self.samples: dict[str, list[float]] = defaultdict(list)
        self.dups: dict[str, int] = defaultdict(int)  # the same event twice on one socket
        self.late: dict[str, int] = defaultdict(int)  # an event after a later one on one socket
        self.closed = 0

    def record(self, seen: list, ev: object) -> None:
        """`seen` is one socket's [phase, event numbers, highest number] (older phases are forgotten)."""
        if not (isinstance(ev, dict) and "t" in ev):
            return
        phase, i = ev.get("phase", ""), ev.get("i", 0)
        if seen[0] != phase:
            seen[:] = [phase, set(), -1]
        if i in seen[1]:
            self.dups[phase] += 1
            return
        if i < seen[2]:
            self.late[phase] += 1
        seen[1].add(i)
        seen[2] = max(seen[2], i)
        self.samples[phase].append((time.monotonic() - ev["t"]) * 1000.0)


def client_frame(opcode: int, payload: bytes) -> bytes:
    """A masked client frame (RFC 6455 requires clients to mask); the zero mask keeps it cheap."""
    n = len(payload)
    head = bytes((0x80 | opcode, 0x80 | n)) if n < 126 else struct.pack("!BBH", 0x80 | opcode, 0xFE, n)
    return head + b"\0\0\0\0" + payload


class Socket(asyncio.Protocol):
    """One WebSocket: HTTP upgrade, then server frames parsed straight out of the receive buffer."""

    def __init__(self, request: bytes, proto: str, rec: Recorder, opened: asyncio.Future) -> None:
        self.request, self.sio, self.rec, self.opened = request, proto == "sio", rec, opened
        self.buf = bytearray()
        self.upgraded = False
        self.seen: list = [None, set(), -1]
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.transport.write(self.request)

    def connection_lost(self, exc: Exception | None) -> None:
        self.rec.closed += 1
        if not self.opened.done():
            self.opened.set_exception(ConnectionError(f"closed before open: {exc}"))

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        if not self.upgraded:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            status = bytes(buf[: buf.find(b"\r\n")])
            if b" 101 " not in status:
                self.opened.set_exception(ConnectionError(status.decode(errors="replace")))
                return
            del buf[: end + 4]
            self.upgraded = True
            if not self.sio:
                self.opened.set_result(None)
        pos, size = 0, len(buf)
        while size - pos >= 2:
            opcode, n = buf[pos] & 0x0F, buf[pos + 1] & 0x7F
            start = pos + 2
            if n == 126:
                if size - pos < 4:
                    break
                n, start = struct.unpack_from("!H", buf, pos + 2)[0], pos + 4
            elif n == 127:
                if size - pos < 10:
                    break
                n, start = struct.unpack_from("!Q", buf, pos + 2)[0], pos + 10
            if size - start < n:
                break
            payload = bytes(buf[start : start + n])
            pos = start + n
            if opcode == 1:
                self.text(payload)
            elif opcode == 9:
                self.transport.write(client_frame(10, payload))  # type: ignore[union-attr]
        del buf[:pos]

    def text(self, payload: bytes) -> None:
        if not self.sio:
            frame = json.loads(payload)
            self.rec.record(self.seen, frame.get("event", frame) if isinstance(frame, dict) else frame)
        elif payload.startswith(b"42"):
            self.rec.record(self.seen, json.loads(payload[2:])[1])
        elif payload == b"2":
            self.transport.write(client_frame(1, b"3"))  # type: ignore[union-attr]
        elif payload.startswith(b"0"):
            self.transport.write(client_frame(1, b"40"))  # type: ignore[union-attr]
        elif payload.startswith(b"40") and not self.opened.done():
            self.opened.set_result(None)


async def open_socket(url: str, proto: str, rec: Recorder) -> None:
    u = urlsplit(url)
    key = base64.b64encode(os.urandom(16)).decode()
    path = u.path + (f"?{u.query}" if u.query else "")
    request = (
        f"GET {path} HTTP/1.1\r\nHost: {u.hostname}:{u.port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()
    loop = asyncio.get_running_loop()
    opened: asyncio.Future = loop.create_future()
    await loop.create_connection(lambda: Socket(request, proto, rec, opened), u.hostname, u.port)
    await asyncio.wait_for(opened, 30)


async def main_async(plan: list[dict]) -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    rec = Recorder()
    sem = asyncio.Semaphore(CONNECT_PARALLEL)

    async def one(p: dict) -> None:
        async with sem:
            await open_socket(p["url"], p["proto"], rec)

    try:
        await asyncio.gather(*(one(p) for p in plan for _ in range(p["count"])))
    except Exception as exc:
        print(f"ERROR {exc!r}", flush=True)
        return
    print(f"READY {sum(p['count'] for p in plan)}", flush=True)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while True:
        line = (await reader.readline()).decode().strip()
        if line == "DUMP":
            out = {"samples": rec.samples, "dups": rec.dups, "late": rec.late, "closed": rec.closed}
            rec.samples, rec.dups, rec.late = defaultdict(list), defaultdict(int), defaultdict(int)
            sys.stdout.write(json.dumps(out) + "\n")
            sys.stdout.flush()
        elif line in ("QUIT", ""):
            break


def main() -> None:
    asyncio.run(main_async(json.loads(sys.argv[1])))


if __name__ == "__main__":
    main()
