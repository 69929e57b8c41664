"""Failure modes with real redis-server processes: Redis lost mid-session, Redis down at startup, a
connected-but-deaf subscriber, and the reconnect backoff schedule."""

from __future__ import annotations

import logging
import signal
import uuid

import pytest

from aifactory.bridge import RedisBridge, backoff_delay
from aifactory.bus import start_bus
from aifactory.redis_url import parse_redis_url
from harness.ports import free_port
from harness.redis_servers import RedisServer, redis_cli
from harness.tcp_proxy import TcpProxy
from tests.bus.conftest import (
    SECRET,
    WAIT,
    Replica,
    ReplicaFactory,
    eventually_delivered,
    records,
    recv,
    wait_until,
)

PASSWORD = "failure-modes-pw"


def delays(caplog: pytest.LogCaptureFixture, replica: Replica) -> list[float]:
    """The reconnect delays this replica scheduled, in order (from its DEBUG log records)."""
    return [
        float(r.args[0])  # type: ignore[index]
        for r in records(caplog, replica, logging.DEBUG)
        if r.msg.startswith("next Redis connect attempt")
    ]


def test_backoff_schedule_doubles_from_1s_to_a_30s_cap() -> None:
    assert [backoff_delay(i) for i in range(8)] == [1, 2, 4, 8, 16, 30, 30, 30]
    assert backoff_delay(10_000) == 30  # no overflow on very long outages
    assert [backoff_delay(i, 0.05, 0.4) for i in range(6)] == [0.05, 0.1, 0.2, 0.4, 0.4, 0.4]


async def test_production_defaults_are_1s_and_30s() -> None:
    bus = await start_bus(
        parse_redis_url(f"redis://127.0.0.1:{free_port()}/0"), replica_id=str(uuid.uuid4()), secret=SECRET
    )
    try:
        assert isinstance(bus.bridge, RedisBridge)
        assert (bus.bridge.backoff_initial, bus.bridge.backoff_max) == (1.0, 30.0)
        assert bus.bridge.max_event_bytes == 512 * 1024
    finally:
        await bus.aclose()


async def test_redis_lost_mid_session_warns_once_keeps_local_delivery_and_resumes(
    replicas: ReplicaFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="aifactory")
    server = RedisServer(password=PASSWORD).start()
    try:
        a, b = await replicas(server.url), await replicas(server.url)
        alice_a, alice_b = a.client("alice", "acme"), b.client("alice", "acme")
        a.bus.send_to_user("alice", {"n": 0})
        assert await recv(alice_a) == {"n": 0} and await recv(alice_b) == {"n": 0}

        server.stop()
        await wait_until(lambda: a.bus.state == "reconnecting" == b.bus.state, "both bridges to notice")
        assert a.bus.send_to_user("alice", {"n": 1}) == 1  # own-replica delivery is unaffected
        assert await recv(alice_a) == {"n": 1}
        await wait_until(lambda: len(delays(caplog, a)) >= 5, "several reconnect attempts")
        assert delays(caplog, a)[:5] == [0.05, 0.1, 0.2, 0.4, 0.4]  # doubling, capped

        server.start()  # same port, no server restart
        assert await a.bridge.wait_connected(WAIT) and await b.bridge.wait_connected(WAIT)
        a.bus.send_to_user("alice", {"n": 2})
        # the event fired during the outage is gone (at-most-once); B's client is told to refetch
        assert await recv(alice_b) == {"type": "resync", "reason": "gap", "origin": a.replica_id, "missed": 1}
        assert await recv(alice_b) == {"n": 2}
        assert await recv(alice_a) == {"n": 2}  # and once, locally, on the origin
        b.bus.send_to_user("alice", {"n": 3})
        assert await recv(alice_a) == {"n": 3}

        for r in (a, b):
            warnings = records(caplog, r, logging.WARNING)
            assert len(warnings) == 1 and warnings[0].getMessage().startswith("Redis connection lost")
            assert records(caplog, r, logging.ERROR) == []
            assert r.metric("aifactory_bus_reconnects_total") == 1
            assert r.metric("aifactory_bus_redis_connected") == 1

        # a second outage: again exactly one WARNING, and the backoff starts over (reset after success)
        before = len(delays(caplog, a))
        server.stop()
        await wait_until(lambda: len(delays(caplog, a)) >= before + 2, "reconnect attempts after 2nd loss")
        assert delays(caplog, a)[before : before + 2] == [0.05, 0.1]
        assert len(records(caplog, a, logging.WARNING)) == 2
        assert a.metric("aifactory_bus_redis_connected") == 0
        assert PASSWORD not in caplog.text
    finally:
        server.stop()


async def test_redis_down_at_startup_errors_once_then_debug_then_recovers(
    replicas: ReplicaFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="aifactory")
    port = free_port()
    url = f"redis://:{PASSWORD}@127.0.0.1:{port}/0"
    a = await replicas(url, wait=False)  # starts and serves although nothing listens on the port
    assert a.bus.state == "connecting"
    alice = a.client("alice", "acme")
    assert a.bus.broadcast_event({"type": "local-only"}) == 1
    assert await recv(alice) == {"type": "local-only"}
    await wait_until(lambda: len(delays(caplog, a)) >= 4, "several connect attempts")

    errors = records(caplog, a, logging.ERROR)
    assert len(errors) == 1 and "Redis unreachable at startup" in errors[0].getMessage()
    assert f"redis://:***@127.0.0.1:{port}/0" in errors[0].getMessage()
    failed = [r for r in records(caplog, a, logging.DEBUG) if r.msg.startswith("Redis connect attempt")]
    assert len(failed) >= 3  # later failures are DEBUG only
    assert records(caplog, a, logging.WARNING) == []

    server = RedisServer(port=port, password=PASSWORD).start()
    try:
        assert await a.bridge.wait_connected(WAIT)
        b = await replicas(url)
        bob_b = b.client("bob", "acme")
        a.bus.send_to_org("acme", {"type": "after-recovery"})
        assert await recv(bob_b) == {"type": "after-recovery"}
        assert await recv(alice) == {"type": "after-recovery"}  # alice is in acme too, on the origin
        b.bus.send_to_user("alice", {"type": "back"})
        assert await recv(alice) == {"type": "back"}
        assert len(records(caplog, a, logging.ERROR)) == 1
        assert a.metric("aifactory_bus_reconnects_total") == 0  # first connect, not a reconnect
        assert PASSWORD not in caplog.text
    finally:
        server.stop()


async def test_connected_but_deaf_subscriber_is_found_by_the_self_probe_and_reconnected(
    replicas: ReplicaFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """A's Redis traffic goes through a TCP proxy that, on command, keeps A's SUBSCRIBE connection open but
    silently swallows everything Redis sends on it — no error, no EOF. Only the self-probe can notice."""
    caplog.set_level(logging.INFO, logger="aifactory")
    server = RedisServer(password=PASSWORD).start()
    proxy = TcpProxy(server.port).start()
    try:
        a = await replicas(f"redis://:{PASSWORD}@127.0.0.1:{proxy.port}/0", probe_interval=0.2)
        b = await replicas(server.url)
        alice_a = a.client("alice", "acme")
        b.bus.send_to_user("alice", {"n": 1})
        assert await recv(alice_a) == {"n": 1}

        assert proxy.mute_subscribers() == 1
        b.bus.send_to_user("alice", {"n": 2})  # A cannot hear this one
        await wait_until(lambda: a.metric("aifactory_bus_deaf_subscriber_total") >= 1, "the probe to notice")
        assert await a.bridge.wait_connected(WAIT)
        b.bus.send_to_user("alice", {"n": 3})
        assert await recv(alice_a) == {"type": "resync", "reason": "gap", "origin": b.replica_id, "missed": 1}
        assert await recv(alice_a) == {"n": 3}

        warnings = records(caplog, a, logging.WARNING)
        assert len(warnings) == 1 and "connected but deaf" in warnings[0].getMessage()
        assert a.metric("aifactory_bus_deaf_subscriber_total") == 1
        assert a.metric("aifactory_bus_reconnects_total") == 1
        assert b.metric("aifactory_bus_deaf_subscriber_total") == 0  # B was never deaf
    finally:
        proxy.stop()
        server.stop()


async def test_a_healthy_idle_subscriber_is_never_called_deaf(replicas: ReplicaFactory) -> None:
    """The probe must not flap: an idle but healthy link keeps answering its own probes."""
    server = RedisServer().start()
    try:
        a = await replicas(server.url, probe_interval=0.05, probe_timeout=2.0)
        nonces = a.bridge._probe_nonce
        await wait_until(lambda: a.bridge._probe_nonce >= nonces + 10, "ten probe round trips")
        assert a.metric("aifactory_bus_deaf_subscriber_total") == 0
        assert a.metric("aifactory_bus_reconnects_total") == 0
        assert a.bus.state == "connected"
    finally:
        server.stop()


async def test_failing_publishes_are_counted_never_raised_and_warned_once(
    replicas: ReplicaFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """A real ACL user that may SUBSCRIBE but not PUBLISH: every publish fails on the Redis side while the
    subscriber stays healthy. Callers never see an error, local delivery goes on, drops are counted, and
    the operator gets one WARNING for the streak (not one per event)."""
    caplog.set_level(logging.DEBUG, logger="aifactory")
    server = RedisServer(password=PASSWORD).start()
    try:
        acl = ["ACL", "SETUSER", "listener", "on", ">listener-pw", "resetchannels", "&*", "+@all", "-publish"]
        redis_cli(server.port, *acl, password=PASSWORD)
        a = await replicas(f"redis://listener:listener-pw@127.0.0.1:{server.port}/0")
        alice = a.client("alice", "acme")
        for i in range(5):
            assert a.bus.send_to_user("alice", {"i": i}) == 1  # no exception reaches the caller
            assert await recv(alice) == {"i": i}
        await wait_until(
            lambda: a.metric("aifactory_bus_dropped_total", reason="publish_failed") == 5, "drops"
        )
        assert a.metric("aifactory_bus_published_total") == 0
        warnings = records(caplog, a, logging.WARNING)
        assert len(warnings) == 1 and "publishing to Redis keeps failing" in warnings[0].getMessage()
        assert "NOPERM" in warnings[0].getMessage() or "permission" in warnings[0].getMessage().lower()
        assert a.bus.state == "connected"  # the subscriber was never affected
        assert "listener-pw" not in caplog.text
    finally:
        server.stop()


async def test_a_hung_redis_bounds_each_publish_by_publish_timeout(replicas: ReplicaFactory) -> None:
    """Redis frozen (SIGSTOP: connections open, no replies): the publisher gives up after
    `publish_timeout` (it sets no socket timeout of its own), counts the drop, and publishes again once
    Redis is back. The caller and local delivery never wait."""
    server = RedisServer().start()
    assert server.proc is not None
    try:
        a = await replicas(server.url, publish_timeout=0.3)
        b = await replicas(server.url)
        alice_a, alice_b = a.client("alice", "acme"), b.client("alice", "acme")
        a.bus.send_to_user("alice", {"type": "before"})
        assert await recv(alice_a) == {"type": "before"} and await recv(alice_b) == {"type": "before"}
        server.proc.send_signal(signal.SIGSTOP)
        try:
            assert a.bus.send_to_user("alice", {"type": "frozen"}) == 1
            assert await recv(alice_a) == {"type": "frozen"}  # local delivery did not wait for Redis
            await wait_until(
                lambda: a.metric("aifactory_bus_dropped_total", reason="publish_failed") == 1,
                "the hung publish to time out",
            )
        finally:
            server.proc.send_signal(signal.SIGCONT)
        seen = await eventually_delivered(lambda e: a.bus.send_to_user("alice", e), alice_b)
        assert seen[-1]["type"] == "retry"
        assert a.bus.state == "connected"
    finally:
        server.stop()
