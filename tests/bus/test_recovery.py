"""Recovery at the bus level: `_offset` on every frame, `resume()` from the ring and from the Redis stream,
a subscriber's catch-up after its connection was killed, and refusal when the history is gone."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from redis.asyncio import Redis

from aifactory.bus import EventBus, start_bus
from aifactory.history import HISTORY_RESYNC_FRAME
from aifactory.registry import Subscriber
from harness.redis_servers import RedisServer
from tests.bus.conftest import WAIT, ReplicaFactory, recv, wait_until

H = {"history_size": 1000, "history_ttl": 60}


def drain(sub: Subscriber) -> list[dict[str, Any]]:
    out = []
    while (frame := sub.get_nowait()) is not None:
        out.append(json.loads(frame))
    return out


def held(user: str, org: str) -> Subscriber:
    sub = Subscriber(user, org)
    sub.hold()
    return sub


async def resume(bus: EventBus, sub: Subscriber, since: str) -> int | None:
    """What the events socket does: the replay (or the history resync) first, then the held live frames."""
    frames = await bus.resume(sub, since)
    for frame in frames if frames is not None else [HISTORY_RESYNC_FRAME]:
        sub.send_now(frame)
    sub.release()
    return None if frames is None else len(frames)


async def recv_n(sub: Subscriber, n: int) -> list[dict[str, Any]]:
    return [await recv(sub) for _ in range(n)]


async def test_ring_resume_replays_exactly_what_was_missed_then_live() -> None:
    bus = await start_bus(None, install=False, **H)
    try:
        first = bus.registry.add(Subscriber("ann", "o1"))
        for n in range(1, 4):
            bus.send_to_user("ann", {"type": "load", "n": n})
        frames = drain(first)
        assert [f["n"] for f in frames] == [1, 2, 3]
        assert all(isinstance(f["_offset"], str) for f in frames)
        bus.registry.remove(first)
        for n in range(4, 7):
            bus.send_to_user("ann", {"type": "load", "n": n})
        bus.send_to_user("bob", {"type": "load", "n": 99})  # not ann's
        again = bus.registry.add(held("ann", "o1"))
        replayed = await resume(bus, again, frames[-1]["_offset"])
        bus.send_to_user("ann", {"type": "load", "n": 7})
        assert replayed == 3
        assert [f["n"] for f in drain(again)] == [4, 5, 6, 7]
        # unknown or malformed offsets: not recovered
        for bad in ("nope", frames[-1]["_offset"].replace(bus.ring.epoch, "0ther")):  # type: ignore[union-attr]
            sub = bus.registry.add(held("ann", "o1"))
            assert await resume(bus, sub, bad) is None
            assert sub.get_nowait() == '{"type":"resync","reason":"history"}'
            bus.registry.remove(sub)
    finally:
        await bus.aclose()


async def test_history_off_keeps_frames_bare() -> None:
    bus = await start_bus(None, install=False, history_size=0)
    sub = bus.registry.add(Subscriber("ann", "o1"))
    bus.broadcast_event({"type": "x"})
    assert sub.get_nowait() == '{"type":"x"}'
    await bus.aclose()


async def test_resume_on_another_replica_replays_its_audience_without_gap_or_duplicate(
    redis_server: RedisServer, replicas: ReplicaFactory
) -> None:
    a = await replicas(redis_server.url, **H)
    b = await replicas(redis_server.url, **H)
    on_a = a.client("ann", "o1")
    watcher = b.client("zed", "o9")  # proves B follows the stream
    for n in range(1, 4):
        a.bus.send_to_org("o1", {"type": "load", "n": n})
    seen = drain(on_a)
    a.bus.registry.remove(on_a)
    a.bus.broadcast_event({"type": "load", "n": 4})
    a.bus.send_to_user("ann", {"type": "load", "n": 5})
    a.bus.send_to_org("o2", {"type": "load", "n": 6})  # another org: not replayed to ann
    await wait_until(lambda: watcher.pending() >= 1, "B to receive the broadcast")
    moved = b.client("ann", "o1", hold=True)
    replayed = await resume(b.bus, moved, seen[-1]["_offset"])
    a.bus.send_to_user("ann", {"type": "load", "n": 7})
    assert replayed == 2
    got = await recv_n(moved, 3)
    assert [f["n"] for f in got] == [4, 5, 7]
    await asyncio.sleep(0.2)
    assert drain(moved) == []
    # and resuming again from the middle of the replay, on A this time
    again = a.client("ann", "o1", hold=True)
    assert await resume(a.bus, again, got[0]["_offset"]) == 2
    assert [f["n"] for f in drain(again)] == [5, 7]


async def test_a_killed_subscriber_connection_catches_up_from_the_stream(
    redis_server: RedisServer, replicas: ReplicaFactory
) -> None:
    a = await replicas(redis_server.url, **H)
    b = await replicas(redis_server.url, **H)
    on_b = b.client("ann", "o1")
    a.bus.broadcast_event({"type": "load", "n": 0})
    assert (await recv(on_b))["n"] == 0
    r = Redis(port=redis_server.port)
    await r.client_kill_filter(_type="pubsub")
    for n in range(1, 21):
        a.bus.broadcast_event({"type": "load", "n": n})
        await asyncio.sleep(0.01)
    got = [await recv(on_b, WAIT) for _ in range(20)]
    assert [f.get("n") for f in got] == list(range(1, 21)), "no resync, no gap, no duplicate"
    await r.aclose()


async def test_a_flushed_redis_is_a_new_epoch_and_never_a_silent_gap(
    redis_server: RedisServer, replicas: ReplicaFactory
) -> None:
    a = await replicas(redis_server.url, **H)
    b = await replicas(redis_server.url, **H)
    on_b = b.client("ann", "o1")
    a.bus.broadcast_event({"type": "load", "n": 1})
    last = await recv(on_b)
    r = Redis(port=redis_server.port)
    await r.flushall()
    await r.aclose()
    a.bus.broadcast_event({"type": "load", "n": 2})
    frames = [await recv(on_b), await recv(on_b)]
    assert frames[0] == {"type": "resync", "reason": "history"} and frames[1]["n"] == 2
    moved = a.client("ann", "o1", hold=True)
    assert await resume(a.bus, moved, last["_offset"]) is None


async def test_after_a_redis_restart_fan_out_resumes_and_the_loss_is_announced(
    redis_server: RedisServer, replicas: ReplicaFactory
) -> None:
    a = await replicas(redis_server.url, **H)
    b = await replicas(redis_server.url, **H)
    on_b = b.client("ann", "o1")
    a.bus.broadcast_event({"type": "load", "n": 0})
    assert (await recv(on_b))["n"] == 0
    redis_server.stop()
    for n in range(1, 300):
        a.bus.broadcast_event({"type": "load", "n": n})
        await asyncio.sleep(0.01)
    redis_server.start()
    await wait_until(lambda: a.bridge.state == "connected" and b.bridge.state == "connected", "reconnect")
    frames = []
    for n in range(300, 340):
        a.bus.broadcast_event({"type": "load", "n": n})
        await asyncio.sleep(0.05)
    deadline = asyncio.get_running_loop().time() + WAIT
    while not any(f.get("n") == 339 for f in frames):
        assert asyncio.get_running_loop().time() < deadline, frames
        frames.append(await recv(on_b))
    assert any(f.get("type") == "resync" for f in frames), "the lost window is announced"


async def test_a_forged_stream_id_header_on_a_replayed_message_moves_nothing(
    redis_server: RedisServer, replicas: ReplicaFactory
) -> None:
    """The id header is outside the signature: a replayed genuine message with a huge id must neither be
    delivered twice nor make the receiver skip the next real events; an unsigned stream entry is never
    replayed."""
    a = await replicas(redis_server.url, **H)
    b = await replicas(redis_server.url, **H)
    on_b = b.client("ann", "o1")
    spy = Redis(port=redis_server.port)
    sub = spy.pubsub()
    await sub.subscribe("aif:test")
    await sub.get_message(timeout=2)
    a.bus.broadcast_event({"type": "load", "n": 1})
    first = await recv(on_b)
    captured = None
    while captured is None or not captured.startswith(b"h1."):
        msg = await sub.get_message(ignore_subscribe_messages=True, timeout=WAIT)
        assert msg is not None
        captured = msg["data"]
    _sid, _, rest = captured.partition(b".")[2].partition(b".")  # sid, then "<epoch>.<signed>"
    await spy.publish("aif:test", b"h1.99999999999999-0." + rest)
    await spy.xadd(
        "{aif:test}:history",
        {
            "e": b'{"v":1,"origin":"evil","seq":1,"scope":"broadcast",'
            b'"target":null,"event":{"type":"load","n":666}}'
        },
    )
    a.bus.broadcast_event({"type": "load", "n": 2})
    assert (await recv(on_b))["n"] == 2, "the replayed message was dropped and the real one still came"
    assert b.bridge.last_sid[0] < 99999999999999
    moved = b.client("ann", "o1", hold=True)
    assert await resume(b.bus, moved, first["_offset"]) == 1
    assert [f["n"] for f in drain(moved)] == [2]
    await spy.aclose()
