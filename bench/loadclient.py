"""A load-client process: holds many WebSockets to one replica and records event latency per phase.

Runs apart from the firing process so receiving thousands of frames does not skew the firing schedule.
Speaks both protocols with the same aiohttp WebSocket client (offering permessage-deflate, as browsers
do; each server decides): JSON text frames (aifactory's `/ws/events`, the bare relays) and Socket.IO
(Engine.IO v4 text packets), so client-side cost is identical for every server.

Protocol on stdio: argv[1] is a JSON plan `[{"url": ..., "proto": "json"|"sio", "count": n}]`.
Prints `READY <n>` when every socket is open; reads `DUMP` (prints one JSON line: latencies recorded since
the last DUMP keyed by phase, duplicated and out-of-order frames per phase, closed sockets) and `QUIT`.
"""

from __future__ import annotations

import asyncio
import json
import resource
import sys
import time
from collections import defaultdict

import aiohttp

CONNECT_PARALLEL = 100


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


def _event_of(frame: object) -> object:
    if isinstance(frame, dict) and isinstance(frame.get("event"), dict):
        return frame["event"]
    return frame


async def run_json(
    session: aiohttp.ClientSession,
    url: str,
    rec: Recorder,
    ready: asyncio.Event,
    opened: list[int],
) -> None:
    async with session.ws_connect(url, heartbeat=None, max_msg_size=0) as ws:
        opened[0] += 1
        ready.set()
        seen: list = [None, set(), -1]
        async for msg in ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                rec.record(seen, _event_of(json.loads(msg.data)))
    rec.closed += 1


async def run_sio(
    session: aiohttp.ClientSession,
    url: str,
    rec: Recorder,
    ready: asyncio.Event,
    opened: list[int],
) -> None:
    async with session.ws_connect(url, heartbeat=None, max_msg_size=0) as ws:
        first = await ws.receive()
        if first.type != aiohttp.WSMsgType.TEXT or not first.data.startswith("0"):
            raise RuntimeError(f"unexpected Engine.IO open packet: {first.data!r}")
        await ws.send_str("40")
        joined = await ws.receive()
        if not str(joined.data).startswith("40"):
            raise RuntimeError(f"Socket.IO connect refused: {joined.data!r}")
        opened[0] += 1
        ready.set()
        seen: list = [None, set(), -1]
        async for msg in ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            data: str = msg.data
            if data == "2":
                await ws.send_str("3")
            elif data.startswith("42"):
                rec.record(seen, json.loads(data[2:])[1])
    rec.closed += 1


async def main_async(plan: list[dict]) -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    rec = Recorder()
    opened = [0]
    total = sum(p["count"] for p in plan)
    conn = aiohttp.TCPConnector(limit=0, force_close=False)
    sem = asyncio.Semaphore(CONNECT_PARALLEL)
    async with aiohttp.ClientSession(connector=conn) as session:
        tasks = []

        async def one(p: dict) -> None:
            ready = asyncio.Event()
            runner = run_json if p["proto"] == "json" else run_sio
            async with sem:
                t = asyncio.create_task(runner(session, p["url"], rec, ready, opened))
                waiter = asyncio.create_task(ready.wait())
                await asyncio.wait({t, waiter}, return_when=asyncio.FIRST_COMPLETED)
                if t.done():
                    t.result()  # raise the connect error
            await t

        for p in plan:
            for _ in range(p["count"]):
                tasks.append(asyncio.create_task(one(p)))
        while opened[0] < total:
            failed = [t for t in tasks if t.done() and t.exception()]
            if failed:
                print(f"ERROR {failed[0].exception()!r}", flush=True)
                return
            await asyncio.sleep(0.05)
        print(f"READY {opened[0]}", flush=True)
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
        for t in tasks:
            t.cancel()


def main() -> None:
    asyncio.run(main_async(json.loads(sys.argv[1])))


if __name__ == "__main__":
    main()
