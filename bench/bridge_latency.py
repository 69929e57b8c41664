"""Bridge alone vs raw redis-py: what `EventBus` + `RedisBridge` add over a plain publish → subscribe.

The end-to-end bench (bench.fanout) adds an HTTP request and a WebSocket hop that the raw floor lacks; this
one compares like with like. Both kinds run as two separate worker processes on the same redis-server:

- bridge: process A runs a real `start_bus` (EventBus + RedisBridge) and calls `broadcast_event`; process
  C runs its own bus with one local `Subscriber` and times the frame as its writer task gets it
  (`await sub.get()`, exactly what a WebSocket writer does before `send_text`).
- raw: process A `await publish()`es on a plain `redis.asyncio` client; process C reads a plain pubsub with
  `get_message(timeout=...)` (the redis-py idiom, as bench.floor does).

Same event JSON and size, same fixed-rate schedule, same clock: the sender stamps `time.monotonic_ns()`
(CLOCK_MONOTONIC, shared by all processes of the machine) into the event just before handing it over, and
the receiver subtracts it from its own reading on arrival. Kinds alternate per rate (raw, bridge, bridge,
raw, ...) and the samples of all rounds are pooled, so background load hits both alike.

Standalone: `python -m bench.bridge_latency [--rates 50 200 500] [--duration 2.5] [--rounds 4]
[--profile DIR]` (`--profile` writes one cProfile file per worker process).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from bench.stats import summarize
from bench.worker import LineWorker

KINDS = ("raw", "bridge")
DRAIN_SECONDS = 2.0  # after the last fire, how long a receiver waits for stragglers (counted lost after)
WARMUP_EVENTS = 20


def _event(i: int, pad: str) -> dict[str, Any]:
    return {"type": "bench", "i": i, "t": time.monotonic_ns(), "pad": pad}


# ---------------------------------------------------------------------------------------------- workers
class _Worker:
    """One side of one kind; commands arrive as lines on stdin, answers leave as lines on stdout."""

    def __init__(self, role: str, url: str, channel: str) -> None:
        self.role, self.url, self.channel = role, url, channel
        self.samples: list[int] = []  # latency in ns
        self._arrived = asyncio.Event()

    # -- senders
    async def fire(self, rate: float, count: int, size: int) -> None:
        pad = "x" * max(0, size - 60)
        start = time.monotonic()
        for i in range(count):
            delay = start + i / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            await self.send_one(i, pad)

    async def send_one(self, i: int, pad: str) -> None:
        raise NotImplementedError

    # -- receivers
    def arrived(self, ns: int, data: str | bytes) -> None:
        self.samples.append(ns - json.loads(data)["t"])
        self._arrived.set()

    async def drain(self, expected: int) -> list[int]:
        """Wait until `expected` samples are in or nothing arrived for DRAIN_SECONDS; hand them over."""
        while len(self.samples) < expected:
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), DRAIN_SECONDS)
            except TimeoutError:
                break
        out, self.samples = self.samples, []
        return out

    async def setup(self) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError


class _RawSender(_Worker):
    async def setup(self) -> None:
        import redis.asyncio as aioredis

        self.client = aioredis.from_url(self.url)
        await self.client.ping()

    async def send_one(self, i: int, pad: str) -> None:
        await self.client.publish(self.channel, json.dumps(_event(i, pad), separators=(",", ":")))

    async def close(self) -> None:
        await self.client.aclose()


class _RawReceiver(_Worker):
    async def setup(self) -> None:
        import redis.asyncio as aioredis

        self.client = aioredis.from_url(self.url)
        self.pubsub = self.client.pubsub()
        await self.pubsub.subscribe(self.channel)
        await self.pubsub.get_message(timeout=5.0)  # the subscribe confirmation
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        while True:
            msg = await self.pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            if msg is not None and msg["type"] == "message":
                self.arrived(time.monotonic_ns(), msg["data"])

    async def close(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
        await self.pubsub.aclose()
        await self.client.aclose()


class _BusWorker(_Worker):
    async def setup(self) -> None:
        from aifactory.bus import start_bus
        from aifactory.redis_url import parse_redis_url

        self.bus = await start_bus(
            parse_redis_url(self.url), self.channel, replica_id=str(uuid.uuid4()), install=True
        )
        assert self.bus.bridge is not None
        if not await self.bus.bridge.wait_connected(10.0):
            raise RuntimeError("the bridge did not connect to Redis within 10 s")

    async def close(self) -> None:
        await self.bus.aclose()


class _BusSender(_BusWorker):
    async def setup(self) -> None:
        await super().setup()
        from aifactory.bus import broadcast_event

        self.broadcast = broadcast_event

    async def send_one(self, i: int, pad: str) -> None:
        self.broadcast(_event(i, pad))  # what task/agent code calls; returns at once


class _BusReceiver(_BusWorker):
    async def setup(self) -> None:
        await super().setup()
        from aifactory.registry import Subscriber

        self.sub = self.bus.registry.add(Subscriber(None, None, max_queue=1_000_000))
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        while True:
            frame = await self.sub.get()
            self.arrived(time.monotonic_ns(), frame)

    async def close(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
        await super().close()


ROLES: dict[str, type[_Worker]] = {
    "raw-send": _RawSender,
    "raw-recv": _RawReceiver,
    "bridge-send": _BusSender,
    "bridge-recv": _BusReceiver,
}


async def _serve(role: str, url: str, channel: str) -> None:
    worker = ROLES[role](role, url, channel)
    await worker.setup()
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    print("READY", flush=True)
    while line := (await reader.readline()).decode().split():
        cmd, args = line[0], line[1:]
        if cmd == "FIRE":
            await worker.fire(float(args[0]), int(args[1]), int(args[2]))
            print("DONE", flush=True)
        elif cmd == "DUMP":
            print(json.dumps(await worker.drain(int(args[0]))), flush=True)
        elif cmd == "QUIT":
            break
    await worker.close()


def worker_main(role: str, url: str, channel: str, profile: Path | None) -> None:
    prof = cProfile.Profile() if profile else None
    if prof:
        prof.enable()
    try:
        asyncio.run(_serve(role, url, channel))
    finally:
        if prof and profile:
            prof.disable()
            prof.dump_stats(str(profile / f"{role}.prof"))


# ---------------------------------------------------------------------------------------------- coordinator
class _Proc(LineWorker):
    def __init__(self, role: str, url: str, channel: str, profile: Path | None) -> None:
        args = ["--worker", role, url, channel]
        if profile:
            args += ["--profile", str(profile)]
        super().__init__("bench.bridge_latency", *args)
        self.role = role
        line = self.ask(None)
        if line != "READY":
            self.close()
            raise RuntimeError(f"bench worker {role} failed to start: {line or 'exited'}")


class Pair:
    """Sender A and receiver C of one kind, on their own channel."""

    def __init__(self, kind: str, url: str, profile: Path | None = None) -> None:
        channel = f"bench:bridge-alone:{kind}:{uuid.uuid4().hex[:8]}"
        self.kind = kind
        self.recv = _Proc(f"{kind}-recv", url, channel, profile)
        try:
            self.send = _Proc(f"{kind}-send", url, channel, profile)
        except BaseException:
            self.recv.close()
            raise

    def run(self, rate: float, count: int, size: int) -> list[float]:
        """Fire `count` events at `rate`/s on A; latency samples (ms) seen on C."""
        if self.send.ask(f"FIRE {rate} {count} {size}") != "DONE":
            raise RuntimeError(f"{self.kind} sender failed")
        return [ns / 1e6 for ns in json.loads(self.recv.ask(f"DUMP {count}"))]

    def close(self) -> None:
        self.send.close()
        self.recv.close()


def measure(
    url: str,
    rates: list[float],
    duration: float,
    size: int,
    *,
    rounds: int = 4,
    profile: Path | None = None,
) -> list[dict[str, Any]]:
    """Rows {kind, rate, p50, p99, max, received, expected, lost} for raw and bridge at every rate."""
    pairs = {kind: Pair(kind, url, profile) for kind in KINDS}
    rows = []
    try:
        for pair in pairs.values():
            pair.run(100, WARMUP_EVENTS, size)  # connections warm, first-origin baseline set
        for rate in rates:
            count = max(1, int(rate * duration))
            pooled: dict[str, list[float]] = {k: [] for k in KINDS}
            for r in range(rounds):
                for kind in KINDS if r % 2 == 0 else tuple(reversed(KINDS)):
                    pooled[kind] += pairs[kind].run(rate, count, size)
            for kind in KINDS:
                rows.append({"kind": kind, "rate": rate, **summarize(pooled[kind], expected=count * rounds)})
    finally:
        for pair in pairs.values():
            pair.close()
    return rows


def ratios(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per rate: bridge p50/p99 divided by raw p50/p99."""
    by = {(r["kind"], r["rate"]): r for r in rows}
    out = []
    for rate in sorted({r["rate"] for r in rows}):
        raw, br = by.get(("raw", rate)), by.get(("bridge", rate))
        if raw and br and raw["p50"] and raw["p99"]:
            out.append(
                {
                    "rate": rate,
                    "raw_p50": raw["p50"],
                    "raw_p99": raw["p99"],
                    "bridge_p50": br["p50"],
                    "bridge_p99": br["p99"],
                    "p50_ratio": br["p50"] / raw["p50"],
                    "p99_ratio": br["p99"] / raw["p99"],
                    "added_p50_ms": br["p50"] - raw["p50"],
                }
            )
    return out


def print_table(rows: list[dict[str, Any]]) -> None:
    print(f"{'kind':8} {'rate':>6} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'lost':>5}")
    for r in rows:
        print(
            f"{r['kind']:8} {r['rate']:>6g} {r['p50']:>8.3f} {r['p99']:>8.3f} {r['max']:>8.3f} "
            f"{int(r['lost']):>5}"
        )
    for q in ratios(rows):
        print(
            f"rate {q['rate']:g}/s: bridge/raw p50 {q['p50_ratio']:.2f}x (+{q['added_p50_ms']:.3f} ms), "
            f"p99 {q['p99_ratio']:.2f}x"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.bridge_latency", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--worker", nargs=3, metavar=("ROLE", "URL", "CHANNEL"), help=argparse.SUPPRESS)
    parser.add_argument("--rates", type=float, nargs="+", default=[50, 200, 500])
    parser.add_argument("--duration", type=float, default=2.5, help="seconds of firing per rate and round")
    parser.add_argument("--size", type=int, default=256, help="event size in bytes")
    parser.add_argument("--rounds", type=int, default=4, help="alternating rounds per rate (pooled)")
    parser.add_argument("--profile", type=Path, help="write a cProfile file per worker into this directory")
    args = parser.parse_args(argv)
    if args.worker:
        worker_main(*args.worker, args.profile)
        return 0
    from tests.support.redis_procs import RedisServer

    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
    with RedisServer() as redis:
        rows = measure(
            redis.url, args.rates, args.duration, args.size, rounds=args.rounds, profile=args.profile
        )
    print_table(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
