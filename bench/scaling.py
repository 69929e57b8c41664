"""Per-replica CPU of events with no local audience, for 1, 3, 6 and 10 real replicas (docs/scaling.md).

A private redis-server and N real `aifactory-server` processes. A few real WebSocket clients (users
scale-u0..) connect to replica 1 only; the coordinator then fires a fixed rate of user-scoped, signed
envelopes for those users straight onto the channel (the wire format any replica publishes). Every replica
still receives, verifies and decodes each one; only replica 1 has an audience. CPU comes from
/proc/<pid>/stat (utime+stime) over an idle window and over the load window; the difference divided by the
events gives the per-event cost of an uninterested replica. The clients must get every event, or the
point is reported as broken rather than fast.

Standalone: `python -m bench.scaling [--replicas 1 3 6 10] [--rate 200] [--duration 5]`.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from typing import Any

from aifactory.envelope import EnvelopeSigner, encode_event, encode_with_frame
from bench.scaling_sim import cpu_seconds
from harness.app_servers import ServerSet, start_servers
from harness.redis_servers import RedisServer

CHANNEL = "aifactory:scaling"
CLIENTS = 4
IDLE_SECONDS = 2.0


async def _connect(servers: ServerSet) -> tuple[Any, list[Any]]:
    import aiohttp

    session = aiohttp.ClientSession()
    sockets = []
    for i in range(CLIENTS):
        ws = await session.ws_connect(servers[0].ws_url(token=servers.token(f"scale-u{i}")), heartbeat=None)
        hello = await ws.receive_json(timeout=10)
        if hello.get("type") != "hello":
            raise RuntimeError(f"unexpected first frame {hello!r}")
        sockets.append(ws)
    return session, sockets


async def _count(ws: Any, seen: list[int], done: asyncio.Event, total: int) -> None:
    async for msg in ws:
        if isinstance(msg.data, str) and '"scale"' in msg.data:
            seen[0] += 1
            if seen[0] >= total:
                done.set()


async def _point(redis: RedisServer, servers: ServerSet, rate: float, duration: float) -> dict[str, Any]:
    import redis.asyncio as aioredis

    assert redis.proc is not None
    pids = [s.proc.pid for s in servers if s.proc is not None]
    session, sockets = await _connect(servers)
    client = aioredis.from_url(redis.url)
    signer, origin = EnvelopeSigner(servers.secret), str(uuid.uuid4())
    count = int(rate * duration)
    seen, done = [0], asyncio.Event()
    readers = [asyncio.create_task(_count(ws, seen, done, count)) for ws in sockets]
    try:
        # idle baseline: probes, timers, metrics; what a replica costs with no events at all
        c0, r0, t0 = [cpu_seconds(p) for p in pids], cpu_seconds(redis.proc.pid), time.monotonic()
        await asyncio.sleep(IDLE_SECONDS)
        c1, r1, t1 = [cpu_seconds(p) for p in pids], cpu_seconds(redis.proc.pid), time.monotonic()
        pad = "x" * 200
        for seq in range(1, count + 1):
            delay = t1 + seq / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            frame = encode_event({"type": "scale", "i": seq, "pad": pad})
            env = encode_with_frame(origin, seq, "user", f"scale-u{seq % CLIENTS}", frame)
            await client.publish(CHANNEL, signer.sign(env))
        await asyncio.wait_for(done.wait(), 30)
        c2, r2, t2 = [cpu_seconds(p) for p in pids], cpu_seconds(redis.proc.pid), time.monotonic()
    finally:
        for task in readers:
            task.cancel()
        for ws in sockets:
            await ws.close()
        await session.close()
        await client.aclose()
    idle_w, load_w = t1 - t0, t2 - t1
    # per replica: extra CPU seconds per second of load over its idle rate
    extra = [(c2[i] - c1[i]) - (c1[i] - c0[i]) * load_w / idle_w for i in range(len(pids))]
    others = extra[1:]
    return {
        "replicas": len(pids),
        "events": count,
        "delivered": seen[0],
        "load_s": load_w,
        "audience_cpu_pct": 100 * (c2[0] - c1[0]) / load_w,
        "other_cpu_pct": 100 * sum((c2[i] - c1[i]) / load_w for i in range(1, len(pids))) / len(others)
        if others
        else None,
        "other_us_per_event": 1e6 * sum(others) / len(others) / count if others else None,
        "fleet_us_per_event": 1e6 * sum(extra) / count,
        "redis_cpu_pct": 100 * (r2 - r1) / load_w,
        "redis_idle_pct": 100 * (r1 - r0) / idle_w,
    }


def measure(
    redis: RedisServer, replica_counts: list[int], rate: float, duration: float
) -> list[dict[str, Any]]:
    rows = []
    for n in replica_counts:
        servers = start_servers(n, redis_url=redis.url, channel=CHANNEL, extra_env={"LOG_LEVEL": "WARNING"})
        try:
            servers.wait_bridge("connected")
            rows.append(asyncio.run(_point(redis, servers, rate, duration)))
        finally:
            servers.stop()
    return rows


def table(rows: list[dict[str, Any]], rate: float) -> str:
    def fmt(v: float | None, spec: str) -> str:
        return format("-", spec.split(".")[0]) if v is None else format(v, spec)

    out = [
        f"targeted user events at {rate:.0f}/s, {CLIENTS} clients all on replica 1",
        "replicas  delivered  replica1 CPU%  other replica CPU% (avg)  other µs/event  fleet µs/event"
        "  redis CPU%",
    ]
    for r in rows:
        out.append(
            f"{r['replicas']:>8}  {r['delivered']:>5}/{r['events']:<5}"
            f"{r['audience_cpu_pct']:>11.1f}  {fmt(r['other_cpu_pct'], '>24.1f')}  "
            f"{fmt(r['other_us_per_event'], '>14.0f')}  {r['fleet_us_per_event']:>14.0f}"
            f"  {r['redis_cpu_pct']:>10.1f}"
        )
    return "\n".join(out)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--replicas", type=int, nargs="+", default=[1, 3, 6, 10])
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--duration", type=float, default=5.0)
    args = parser.parse_args(argv)
    with RedisServer() as redis:
        print(table(measure(redis, args.replicas, args.rate, args.duration), args.rate))


if __name__ == "__main__":
    main()
