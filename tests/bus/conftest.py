"""Fixtures for the bus tests: in-process replicas (EventBus + RedisBridge, each with its own registry and
replica id) on one asyncio loop, talking through REAL redis-server processes. Real server processes and
WebSockets are covered by the web tests; this level isolates the bus and the bridge."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest

from aifactory.bridge import RedisBridge
from aifactory.bus import EventBus, start_bus
from aifactory.redis_url import parse_redis_url
from aifactory.registry import Subscriber

# Short reconnect settings so outage tests are quick; production defaults (1 s → 30 s) are tested separately.
FAST = {"backoff_initial": 0.05, "backoff_max": 0.4, "connect_timeout": 2.0, "publish_timeout": 2.0}
SECRET = "bus-tests-shared-auth-secret-" + "s" * 32  # every in-process replica signs with it
WAIT = 10.0  # upper bound for anything to arrive; a timeout here is a failure, never a measurement


@dataclass
class Replica:
    bus: EventBus
    replica_id: str

    @property
    def bridge(self) -> RedisBridge:
        assert self.bus.bridge is not None
        return self.bus.bridge

    def client(self, user: str | None, org: str | None, *, hold: bool = False, **kwargs: Any) -> Subscriber:
        """A local subscriber; `hold=True` registers it held, as a resuming socket is (see bus.resume)."""
        sub = Subscriber(user, org, **kwargs)
        if hold:
            sub.hold()
        return self.bus.registry.add(sub)

    def metric(self, name: str, **labels: str) -> float:
        return self.bus.metrics.value(name, **labels)


ReplicaFactory = Callable[..., Awaitable[Replica]]


@pytest.fixture
async def replicas() -> AsyncIterator[ReplicaFactory]:
    """`await replicas(url, **bridge_options)` → a started Replica; all are stopped after the test."""
    made: list[Replica] = []

    async def make(
        url: str | None, channel: str = "aif:test", *, wait: bool = True, **options: Any
    ) -> Replica:
        rid = str(uuid.uuid4())
        target = parse_redis_url(url) if url else None
        bus = await start_bus(
            target, channel, replica_id=rid, install=False, secret=SECRET, **{**FAST, **options}
        )
        replica = Replica(bus, rid)
        made.append(replica)
        if wait and target is not None:
            assert await replica.bridge.wait_connected(WAIT), "bridge never connected"
        return replica

    yield make
    for replica in made:
        await replica.bus.aclose()


async def recv(sub: Subscriber, timeout: float = WAIT) -> dict[str, Any]:
    """The next frame a client gets, parsed."""
    return json.loads(await asyncio.wait_for(sub.get(), timeout))


async def recv_until(sub: Subscriber, marker: dict[str, Any], timeout: float = WAIT) -> list[dict[str, Any]]:
    """Every frame before `marker` (which is consumed); proves what did and did not arrive in between."""
    seen: list[dict[str, Any]] = []
    while (frame := await recv(sub, timeout)) != marker:
        seen.append(frame)
    return seen


async def eventually_delivered(
    send: Callable[[dict[str, Any]], object], sub: Subscriber, *, attempts: int = 100, every: float = 0.1
) -> list[dict[str, Any]]:
    """Fire numbered retries until one of THIS call's retries reaches `sub` (fan-out after a fault is
    at-most-once: early ones may be lost by design). Returns the frames seen, the last being that retry."""
    token = uuid.uuid4().hex
    seen: list[dict[str, Any]] = []
    for i in range(attempts):
        send({"type": "retry", "token": token, "i": i})
        try:
            while True:
                frame = await recv(sub, timeout=every)
                seen.append(frame)
                if frame.get("token") == token:
                    return seen
        except TimeoutError:
            continue
    raise AssertionError(f"fan-out never resumed; frames seen: {seen}")


async def wait_until(predicate: Callable[[], bool], what: str) -> None:
    """Wait for a condition with an upper bound (the bound is a failure, not a measurement)."""

    async def poll() -> None:
        while not predicate():
            await asyncio.sleep(0.02)

    try:
        await asyncio.wait_for(poll(), WAIT)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


def records(caplog: pytest.LogCaptureFixture, replica: Replica, level: int) -> list[logging.LogRecord]:
    """This replica's bridge log records at exactly `level`."""
    return [
        r
        for r in caplog.records
        if r.name == "aifactory.bridge"
        and r.levelno == level
        and getattr(r, "replica", None) == replica.replica_id
    ]
