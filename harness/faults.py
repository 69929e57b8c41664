"""Faults under load: kill Redis and restart it, kill one replica, fail over a Sentinel master.

While a firer sends numbered broadcasts to replica A at a fixed rate, sockets on every replica record
what arrives. Per fault we report: events lost for the clients of the firing replica (goal 0: local
delivery never depends on Redis), cross-replica events missed during the outage (at-most-once, no
replay), time from healing the fault to the first event fired after the fault reaching replica C,
and that every server that was not killed on purpose is still alive, with its RSS before and after.
Shared by tests/e2e/test_faults.py (short) and `make soak` (bench/soak.py: longer, prints a table).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from harness.app_servers import ServerSet, rss_kib
from harness.redis_servers import RedisServer, SentinelSetup


@dataclass
class FaultResult:
    """What one fault did to the load; times are seconds."""

    name: str
    fired: int
    accepted: int
    lost_local: int  # accepted on A but missing on one of A's sockets (worst socket)
    missed_cross: int  # accepted on A but missing on C (worst socket): the outage window
    gaps: int  # separate runs of missed events on C (worst socket): 1 outage window, nothing lost after
    interrupted_s: float  # first missed event fired → first event after the last miss arrived on C
    resume_s: float | None  # heal → fan-out flowing again on C (0 if never interrupted); None: never
    alive: list[bool]
    rss_before_kib: list[int]
    rss_after_kib: list[int]
    notes: list[str] = field(default_factory=list)

    def row(self) -> dict[str, Any]:
        growth = [a - b for a, b in zip(self.rss_after_kib, self.rss_before_kib, strict=True)]
        return {
            "fault": self.name,
            "fired": self.fired,
            "accepted": self.accepted,
            "lost_local": self.lost_local,
            "missed_cross": self.missed_cross,
            "gaps": self.gaps,
            "interrupted_s": round(self.interrupted_s, 2),
            "resume_s": None if self.resume_s is None else round(self.resume_s, 2),
            "alive": all(self.alive),
            "rss_growth_kib": max(growth) if growth else 0,
        }


class Receiver:
    """Sockets on one replica; records (n, arrival time) per socket for `load` events."""

    def __init__(self, url: str, count: int) -> None:
        self.url, self.count = url, count
        self.got: list[dict[int, float]] = [{} for _ in range(count)]
        self.tasks: list[asyncio.Task[None]] = []

    async def start(self, session: aiohttp.ClientSession) -> None:
        ready = [asyncio.Event() for _ in range(self.count)]
        self.tasks = [asyncio.create_task(self._one(session, i, ready[i])) for i in range(self.count)]
        await asyncio.wait_for(asyncio.gather(*(r.wait() for r in ready)), 30)

    async def _one(self, session: aiohttp.ClientSession, i: int, ready: asyncio.Event) -> None:
        async with session.ws_connect(self.url, heartbeat=None) as ws:
            async for msg in ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    break
                ev = msg.json()
                if ev.get("type") == "hello":
                    ready.set()
                elif ev.get("type") == "load":
                    self.got[i][ev["n"]] = time.monotonic()

    async def stop(self) -> None:
        for t in self.tasks:
            t.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


async def run_fault(
    name: str,
    servers: ServerSet,
    heal: Callable[[], float],
    *,
    rate: float = 20.0,
    before: float = 2.0,
    after: float = 4.0,
    sockets: int = 3,
    wait_resume: float = 31.0,
    receive_on: int = 2,
) -> FaultResult:
    """Fire on replica 0; after `before` s run `heal()` in a thread (it breaks and repairs something and
    returns the monotonic time it was repaired); keep firing until fan-out resumed + `after` s."""
    a, c = servers[0], servers[receive_on]
    token = servers.token("load-watcher", org="org-load")
    service = servers.token("load-firer", role="service")
    fired: dict[int, float] = {}
    accepted: set[int] = set()
    rss_before = [rss_kib(s.proc.pid) for s in servers if s.proc]
    async with aiohttp.ClientSession() as session:
        recv_a = Receiver(a.ws_url("/ws/events", token), sockets)
        recv_c = Receiver(c.ws_url("/ws/events", token), sockets)
        await recv_a.start(session)
        await recv_c.start(session)
        headers = {"Authorization": f"Bearer {service}"}
        stop = asyncio.Event()
        pending: set[asyncio.Task[None]] = set()

        async def fire_one(n: int) -> None:
            fired[n] = time.monotonic()
            body = {"scope": "broadcast", "event": {"type": "load", "n": n}}
            try:
                async with session.post(a.http + "/api/events", json=body, headers=headers) as resp:
                    if resp.status == 202:
                        accepted.add(n)
            except aiohttp.ClientError:
                pass

        async def firer() -> None:
            start = time.monotonic()
            n = 0
            while not stop.is_set():
                delay = start + n / rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                t = asyncio.create_task(fire_one(n))
                pending.add(t)
                t.add_done_callback(pending.discard)
                n += 1

        fire_task = asyncio.create_task(firer())
        await asyncio.sleep(before)
        t_healed = await asyncio.to_thread(heal)
        # wait until every socket on C receives an event fired after the heal: fan-out flows again
        flowing = False
        deadline = t_healed + wait_resume
        while time.monotonic() < deadline and not flowing:
            flowing = all(any(fired.get(n, 0) >= t_healed for n in g) for g in recv_c.got)
            await asyncio.sleep(0.05)
        await asyncio.sleep(after)
        stop.set()
        await fire_task
        await asyncio.gather(*pending, return_exceptions=True)
        await asyncio.sleep(1.0)  # drain
        await recv_a.stop()
        await recv_c.stop()

    lost_local = max(len(accepted - set(g)) for g in recv_a.got)
    missed_cross, gaps, interrupted, resume = 0, 0, 0.0, 0.0 if flowing else None
    for got in recv_c.got:
        missed = sorted(accepted - set(got))
        missed_cross = max(missed_cross, len(missed))
        gaps = max(gaps, sum(1 for i, n in enumerate(missed) if i == 0 or missed[i - 1] != n - 1))
        if missed and flowing:
            after_gap = [n for n in got if n > missed[-1]]
            if not after_gap:
                resume = None
                continue
            back = got[min(after_gap)]
            interrupted = max(interrupted, back - fired[missed[0]])
            if resume is not None:
                resume = max(resume, back - t_healed)
    alive = [s.proc is not None and s.proc.poll() is None for s in servers]
    rss_after = [rss_kib(s.proc.pid) if ok and s.proc else 0 for s, ok in zip(servers, alive, strict=True)]
    return FaultResult(
        name=name,
        fired=len(fired),
        accepted=len(accepted),
        lost_local=lost_local,
        missed_cross=missed_cross,
        gaps=gaps,
        interrupted_s=interrupted,
        resume_s=None if resume is None else max(0.0, resume),
        alive=alive,
        rss_before_kib=rss_before,
        rss_after_kib=rss_after,
    )


# The faults themselves: each returns the `heal` callable that `run_fault` runs mid-load; `heal` injects
# the fault, repairs it, and returns the monotonic time of the repair.


def redis_outage(redis: RedisServer, seconds: float) -> Callable[[], float]:
    """Kill redis-server, keep it down `seconds`, start it again on the same port."""

    def heal() -> float:
        redis.stop()
        time.sleep(seconds)
        redis.start()
        return time.monotonic()

    return heal


def replica_restart(servers: ServerSet, index: int, down_seconds: float) -> Callable[[], float]:
    """SIGKILL one replica, keep it down `down_seconds`, restart it and wait until its bridge is back."""
    victim = servers[index]

    def heal() -> float:
        assert victim.proc is not None
        victim.proc.kill()
        victim.proc.wait()
        time.sleep(down_seconds)
        victim.start()
        victim.wait_ready()
        victim.wait_bridge("connected")
        return time.monotonic()

    return heal


def sentinel_failover(sentinel: SentinelSetup) -> Callable[[], float]:
    """SENTINEL FAILOVER, returning once every sentinel names the new master."""

    def heal() -> float:
        sentinel.failover()
        return time.monotonic()

    return heal
