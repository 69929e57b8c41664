"""Cross-replica fan-out through a real redis-server: scopes, isolation, no double delivery, hostile
envelopes on a shared channel, oversize events, sequence gaps and slow clients."""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest
import redis.asyncio as aioredis

from aifactory.bridge import DEFAULT_MAX_EVENT_BYTES
from aifactory.constants import ENABLED_LINE
from aifactory.envelope import EnvelopeSigner
from harness.redis_servers import RedisServer, redis_cli
from tests.bus.conftest import SECRET, ReplicaFactory, recv, recv_until

PASSWORD = "fan-0ut-pw"


@pytest.fixture
def redis_pw() -> RedisServer:
    server = RedisServer(password=PASSWORD).start()
    yield server  # type: ignore[misc]
    server.stop()


async def test_every_scope_crosses_replicas_exactly_once_and_stays_isolated(
    redis_pw: RedisServer, replicas: ReplicaFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="aifactory")
    a, b, c = [await replicas(redis_pw.url) for _ in range(3)]
    for r in (a, b, c):
        assert ENABLED_LINE % (r.replica_id, "aif:test") in caplog.messages
        assert r.bus.state == "connected"
    alice_a, alice_b = a.client("alice", "acme"), b.client("alice", "acme")
    bob_c = c.client("bob", "acme")
    carol_c = c.client("carol", "globex")
    everyone = {"alice@a": alice_a, "alice@b": alice_b, "bob@c": bob_c, "carol@c": carol_c}

    b.bus.broadcast_event({"type": "hello", "to": "all"})
    c.bus.send_to_user("alice", {"type": "dm", "to": "alice"})
    a.bus.send_to_org("acme", {"type": "org", "to": "acme"})
    a.bus.send_to_org("globex", {"type": "org", "to": "globex"})
    # one closing broadcast from each origin: everything fired before it has been routed by then
    for r in (a, b, c):
        r.bus.broadcast_event({"type": "end", "from": r.replica_id})
    got: dict[str, list[dict[str, object]]] = {}
    for name, sub in everyone.items():
        frames = []
        ends = 0
        while ends < 3:
            frame = await recv(sub)
            if frame["type"] == "end":
                ends += 1
            else:
                frames.append(frame)
        got[name] = sorted(frames, key=json.dumps)
    hello, dm = {"type": "hello", "to": "all"}, {"type": "dm", "to": "alice"}
    acme, globex = {"type": "org", "to": "acme"}, {"type": "org", "to": "globex"}
    assert got["alice@a"] == sorted([hello, dm, acme], key=json.dumps)
    assert got["alice@b"] == sorted([hello, dm, acme], key=json.dumps)  # exactly once each, on both replicas
    assert got["bob@c"] == sorted([hello, acme], key=json.dumps)  # no alice DM
    assert got["carol@c"] == sorted([hello, globex], key=json.dumps)  # nothing of acme
    for sub in everyone.values():
        assert sub.pending() == 0  # and nothing trailing
    # the origin delivered locally once and skipped its own envelope coming back from Redis
    assert (
        a.metric("aifactory_bus_delivered_total", source="remote") == 1 + 1 + 1 + 1
    )  # hello, dm, end b, end c
    assert b.metric("aifactory_bus_published_total") == 2


async def test_hostile_envelopes_on_a_shared_channel_are_counted_and_ignored(
    redis_pw: RedisServer, replicas: ReplicaFactory
) -> None:
    a, b = await replicas(redis_pw.url), await replicas(redis_pw.url)
    alice = a.client("alice", "acme")
    bad = {
        "malformed": [
            "not json",
            '{"v":1,"origin":"x","seq":"one","scope":"user","target":"alice","event":{}}',
            '{"v":1,"origin":"x","seq":1,"scope":"user","target":"alice","event":"str"}',
        ],
        "foreign": ['{"type":"message","app":"someone-else"}', "[1,2,3]"],
        "version": ['{"v":2,"origin":"x","seq":1,"scope":"broadcast","target":null,"event":{"x":1}}'],
    }
    signer = EnvelopeSigner(SECRET)  # signed like a real replica's: the decoder's own checks must hold too
    for items in bad.values():
        for item in items:
            redis_cli(redis_pw.port, "PUBLISH", "aif:test", signer.sign(item), password=PASSWORD)
    raw = aioredis.Redis(port=redis_pw.port, password=PASSWORD)
    junk = b"\xff\xfe\x00\x80 binary junk"
    await raw.publish("aif:test", b"s1." + signer.mac(junk) + b"." + junk)
    await raw.publish("aif:test", signer.sign("[" * 50_000))
    # not signed with the shared secret: dropped before any parsing
    real = '{"v":1,"origin":"x","seq":1,"scope":"user","target":"alice","event":{"type":"forged"}}'
    await raw.publish("aif:test", real)
    await raw.publish("aif:test", b"\xff\xfe\x00\x80 binary junk")
    await raw.publish("aif:test", EnvelopeSigner("another-deployment-secret-" + "z" * 32).sign(real))
    await raw.aclose()
    b.bus.send_to_user("alice", {"type": "still-alive"})
    assert await recv(alice) == {"type": "still-alive"}  # the subscriber survived everything above
    assert alice.pending() == 0
    assert a.metric("aifactory_bus_malformed_total", reason="malformed") == 3 + 2
    assert a.metric("aifactory_bus_malformed_total", reason="foreign") == 2
    assert a.metric("aifactory_bus_malformed_total", reason="version") == 1
    assert a.metric("aifactory_bus_malformed_total", reason="unsigned") == 2
    assert a.metric("aifactory_bus_malformed_total", reason="bad_signature") == 1
    assert a.bridge.state == "connected"


async def test_oversize_event_is_local_only_counted_and_remote_clients_resync(
    redis_pw: RedisServer, replicas: ReplicaFactory, caplog: pytest.LogCaptureFixture
) -> None:
    a, b = await replicas(redis_pw.url), await replicas(redis_pw.url)
    assert a.bridge.max_event_bytes == DEFAULT_MAX_EVENT_BYTES == 512 * 1024
    alice_a, alice_b = a.client("alice", "acme"), b.client("alice", "acme")
    a.bus.send_to_user("alice", {"type": "first"})  # B learns A's sequence baseline
    assert await recv(alice_a) == {"type": "first"} and await recv(alice_b) == {"type": "first"}
    big = {"type": "blob", "data": "x" * (DEFAULT_MAX_EVENT_BYTES + 1)}
    a.bus.send_to_user("alice", big)
    a.bus.send_to_user("alice", big)
    assert await recv(alice_a) == big and await recv(alice_a) == big  # local delivery is unaffected
    a.bus.send_to_user("alice", {"type": "small"})
    assert await recv(alice_a) == {"type": "small"}
    # B never saw the big ones; the sequence gap tells its client to refetch, then the small one arrives
    assert await recv(alice_b) == {"type": "resync", "reason": "gap", "origin": a.replica_id, "missed": 2}
    assert await recv(alice_b) == {"type": "small"}
    assert a.metric("aifactory_bus_oversize_total") == 2
    assert a.metric("aifactory_bus_published_total") == 2
    warnings = [m for m in caplog.messages if "exceeds the 524288-byte publish limit" in m]
    assert len(warnings) == 1  # logged once, not once per event


async def test_probe_reveals_a_gap_without_a_further_event(
    redis_pw: RedisServer, replicas: ReplicaFactory
) -> None:
    """An origin that drops an event and then goes quiet still gets remote clients resynced: its
    self-probe carries the last settled sequence number."""
    a = await replicas(redis_pw.url, probe_interval=0.2, max_event_bytes=1024)
    b = await replicas(redis_pw.url)
    alice_b = b.client("alice", "acme")
    a.bus.send_to_user("alice", {"type": "first"})
    assert await recv(alice_b) == {"type": "first"}
    a.bus.send_to_user("alice", {"type": "blob", "data": "x" * 2000})  # oversize for A's small limit
    assert await recv(alice_b) == {"type": "resync", "reason": "gap", "origin": a.replica_id, "missed": 1}
    a.bus.send_to_user("alice", {"type": "after"})
    assert await recv(alice_b) == {"type": "after"}  # not mistaken for a duplicate
    assert b.metric("aifactory_bus_dropped_total", reason="duplicate") == 0


async def test_sequence_gap_and_duplicate_from_an_origin(
    redis_pw: RedisServer, replicas: ReplicaFactory
) -> None:
    a = await replicas(redis_pw.url)
    alice, bob = a.client("alice", "acme"), a.client("bob", "acme")
    ghost = str(uuid.uuid4())  # another replica, played by redis-cli

    def send(seq: int, n: int) -> None:
        env = {"v": 1, "origin": ghost, "seq": seq, "scope": "user", "target": "alice", "event": {"n": n}}
        signed = EnvelopeSigner(SECRET).sign(json.dumps(env))  # it holds the shared secret
        redis_cli(redis_pw.port, "PUBLISH", "aif:test", signed, password=PASSWORD)

    send(1, 1)
    assert await recv(alice) == {"n": 1}
    send(4, 4)  # 2 and 3 were lost (e.g. during an outage)
    resync = {"type": "resync", "reason": "gap", "origin": ghost, "missed": 2}
    assert await recv(alice) == resync
    assert await recv(alice) == {"n": 4}
    assert await recv(bob) == resync  # any local client may have missed something: all are told
    send(4, 4)  # duplicate: never delivered twice
    send(5, 5)
    assert await recv(alice) == {"n": 5}
    assert a.metric("aifactory_bus_dropped_total", reason="duplicate") == 1
    assert a.metric("aifactory_bus_resync_total", reason="gap") == 2
    assert bob.pending() == 0


async def test_remote_frame_reaches_local_sockets_byte_identical(
    redis_pw: RedisServer, replicas: ReplicaFactory
) -> None:
    """The receiving replica hands on the publisher's frame text as is (no decode/re-encode), both for
    a real replica's event and for one whose text a re-encode would visibly change."""
    a, b = await replicas(redis_pw.url), await replicas(redis_pw.url)
    alice = a.client("alice", "acme")
    b.bus.send_to_user("alice", {"type": "from-b", "text": "h\u00e9llo"})
    assert await asyncio.wait_for(alice.get(), 10) == '{"type":"from-b","text":"h\\u00e9llo"}'
    frame = '{"type":"verbatim","n":1.50,"e":1e2,"event":{"seq":99}}'
    env = f'{{"v":1,"origin":"{uuid.uuid4()}","seq":1,"scope":"user","target":"alice","event":{frame}}}'
    redis_cli(redis_pw.port, "PUBLISH", "aif:test", EnvelopeSigner(SECRET).sign(env), password=PASSWORD)
    assert await asyncio.wait_for(alice.get(), 10) == frame
    assert alice.pending() == 0


async def test_slow_client_does_not_delay_fast_client_across_replicas(
    redis_pw: RedisServer, replicas: ReplicaFactory
) -> None:
    a, b = await replicas(redis_pw.url), await replicas(redis_pw.url)
    slow = b.client("slow", "acme", max_queue=16)  # never reads
    fast = b.client("fast", "acme", max_queue=16)
    received = []
    for i in range(300):
        a.bus.send_to_org("acme", {"i": i})
        received.append(await recv(fast))  # the fast client keeps up, event by event
    assert received == [{"i": i} for i in range(300)]
    assert slow.pending() <= 16
    assert slow.get_nowait() == '{"type":"resync","reason":"overflow"}'
    assert b.metric("aifactory_bus_dropped_total", reason="client_overflow") > 0
    assert fast.dropped == 0


async def test_outbound_queue_is_bounded_and_publish_never_blocks(
    redis_pw: RedisServer, replicas: ReplicaFactory
) -> None:
    a = await replicas(redis_pw.url, outbound_max=5)
    b = await replicas(redis_pw.url)
    far = b.client("far", "acme")
    near = a.client("near", "acme")
    for i in range(50):  # no await in between: the publisher task cannot drain, the queue must bound itself
        a.bus.send_to_org("acme", {"i": i})
    assert near.pending() == 50  # every local client got every event synchronously
    assert a.metric("aifactory_bus_dropped_total", reason="outbound_full") == 45
    frames = [await recv(far) for _ in range(5)]
    assert frames == [{"i": i} for i in range(5)]
    a.bus.send_to_org("acme", {"i": "next"})
    assert await recv(far) == {"type": "resync", "reason": "gap", "origin": a.replica_id, "missed": 45}
    assert await recv(far) == {"i": "next"}


async def test_channels_isolate_deployments(redis_pw: RedisServer, replicas: ReplicaFactory) -> None:
    a = await replicas(redis_pw.url, channel="deploy-1")
    b = await replicas(redis_pw.url, channel="deploy-2")
    c = await replicas(redis_pw.url, channel="deploy-1")
    on_b, on_c = b.client("u", "o"), c.client("u", "o")
    a.bus.broadcast_event({"type": "x"})
    assert await recv(on_c) == {"type": "x"}
    c.bus.broadcast_event({"type": "end"})
    b.bus.broadcast_event({"type": "end"})
    assert await recv_until(on_b, {"type": "end"}) == []
    await asyncio.sleep(0)


async def test_unix_socket_url(replicas: ReplicaFactory) -> None:
    server = RedisServer(password=PASSWORD)
    sock = server.workdir / "redis.sock"
    server.extra_args = ["--unixsocket", str(sock), "--unixsocketperm", "700"]
    server.start()
    try:
        url = f"unix://:{PASSWORD}@{sock}?db=0"
        a, b = await replicas(url), await replicas(url)
        alice_b = b.client("alice", "acme")
        a.bus.send_to_user("alice", {"type": "via-unix-socket"})
        assert await recv(alice_b) == {"type": "via-unix-socket"}
        subscribers = redis_cli(
            server.port, "CLIENT", "LIST", "TYPE", "pubsub", password=PASSWORD
        ).splitlines()
        assert len(subscribers) == 2 and all(f"laddr={sock}" in line for line in subscribers)  # not TCP
    finally:
        server.stop()
