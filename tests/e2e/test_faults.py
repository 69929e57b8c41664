"""Faults under load (short versions; `make soak` runs longer ones and prints a table).

Numbered broadcasts are fired at replica A at a fixed rate while sockets on A and C record arrivals.
For each fault: A's own clients lose nothing, cross-replica fan-out resumes by itself within the spec's
bound (the pending backoff step, never more than 31 s), nothing is lost after it resumed, and every
server not killed on purpose is alive with bounded RSS growth.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from harness.app_servers import ServerSet, start_servers
from harness.faults import FaultResult, redis_outage, replica_restart, run_fault, sentinel_failover
from harness.redis_servers import RedisServer, SentinelSetup

# Real 1 s first backoff step; the cap is shortened so a test never waits through a 30 s step.
ENV = {"AIFACTORY_REDIS_BACKOFF_MAX": "4"}
MAX_RSS_GROWTH_KIB = 64 * 1024


def check(result: FaultResult) -> None:
    print(result.row())
    assert result.accepted > 0 and result.accepted == result.fired, (
        "a publish failure must not fail the request"
    )
    assert result.lost_local == 0, "clients of the firing replica never depend on Redis"
    assert result.resume_s is not None, "cross-replica fan-out must resume by itself"
    assert result.gaps <= 1, "one outage window at most: nothing is lost once fan-out resumed"
    assert all(result.alive), "no server may die"
    growth = max(a - b for a, b in zip(result.rss_after_kib, result.rss_before_kib, strict=True))
    assert growth < MAX_RSS_GROWTH_KIB, f"RSS grew by {growth} KiB"


@pytest.fixture
def redis_and_replicas() -> Iterator[tuple[RedisServer, ServerSet]]:
    redis = RedisServer().start()
    servers = None
    try:
        servers = start_servers(3, redis_url=redis.url, extra_env=ENV)
        servers.wait_bridge("connected")
        yield redis, servers
    finally:
        if servers is not None:
            servers.stop()
        redis.stop()


async def test_kill_redis_and_restart(redis_and_replicas: tuple[RedisServer, ServerSet]) -> None:
    redis, servers = redis_and_replicas

    result = await run_fault("kill redis 2 s", servers, redis_outage(redis, 2.0))
    check(result)
    assert result.missed_cross > 0, "events fired while Redis was down cannot cross replicas (at-most-once)"
    assert result.resume_s is not None and result.resume_s <= 4.5, (
        "within the pending backoff step (cap 4 s here)"
    )


async def test_kill_one_replica(redis_and_replicas: tuple[RedisServer, ServerSet]) -> None:
    _redis, servers = redis_and_replicas
    result = await run_fault("kill replica B", servers, replica_restart(servers, 1, 1.0))
    check(result)
    assert result.missed_cross == 0, "losing replica B does not interrupt A → C"


async def test_sentinel_failover() -> None:
    with SentinelSetup() as sentinel:
        servers = start_servers(3, redis_url=sentinel.url(), extra_env=ENV)
        try:
            servers.wait_bridge("connected")
            old = sentinel.master_port()
            result = await run_fault("sentinel failover", servers, sentinel_failover(sentinel), after=3.0)
            assert sentinel.master_port() != old
            check(result)
        finally:
            servers.stop()
