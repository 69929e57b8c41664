"""The Redis Streams history scripts against real redis-server processes (single node and Cluster)."""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from aifactory.bridge.stream import PUBLISH_SCRIPT, StreamKeys, entry_of, read_page, split_published
from aifactory.envelope import EnvelopeSigner, encode_with_frame
from harness.redis_servers import ClusterSetup, RedisServer

KEYS = StreamKeys.for_channel("aif:test")
SIGNER = EnvelopeSigner("a-test-secret-that-is-long-enough-for-the-signer")


def envelopes(origin: str, seqs: range) -> list[str]:
    return [SIGNER.sign(encode_with_frame(origin, i, "broadcast", None, f'{{"n":{i}}}')) for i in seqs]


async def publish(client: Redis | RedisCluster, items: list[str], size: int = 1000) -> str:
    ep = await client.eval(PUBLISH_SCRIPT, 2, KEYS.stream, KEYS.epoch, "aif:test", size, 300, "ep1", *items)
    return ep.decode() if isinstance(ep, bytes) else ep


async def test_subscription_order_is_stream_order_and_carries_the_ids(redis_server: RedisServer) -> None:
    r = Redis(port=redis_server.port)
    sub = r.pubsub()
    await sub.subscribe("aif:test")
    await sub.get_message(timeout=2)
    assert await publish(r, envelopes("o", range(1, 21))) == "ep1"
    live = []
    while len(live) < 20:
        msg = await sub.get_message(ignore_subscribe_messages=True, timeout=2)
        assert msg is not None
        sid, ep, env = split_published(msg["data"])
        entry = entry_of(sid, env, SIGNER.verify)  # type: ignore[arg-type]
        assert ep == "ep1" and entry is not None
        live.append((entry.sid, entry.seq))
    snap = await read_page(r, KEYS, (0, 0), 100, "other", 300)
    stored = [(sid, entry_of(sid, env, SIGNER.verify).seq) for sid, env in snap.entries]  # type: ignore[union-attr]
    assert live == stored and [s for _, s in stored] == list(range(1, 21))
    assert snap.complete and snap.last == stored[-1][0]
    await r.aclose()


async def test_trimming_past_an_id_is_reported_incomplete(redis_server: RedisServer) -> None:
    r = Redis(port=redis_server.port)
    await publish(r, envelopes("o", range(1, 11)), size=1000)
    first = (await read_page(r, KEYS, (0, 0), 1, "x", 300)).entries[0][0]
    assert (await read_page(r, KEYS, first, 100, "x", 300)).complete
    await publish(r, envelopes("o", range(11, 400)), size=100)  # MAXLEN ~ 100 cuts the head
    assert not (await read_page(r, KEYS, first, 100, "x", 300)).complete
    await r.aclose()


async def test_a_flushed_redis_has_a_new_epoch(redis_server: RedisServer) -> None:
    r = Redis(port=redis_server.port)
    await publish(r, envelopes("o", range(1, 3)))
    assert (await read_page(r, KEYS, (0, 0), 10, "fresh", 300)).epoch == "ep1"
    await r.flushall()
    snap = await read_page(r, KEYS, (0, 0), 10, "fresh", 300)
    assert snap.epoch == "fresh" and snap.entries == []
    assert 0 < await r.ttl(KEYS.epoch) <= 300
    await r.aclose()


async def test_cluster_keeps_both_keys_in_one_slot_and_publishes_to_every_node() -> None:
    with ClusterSetup() as cluster:
        rc = RedisCluster(host="127.0.0.1", port=cluster.nodes[0].port)
        other = cluster.nodes[1]
        r = Redis(port=other.port)
        sub = r.pubsub()
        await sub.subscribe("aif:test")
        await sub.get_message(timeout=2)
        await publish(rc, envelopes("o", range(1, 4)))
        got = []
        for _ in range(3):
            msg = await sub.get_message(ignore_subscribe_messages=True, timeout=5)
            assert msg is not None
            got.append(split_published(msg["data"])[0])
        snap = await read_page(rc, KEYS, (0, 0), 10, "x", 300)
        assert [sid for sid, _ in snap.entries] == got
        await r.aclose()
        await rc.aclose()
        await asyncio.sleep(0)
