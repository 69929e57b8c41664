"""Simulation for docs/scaling.md: one shared channel vs per-audience channels, on a real Redis 7.

N subscriber processes stand in for N replicas (plain `redis.asyncio`, not the server). Users are spread
round-robin over the replicas, each user in one of a few orgs. The coordinator fires a fixed rate of
signed envelopes (the real wire format, `aifactory.envelope`), mostly user-scoped, some org-scoped, a few
broadcasts, in two modes:

- single: every envelope goes to `<channel>`; every subscriber SUBSCRIBEs it, verifies the MAC, decodes
  and routes by audience locally (what aifactory/bridge/relay.py and registry.py do today).
- audience: an envelope goes to `<channel>:u:<user>`, `<channel>:o:<org>` or `<channel>:b` with SPUBLISH;
  each subscriber SSUBSCRIBEs only the audiences of its own users (and the broadcast channel).

Each subscriber reports what it received (and how much of it had no local audience); the coordinator reads
its CPU from /proc/<pid>/stat over the window. Standalone: `python -m bench.scaling_sim [--replicas 10]
[--users 100] [--rate 500] [--duration 5]`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aifactory.envelope import EnvelopeSigner, decode_with_frame, encode_event, encode_with_frame
from harness.redis_servers import RedisServer

MODES = ("single", "audience")
CHANNEL = "aifactory:events"
SECRET = "bench-scaling-sim-secret-" + "x" * 40
ORGS = 5
CLK_TCK = os.sysconf("SC_CLK_TCK")
ROOT = Path(__file__).resolve().parent.parent


def cpu_seconds(pid: int) -> float:
    """utime + stime of one process, in seconds (fields 14 and 15 of /proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def org_of(user: str) -> str:
    return f"org{int(user[1:]) % ORGS}"


def audience_channel(scope: str, target: str | None) -> str:
    """The per-audience channel of one envelope (the design in docs/scaling.md)."""
    if scope == "user":
        return f"{CHANNEL}:u:{target}"
    if scope == "org":
        return f"{CHANNEL}:o:{target}"
    return f"{CHANNEL}:b"


def placement(replicas: int, users: int) -> list[list[str]]:
    """Users u0..u{users-1}, round-robin over the replicas."""
    return [[f"u{i}" for i in range(r, users, replicas)] for r in range(replicas)]


# ------------------------------------------------------------------------------------------ subscriber
async def _subscribe_and_count(url: str, mode: str, users: list[str]) -> None:
    import redis.asyncio as aioredis

    signer = EnvelopeSigner(SECRET)
    mine_users, mine_orgs = set(users), {org_of(u) for u in users}
    client = aioredis.from_url(url)
    pubsub = client.pubsub()
    if mode == "single":
        await pubsub.subscribe(CHANNEL)
        want = 1
    else:
        chans = [audience_channel("user", u) for u in users]
        chans += [audience_channel("org", o) for o in sorted(mine_orgs)] + [
            audience_channel("broadcast", None)
        ]
        for chan in chans:  # one SSUBSCRIBE per audience, as a replica would on each client connect
            await pubsub.ssubscribe(chan)
        want = len(chans)
    confirmed = 0
    while confirmed < want:
        msg = await pubsub.get_message(timeout=5.0)
        if msg is not None and msg["type"] in ("subscribe", "ssubscribe"):
            confirmed += 1
    counts = {"received": 0, "delivered": 0, "no_audience": 0}
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_reader(sys.stdin.fileno(), stop.set)  # any line (or EOF) on stdin: report and exit
    print("ready", flush=True)
    while not stop.is_set():
        msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.2)
        if msg is None or msg["type"] not in ("message", "smessage"):
            continue
        counts["received"] += 1
        env, _frame = decode_with_frame(signer.verify(msg["data"]))  # the bridge's per-envelope work
        local = (
            env.scope == "broadcast"
            or (env.scope == "user" and env.target in mine_users)
            or (env.scope == "org" and env.target in mine_orgs)
        )
        counts["delivered" if local else "no_audience"] += 1
    print(json.dumps(counts), flush=True)
    await pubsub.aclose()
    await client.aclose()


# ------------------------------------------------------------------------------------------ coordinator
@dataclass
class Schedule:
    """The fixed list of (scope, target) the coordinator fires; the same for both modes."""

    users: int
    count: int
    seed: int = 15
    items: list[tuple[str, str | None]] = field(default_factory=list)

    def __post_init__(self) -> None:
        rnd = random.Random(self.seed)
        for _ in range(self.count):
            roll = rnd.random()
            if roll < 0.01:
                self.items.append(("broadcast", None))
            elif roll < 0.10:
                self.items.append(("org", f"org{rnd.randrange(ORGS)}"))
            else:
                self.items.append(("user", f"u{rnd.randrange(self.users)}"))

    def expected_for(self, users: list[str]) -> int:
        mine, orgs = set(users), {org_of(u) for u in users}
        return sum(
            1
            for scope, target in self.items
            if scope == "broadcast"
            or (scope == "user" and target in mine)
            or (scope == "org" and target in orgs)
        )


async def _fire(url: str, mode: str, schedule: Schedule, rate: float, size: int) -> None:
    import redis.asyncio as aioredis

    signer, origin = EnvelopeSigner(SECRET), str(uuid.uuid4())
    client = aioredis.from_url(url)
    pad = "x" * max(0, size - 120)
    start = time.monotonic()
    for seq, (scope, target) in enumerate(schedule.items, 1):
        delay = start + seq / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        frame = encode_event({"type": "task.progress", "i": seq, "pad": pad})
        data = signer.sign(encode_with_frame(origin, seq, scope, target, frame))
        if mode == "single":
            await client.publish(CHANNEL, data)
        else:
            await client.execute_command("SPUBLISH", audience_channel(scope, target), data)
    await client.aclose()


def run_mode(
    redis: RedisServer, mode: str, replicas: int, users: int, rate: float, duration: float, size: int = 400
) -> dict[str, Any]:
    """One mode: start the subscribers, fire the schedule, collect counts and CPU per subscriber."""
    assert redis.proc is not None
    schedule = Schedule(users, int(rate * duration))
    spread = placement(replicas, users)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "bench.scaling_sim", "--worker", mode, "--url", redis.url, *mine],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
            cwd=ROOT,
        )
        for mine in spread
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None
            if proc.stdout.readline().strip() != "ready":
                raise RuntimeError(f"a {mode} subscriber did not start")
        before = [cpu_seconds(p.pid) for p in procs]
        redis_before, t0 = cpu_seconds(redis.proc.pid), time.monotonic()
        asyncio.run(_fire(redis.url, mode, schedule, rate, size))
        time.sleep(0.5)  # let the last messages land
        wall = time.monotonic() - t0
        after = [cpu_seconds(p.pid) for p in procs]
        redis_cpu = cpu_seconds(redis.proc.pid) - redis_before
        reports = []
        for proc in procs:
            out, _ = proc.communicate("stop\n", timeout=30)
            reports.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    per = [
        {**rep, "expected": schedule.expected_for(mine), "cpu_s": a - b}
        for rep, mine, a, b in zip(reports, spread, after, before, strict=True)
    ]
    return {
        "mode": mode,
        "replicas": replicas,
        "published": len(schedule.items),
        "wall_s": wall,
        "redis_cpu_s": redis_cpu,
        "per_replica": per,
        "received": sum(p["received"] for p in per),
        "cpu_s": sum(p["cpu_s"] for p in per),
    }


def simulate(
    redis: RedisServer, replicas: int = 10, users: int = 100, rate: float = 500, duration: float = 5.0
) -> dict[str, dict[str, Any]]:
    return {mode: run_mode(redis, mode, replicas, users, rate, duration) for mode in MODES}


def table(result: dict[str, dict[str, Any]]) -> str:
    rows = ["mode      replicas  published  msgs/replica  CPU ms/replica  redis CPU ms  no-audience msgs"]
    for mode in MODES:
        r = result[mode]
        n = r["replicas"]
        rows.append(
            f"{mode:<9} {n:>8}  {r['published']:>9}  {r['received'] / n:>12.0f}  "
            f"{r['cpu_s'] * 1000 / n:>14.0f}  {r['redis_cpu_s'] * 1000:>12.0f}  "
            f"{sum(p['no_audience'] for p in r['per_replica']):>16}"
        )
    s, a = result["single"], result["audience"]
    rows.append(
        f"ratio single/audience: messages {s['received'] / max(1, a['received']):.1f}x, "
        f"replica CPU {s['cpu_s'] / max(1e-9, a['cpu_s']):.1f}x, "
        f"redis CPU {s['redis_cpu_s'] / max(1e-9, a['redis_cpu_s']):.2f}x"
    )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--worker", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("users_of_worker", nargs="*", help=argparse.SUPPRESS)
    parser.add_argument("--replicas", type=int, default=10)
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--rate", type=float, default=500.0)
    parser.add_argument("--duration", type=float, default=5.0)
    args = parser.parse_args(argv)
    if args.worker:
        asyncio.run(_subscribe_and_count(args.url, args.worker, args.users_of_worker))
        return
    with RedisServer() as redis:
        print(table(simulate(redis, args.replicas, args.users, args.rate, args.duration)))


if __name__ == "__main__":
    main()
