"""Cross-replica latency against the raw redis-py floor: fire on replica A, time the arrival on C.

Four kinds, each a sender process A and a receiver process on the same redis-server:

- raw (the floor): A `await publish()`es on a plain `redis.asyncio` client; C reads a plain pubsub with
  `get_message(timeout=...)` (the redis-py idiom, as bench.floor does).
- bridge (our code alone): A runs a real `start_bus` (EventBus + RedisBridge) and calls
  `broadcast_event`; C runs its own bus with one local `Subscriber` and times the frame as its writer task
  gets it (`await sub.get()`, exactly what a WebSocket writer does before `send_text`).
- replica (the product path): A is a real replica (the app under uvicorn with the flags
  `aifactory-server` uses) and fires through the module-level `broadcast_event`, as task and agent code
  does; C is a real `aifactory-server` process; the receiver is a WebSocket client on C's `/ws/events`
  in a third process. This is the issue's "fire on replica A → received by a client on replica C"; it
  has one more process hop (C → browser) than the floor.
- relay (a reference, not a product): raw on A; on C the raw receiver passes each message to a bare
  `websockets` server, whose client in a third process times it: what the extra WebSocket hop costs alone.

Same event JSON and size, same fixed-rate schedule, same clock: the sender stamps `time.monotonic_ns()`
(CLOCK_MONOTONIC, shared by all processes of the machine) into the event just before handing it over, and
the receiver subtracts it from its own reading on arrival. Kinds alternate per rate (raw, bridge, replica,
relay, then reversed, ...) and the samples of all rounds are pooled, so background load hits all alike.

Standalone: `python -m bench.cross_replica [--rates 50 200 500] [--duration 2.5] [--rounds 8]
[--kinds bridge replica] [--profile DIR]` (`--profile` writes one cProfile file per worker process).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench.stats import summarize
from bench.worker import LineWorker
from harness.app_servers import ServerSet, base_env, start_servers
from harness.ports import free_port

KINDS = ("raw", "bridge", "replica", "relay")
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

    async def stop_reading(self) -> None:
        """Cancel a receiver's read loop (`self.task`) and wait until it is gone."""
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)

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
        await self.stop_reading()
        await self.pubsub.aclose()
        await self.client.aclose()


BUS_WORKER_SECRET = "bench-bus-workers-shared-secret-" + "x" * 32


class _BusWorker(_Worker):
    async def setup(self) -> None:
        from aifactory.bus import start_bus
        from aifactory.redis_url import parse_redis_url

        self.bus = await start_bus(
            parse_redis_url(self.url),
            self.channel,
            replica_id=str(uuid.uuid4()),
            install=True,
            secret=BUS_WORKER_SECRET,  # sender and receiver processes sign and verify with the same key
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
        await self.stop_reading()
        await super().close()


class _ReplicaSender(_Worker):
    """A real replica in this process: `create_app` served by uvicorn exactly as `aifactory-server` does
    (settings from the environment the coordinator passes), firing through `aifactory.bus.broadcast_event`."""

    async def setup(self) -> None:
        import uvicorn

        from aifactory import bus
        from aifactory.cli import setup_logging, uvicorn_config
        from aifactory.config import load_settings
        from aifactory.web import create_app

        settings = load_settings()
        setup_logging(settings.log_level_no)  # stderr: stdout is this worker's line protocol
        self.server = uvicorn.Server(uvicorn_config(create_app(settings), settings))
        self.serving = asyncio.create_task(self.server.serve())
        deadline = time.monotonic() + 30
        while not self.server.started:
            if self.serving.done() or time.monotonic() > deadline:
                raise RuntimeError("the replica did not start (see its log lines on stderr)")
            await asyncio.sleep(0.02)
        bridge = bus.get_bus().bridge
        if bridge is None or not await bridge.wait_connected(10.0):
            raise RuntimeError("the replica's bridge did not connect to Redis within 10 s")
        self.broadcast = bus.broadcast_event

    async def send_one(self, i: int, pad: str) -> None:
        self.broadcast(_event(i, pad))

    async def close(self) -> None:
        self.server.should_exit = True
        await self.serving


class _WebSocketReceiver(_Worker):
    """A WebSocket client on replica C's /ws/events (`url` carries the token); times each event frame.
    aiohttp, as bench.loadclient uses for both servers (its frame reader is compiled)."""

    async def setup(self) -> None:
        import aiohttp

        self.session = aiohttp.ClientSession()
        self.text = aiohttp.WSMsgType.TEXT
        self.ws = await self.session.ws_connect(self.url, heartbeat=None, max_msg_size=0)
        hello = await self.ws.receive_json()  # sent once the socket is registered for fan-out
        if hello.get("type") != "hello":
            raise RuntimeError(f"unexpected first frame from replica C: {hello!r}")
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for msg in self.ws:
            if msg.type == self.text:
                self.arrived(time.monotonic_ns(), msg.data)

    def arrived(self, ns: int, data: str | bytes) -> None:
        frame = json.loads(data)
        event = frame.get("event", frame)
        if isinstance(event, dict) and "t" in event:
            self.samples.append(ns - event["t"])
            self._arrived.set()

    async def close(self) -> None:
        await self.stop_reading()
        await self.ws.close()
        await self.session.close()


class _Relay(_RawReceiver):
    """The least any Python replica C can do: the raw receiver's plain `get_message()` loop, each message
    passed on as one WebSocket text frame to every client of a bare `websockets` server (no framework,
    auth, routing or queues). Not a product; the reference for what the extra WebSocket hop costs."""

    async def setup(self) -> None:
        from websockets.asyncio.server import ServerConnection, broadcast, serve

        async def handler(conn: ServerConnection) -> None:
            await conn.send(json.dumps({"type": "hello"}))
            self.clients.add(conn)
            try:
                await conn.wait_closed()
            finally:
                self.clients.discard(conn)

        self.broadcast = broadcast
        self.clients: set[ServerConnection] = set()
        self.server = await serve(handler, "127.0.0.1", int(os.environ["BENCH_RELAY_PORT"]), compression=None)
        await super().setup()

    def arrived(self, ns: int, data: str | bytes) -> None:
        self.broadcast(self.clients, data.decode() if isinstance(data, bytes) else data)

    async def close(self) -> None:
        await super().close()
        self.server.close()


ROLES: dict[str, type[_Worker]] = {
    "raw-send": _RawSender,
    "raw-recv": _RawReceiver,
    "bridge-send": _BusSender,
    "bridge-recv": _BusReceiver,
    "replica-send": _ReplicaSender,
    "replica-recv": _WebSocketReceiver,
    "relay-send": _RawSender,
    "relay-fwd": _Relay,
    "relay-recv": _WebSocketReceiver,
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
    def __init__(
        self,
        role: str,
        url: str,
        channel: str,
        profile: Path | None,
        env: dict[str, str] | None = None,
    ) -> None:
        args = ["--worker", role, url, channel]
        if profile:
            args += ["--profile", str(profile)]
        super().__init__("bench.cross_replica", *args, env=env)
        line = self.ask(None)
        if line != "READY":
            self.close()
            raise RuntimeError(f"bench worker {role} failed to start: {line or 'exited'}")


class Pair:
    """Sender A and receiver C of one kind, on their own channel, plus what sits between them on C: an
    `aifactory-server` for the replica kind, the relay process for the relay kind."""

    def __init__(self, kind: str, url: str, profile: Path | None = None) -> None:
        channel = f"bench:cross-replica:{kind}:{uuid.uuid4().hex[:8]}"
        self.kind = kind
        self.replica_c: ServerSet | None = None
        self.replica_a_http: str | None = None  # the in-process replica A's own HTTP address
        self.procs: list[_Proc] = []
        try:
            send_env, recv_url = None, url
            if kind == "replica":
                self.replica_c, send_env = _replica_c(url, channel)
                self.replica_a_http = f"http://127.0.0.1:{send_env['PORT']}"
                token = self.replica_c.token("bench-viewer", org="bench-org")
                recv_url = self.replica_c[0].ws_url("/ws/events", token)
            elif kind == "relay":
                port = free_port()
                relay_env = dict(os.environ, BENCH_RELAY_PORT=str(port))
                self._start(_Proc("relay-fwd", url, channel, profile, env=relay_env))
                recv_url = f"ws://127.0.0.1:{port}/"
            self.recv = self._start(_Proc(f"{kind}-recv", recv_url, channel, profile))
            self.send = self._start(_Proc(f"{kind}-send", url, channel, profile, env=send_env))
        except BaseException:
            self.close()
            raise

    def _start(self, proc: _Proc) -> _Proc:
        self.procs.append(proc)
        return proc

    def run(self, rate: float, count: int, size: int) -> list[float]:
        """Fire `count` events at `rate`/s on A; latency samples (ms) seen on C."""
        if self.send.ask(f"FIRE {rate} {count} {size}") != "DONE":
            raise RuntimeError(f"{self.kind} sender failed")
        return [ns / 1e6 for ns in json.loads(self.recv.ask(f"DUMP {count}"))]

    def close(self) -> None:
        for proc in reversed(self.procs):
            proc.close()
        if self.replica_c is not None:
            self.replica_c.stop()


def _replica_c(url: str, channel: str) -> tuple[ServerSet, dict[str, str]]:
    """Start replica C (`aifactory-server`) and return it with the environment replica A's worker runs in:
    the same secret, Redis and channel, its own port, audit file and quiet logs."""
    workdir = Path(tempfile.mkdtemp(prefix="aif-bench-cross-"))
    quiet = {"LOG_LEVEL": "WARNING"}
    replica_c = start_servers(1, redis_url=url, channel=channel, extra_env=quiet, workdir=workdir)
    try:
        replica_c.wait_bridge("connected")
    except BaseException:
        replica_c.stop()
        raise
    env = base_env(workdir)
    env.update(
        quiet,
        REDIS_URL=url,
        REDIS_CHANNEL=channel,
        AIFACTORY_AUTH_SECRET=replica_c.secret,
        PORT=str(free_port()),
        AIFACTORY_AUDIT_LOG=str(workdir / "replicaA-audit.jsonl"),
    )
    return replica_c, env


def measure(
    url: str,
    rates: list[float],
    duration: float,
    size: int,
    *,
    rounds: int = 8,
    profile: Path | None = None,
    kinds: tuple[str, ...] = KINDS,
) -> list[dict[str, Any]]:
    """Rows {kind, rate, p50, p99, max, received, expected, lost} for each kind at every rate."""
    kinds = ("raw", *(k for k in kinds if k != "raw"))  # the floor is always measured alongside
    pairs: dict[str, Pair] = {}
    try:
        for kind in kinds:
            pairs[kind] = Pair(kind, url, profile)
    except BaseException:
        for pair in pairs.values():
            pair.close()
        raise
    rows = []
    try:
        for pair in pairs.values():
            pair.run(100, WARMUP_EVENTS, size)  # connections warm, first-origin baseline set
        for rate in rates:
            count = max(1, int(rate * duration))
            pooled: dict[str, list[float]] = {k: [] for k in kinds}
            for r in range(rounds):
                for kind in kinds if r % 2 == 0 else tuple(reversed(kinds)):
                    pooled[kind] += pairs[kind].run(rate, count, size)
            for kind in kinds:
                rows.append({"kind": kind, "rate": rate, **summarize(pooled[kind], expected=count * rounds)})
    finally:
        for pair in pairs.values():
            pair.close()
    return rows


def ratios(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per rate and measured kind (bridge, replica): its p50/p99 divided by raw p50/p99."""
    by = {(r["kind"], r["rate"]): r for r in rows}
    out = []
    for rate in sorted({r["rate"] for r in rows}):
        raw = by.get(("raw", rate))
        if not raw or not raw["p50"] or not raw["p99"]:
            continue
        for kind in KINDS[1:]:
            ours = by.get((kind, rate))
            if ours:
                out.append(
                    {
                        "rate": rate,
                        "kind": kind,
                        "p50_ratio": ours["p50"] / raw["p50"],
                        "p99_ratio": ours["p99"] / raw["p99"],
                        "added_p50_ms": ours["p50"] - raw["p50"],
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
            f"rate {q['rate']:g}/s: {q['kind']}/raw p50 {q['p50_ratio']:.2f}x "
            f"({q['added_p50_ms'] * 1000:+.0f} µs), p99 {q['p99_ratio']:.2f}x"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.cross_replica", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--worker", nargs=3, metavar=("ROLE", "URL", "CHANNEL"), help=argparse.SUPPRESS)
    parser.add_argument("--rates", type=float, nargs="+", default=[50, 200, 500])
    parser.add_argument("--duration", type=float, default=2.5, help="seconds of firing per rate and round")
    parser.add_argument("--size", type=int, default=256, help="event size in bytes")
    parser.add_argument("--rounds", type=int, default=8, help="alternating rounds per rate (pooled)")
    parser.add_argument("--profile", type=Path, help="write a cProfile file per worker into this directory")
    parser.add_argument("--kinds", nargs="+", choices=KINDS, default=list(KINDS), help="raw is always run")
    args = parser.parse_args(argv)
    if args.worker:
        worker_main(*args.worker, args.profile)
        return 0
    from harness.redis_servers import RedisServer

    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
    with RedisServer() as redis:
        rows = measure(
            redis.url,
            args.rates,
            args.duration,
            args.size,
            rounds=args.rounds,
            profile=args.profile,
            kinds=tuple(args.kinds),
        )
    print_table(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
