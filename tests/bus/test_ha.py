"""High-availability Redis topologies with real processes: a Sentinel deployment (master, replica, three
sentinels) that fails over, and a 3-master Redis Cluster that loses the node a subscriber was using."""

from __future__ import annotations

import asyncio

from harness.redis_servers import ClusterSetup, SentinelSetup, redis_cli
from tests.bus.conftest import WAIT, Replica, ReplicaFactory, eventually_delivered, recv, recv_until

PASSWORD = "ha-topology-pw"


def subscriber_ports(ports: list[int], replica: Replica) -> list[int]:
    """Which Redis nodes hold this replica's SUBSCRIBE connection (by its client name)."""
    name = f"name=aifactory-{replica.replica_id[:8]}-sub"
    return [p for p in ports if name in redis_cli(p, "CLIENT", "LIST", "TYPE", "pubsub", password=PASSWORD)]


async def assert_exactly_once(a: Replica, b: Replica, on_a: object, on_b: object) -> None:
    """After recovery: every event crosses once, in order, in both directions, and nothing else arrives."""
    for i in range(5):
        a.bus.send_to_user("alice", {"from": "a", "i": i})
        b.bus.send_to_user("alice", {"from": "b", "i": i})
    end = {"type": "end"}
    a.bus.broadcast_event(end)
    b.bus.broadcast_event(end)
    for sub in (on_a, on_b):
        frames = await recv_until(sub, end)  # type: ignore[arg-type]
        frames += await recv_until(sub, end)  # type: ignore[arg-type]
        assert all("from" in f for f in frames), frames
        assert sorted(frames, key=lambda f: (f["from"], f["i"])) == [
            {"from": o, "i": i} for o in ("a", "b") for i in range(5)
        ]
        assert [f["i"] for f in frames if f["from"] == "a"] == list(range(5))  # per-origin order kept
        assert sub.pending() == 0  # type: ignore[attr-defined]


async def assert_settled_then_exactly_once(a: Replica, b: Replica, on_a: object, on_b: object) -> None:
    """Drain what the switch-over left behind, then prove exactly-once delivery both ways.

    Before a marker from each side, a client may hold copies of the retries (local and late remote ones)
    and a resync notice; nothing else is allowed.
    """
    marker = {"type": "marker"}
    a.bus.broadcast_event(marker)
    b.bus.broadcast_event(marker)
    for sub in (on_a, on_b):
        leftovers = await recv_until(sub, marker) + await recv_until(sub, marker)  # type: ignore[arg-type]
        assert {f["type"] for f in leftovers} <= {"retry", "resync"}
    await assert_exactly_once(a, b, on_a, on_b)


async def test_sentinel_failover_keeps_fanout(replicas: ReplicaFactory) -> None:
    # the sentinels have their own password too: both halves of the URL's auth are exercised
    setup = await asyncio.to_thread(SentinelSetup(password=PASSWORD, sentinel_password="sentinel-pw").start)
    try:
        assert setup.url().endswith("/mymaster/0?sentinel_password=sentinel-pw")
        a, b = await replicas(setup.url()), await replicas(setup.url())
        alice_a, alice_b = a.client("alice", "acme"), b.client("alice", "acme")
        a.bus.send_to_user("alice", {"before": "failover"})
        assert await recv(alice_b) == {"before": "failover"}
        old_master = setup.master_port()
        assert subscriber_ports([old_master], a) == [old_master]

        new_master = await asyncio.to_thread(setup.failover)
        assert new_master != old_master
        await asyncio.to_thread(setup.server_on(old_master).stop)  # nothing can be served by the old one

        # fan-out comes back by itself, in both directions (events during the switch may be lost by design)
        await eventually_delivered(lambda e: a.bus.send_to_user("alice", e), alice_b)
        await eventually_delivered(lambda e: b.bus.send_to_user("alice", e), alice_a)
        for r in (a, b):
            assert await r.bridge.wait_connected(WAIT)
            assert subscriber_ports([new_master], r) == [new_master]
        await assert_settled_then_exactly_once(a, b, alice_a, alice_b)
    finally:
        await asyncio.to_thread(setup.stop)


async def test_cluster_carries_fanout_and_survives_losing_the_subscribed_node(
    replicas: ReplicaFactory,
) -> None:
    cluster = await asyncio.to_thread(ClusterSetup(masters=3, password=PASSWORD).start)
    try:
        ports = [n.port for n in cluster.nodes]
        a, b = await replicas(cluster.url()), await replicas(cluster.url())
        alice_a, alice_b = a.client("alice", "acme"), b.client("alice", "acme")
        bob_b, carol_a = b.client("bob", "acme"), a.client("carol", "globex")
        # every scope crosses, isolation holds
        a.bus.send_to_user("alice", {"type": "dm"})
        b.bus.send_to_org("acme", {"type": "org"})
        a.bus.broadcast_event({"type": "all"})
        end = {"type": "end"}
        a.bus.broadcast_event(end)
        b.bus.broadcast_event(end)
        got = {}
        for name, sub in {"alice_a": alice_a, "alice_b": alice_b, "bob_b": bob_b, "carol_a": carol_a}.items():
            frames = await recv_until(sub, end) + await recv_until(sub, end)
            got[name] = sorted(f["type"] for f in frames)
        assert got == {
            "alice_a": ["all", "dm", "org"],
            "alice_b": ["all", "dm", "org"],
            "bob_b": ["all", "org"],
            "carol_a": ["all"],
        }

        # kill the node A subscribes through: A moves to another node and fan-out resumes by itself
        [victim] = subscriber_ports(ports, a)
        next(n for n in cluster.nodes if n.port == victim).stop()
        live = [p for p in ports if p != victim]
        await eventually_delivered(lambda e: b.bus.send_to_user("alice", e), alice_a)
        await eventually_delivered(lambda e: a.bus.send_to_user("alice", e), alice_b)
        assert await a.bridge.wait_connected(WAIT)
        assert subscriber_ports(live, a) != []
        assert a.metric("aifactory_bus_reconnects_total") >= 1
        await assert_settled_then_exactly_once(a, b, alice_a, alice_b)
    finally:
        await asyncio.to_thread(cluster.stop)
