"""What recovery costs, measured in one run: history on (AIFACTORY_HISTORY_SIZE=10000) vs off (0).

- cross-replica latency: broadcasts POSTed to replica A at a fixed rate, timed on arrival at WebSocket
  clients on replica C (the sender stamps CLOCK_MONOTONIC into the event; same machine, same clock);
- sustained deliveries/s: as many POSTs as `--streams` concurrent keep-alive streams can push for
  `--burst` seconds, deliveries counted on C's clients;
- Redis memory per 10,000 kept events (`MEMORY USAGE` of the stream key) and the time to replay 10,000
  events to a client that resumes with `since`.

On and off alternate for `--rounds` rounds (fresh servers each time, same Redis), samples pooled, so
background load hits both alike. `python -m bench.recovery_cost [--rounds 2]`; prints one table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any
from urllib.parse import quote

import aiohttp

from bench.stats import summarize
from harness.app_servers import ServerSet, start_servers
from harness.redis_servers import RedisServer, redis_cli

QUIET = {"LOG_LEVEL": "WARNING", "AIFACTORY_WS_QUEUE": "20000"}
PAD = "x" * 120  # a task.progress-sized event (~200 bytes)


async def _clients(session: aiohttp.ClientSession, url: str, n: int) -> list[aiohttp.ClientWebSocketResponse]:
    sockets = [await session.ws_connect(url, heartbeat=None, max_msg_size=0) for _ in range(n)]
    for ws in sockets:
        await ws.receive()  # hello
    return sockets


async def _read(
    ws: aiohttp.ClientWebSocketResponse, sink: list[tuple[int, int]], stop: asyncio.Event
) -> None:
    while not stop.is_set():
        try:
            msg = await asyncio.wait_for(ws.receive(), 0.5)
        except TimeoutError:
            continue
        if msg.type != aiohttp.WSMsgType.TEXT:
            return
        ev = json.loads(msg.data)
        if ev.get("type") == "bench":
            sink.append((ev["i"], time.monotonic_ns() - ev["t"]))


async def _post(session: aiohttp.ClientSession, url: str, token: str, i: int) -> None:
    body = {"scope": "broadcast", "event": {"type": "bench", "i": i, "t": time.monotonic_ns(), "pad": PAD}}
    async with session.post(url, json=body, headers={"Authorization": f"Bearer {token}"}) as resp:
        await resp.read()


async def one_round(
    servers: ServerSet, *, rate: float, seconds: float, burst: float, streams: int, sockets: int
) -> dict[str, Any]:
    a, c = servers[0], servers[1]
    token = servers.token("bench", org="bench")
    service = servers.token("firer", org="ops", role="service")
    post_url = a.http + "/api/events"
    async with aiohttp.ClientSession() as session:
        clients = await _clients(session, c.ws_url("/ws/events", token), sockets)
        samples: list[tuple[int, int]] = []
        stop = asyncio.Event()
        readers = [asyncio.create_task(_read(ws, samples, stop)) for ws in clients]
        # fixed-rate latency phase
        start, pending, i = time.monotonic(), [], 0
        while time.monotonic() - start < seconds:
            due = start + i / rate
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            pending.append(asyncio.create_task(_post(session, post_url, service, i)))
            i += 1
        await asyncio.gather(*pending)
        await asyncio.sleep(1.0)
        latency = [ns / 1e6 for _, ns in samples]
        samples.clear()
        # burst phase: deliveries per second on C
        t0 = time.monotonic()
        counter = iter(range(10**9, 2 * 10**9))

        async def stream() -> None:
            while time.monotonic() - t0 < burst:
                await _post(session, post_url, service, next(counter))

        await asyncio.gather(*(stream() for _ in range(streams)))
        await asyncio.sleep(1.0)
        delivered = len(samples)
        stop.set()
        await asyncio.gather(*readers)
        for ws in clients:
            await ws.close()
    return {"latency_ms": latency, "deliveries_per_s": delivered / burst}


async def replay_cost(servers: ServerSet, redis: RedisServer, events: int) -> dict[str, float]:
    """Stream memory for `events` kept events, and the time to replay them to a resuming client."""
    a, c = servers[0], servers[1]
    token = servers.token("bench", org="bench")
    service = servers.token("firer", org="ops", role="service")
    async with aiohttp.ClientSession() as session:
        ws = await session.ws_connect(c.ws_url("/ws/events", token), heartbeat=None)
        await ws.receive()
        await _post(session, a.http + "/api/events", service, -1)
        first = json.loads((await ws.receive()).data)
        await ws.close()
        sem = asyncio.Semaphore(32)

        async def fire(i: int) -> None:
            async with sem:
                await _post(session, a.http + "/api/events", service, i)

        await asyncio.gather(*(fire(i) for i in range(events)))
        await asyncio.sleep(1.0)
        key = "{aifactory:events}:history"
        memory = int(redis_cli(redis.port, "MEMORY", "USAGE", key, "SAMPLES", "0"))
        length = int(redis_cli(redis.port, "XLEN", key))
        t0 = time.monotonic()
        url = c.ws_url("/ws/events", token) + "&since=" + quote(first["_offset"])
        ws = await session.ws_connect(url, heartbeat=None, max_msg_size=0)
        hello = json.loads((await ws.receive()).data)
        got = 0
        while got < hello.get("replayed", 0):
            await ws.receive()
            got += 1
        took = time.monotonic() - t0
        await ws.close()
    return {
        "stream_entries": length,
        "bytes_per_10k": memory / length * 10_000,
        "replayed": hello.get("replayed", 0),
        "replay_s": took,
    }


def run(rounds: int, rate: float, seconds: float, burst: float, streams: int, sockets: int) -> dict[str, Any]:
    redis = RedisServer().start()
    pooled: dict[str, dict[str, list[float]]] = {m: {"lat": [], "dps": []} for m in ("on", "off")}
    try:
        for r in range(rounds):
            for mode in ("off", "on") if r % 2 else ("on", "off"):
                size = "10000" if mode == "on" else "0"
                servers = start_servers(
                    2, redis_url=redis.url, extra_env={**QUIET, "AIFACTORY_HISTORY_SIZE": size}
                )
                try:
                    servers.wait_bridge("connected")
                    res = asyncio.run(
                        one_round(
                            servers, rate=rate, seconds=seconds, burst=burst, streams=streams, sockets=sockets
                        )
                    )
                finally:
                    servers.stop()
                pooled[mode]["lat"] += res["latency_ms"]
                pooled[mode]["dps"].append(res["deliveries_per_s"])
                redis_cli(redis.port, "FLUSHALL")
        servers = start_servers(
            2, redis_url=redis.url, extra_env={**QUIET, "AIFACTORY_HISTORY_SIZE": "20000"}
        )
        try:
            servers.wait_bridge("connected")
            replay = asyncio.run(replay_cost(servers, redis, 10_000))
        finally:
            servers.stop()
    finally:
        redis.stop()
    out: dict[str, Any] = {"replay": replay}
    for mode, data in pooled.items():
        s = summarize(data["lat"])
        out[mode] = {
            "p50_ms": s["p50"],
            "p99_ms": s["p99"],
            "samples": len(data["lat"]),
            "deliveries_per_s": sum(data["dps"]) / len(data["dps"]),
        }
    on, off = out["on"], out["off"]
    out["ratio"] = {
        "p50": on["p50_ms"] / off["p50_ms"],
        "p99": on["p99_ms"] / off["p99_ms"],
        "deliveries_per_s": on["deliveries_per_s"] / off["deliveries_per_s"],
    }
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.recovery_cost", description=__doc__)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--rate", type=float, default=200.0)
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--burst", type=float, default=4.0)
    p.add_argument("--streams", type=int, default=16)
    p.add_argument("--sockets", type=int, default=20)
    a = p.parse_args(argv)
    out = run(a.rounds, a.rate, a.seconds, a.burst, a.streams, a.sockets)
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
