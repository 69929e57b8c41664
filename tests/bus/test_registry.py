"""Local delivery without Redis: routing by scope, one shared frame, bounded queues, slow-client policies,
and the bus's ordering (local first, synchronous) and thread hand-off."""

from __future__ import annotations

import asyncio
import json
import threading

import pytest

from aifactory import bus as bus_module
from aifactory.bus import EventBus, start_bus
from aifactory.constants import DISABLED_LINE
from aifactory.metrics import Metrics
from aifactory.registry import OVERFLOW_RESYNC_FRAME, LocalRegistry, Subscriber, SubscriberClosed


def drain(sub: Subscriber) -> list[str]:
    out = []
    while (frame := sub.get_nowait()) is not None:
        out.append(frame)
    return out


def test_routing_by_scope_and_one_shared_frame() -> None:
    reg = LocalRegistry()
    alice1, alice2 = reg.add(Subscriber("alice", "acme")), reg.add(Subscriber("alice", "acme"))
    bob = reg.add(Subscriber("bob", "acme"))
    carol = reg.add(Subscriber("carol", "globex"))
    anon = reg.add(Subscriber(None, None))
    frame = '{"n":1}'
    assert reg.deliver("user", "alice", frame) == 2
    assert reg.deliver("org", "acme", frame) == 3
    assert reg.deliver("org", "nobody", frame) == 0
    assert reg.deliver("broadcast", None, frame) == 5
    got = [drain(s) for s in (alice1, alice2, bob, carol, anon)]
    assert [len(g) for g in got] == [3, 3, 2, 1, 1]
    assert all(f is frame for g in got for f in g)  # the very same str object: encoded once, shared by all


def test_counts_after_each_delivery() -> None:
    reg = LocalRegistry()
    alice, bob, carol = (
        reg.add(Subscriber(u, o)) for u, o in (("alice", "acme"), ("bob", "acme"), ("carol", "x"))
    )
    reg.deliver("user", "alice", "1")
    reg.deliver("org", "acme", "2")
    reg.deliver("broadcast", None, "3")
    assert drain(alice) == ["1", "2", "3"]
    assert drain(bob) == ["2", "3"]
    assert drain(carol) == ["3"]


def test_remove_unindexes() -> None:
    reg = LocalRegistry()
    sub = reg.add(Subscriber("alice", "acme"))
    reg.remove(sub)
    reg.remove(sub)  # idempotent
    assert len(reg) == 0
    assert reg.deliver("user", "alice", "x") == 0 and reg.deliver("org", "acme", "x") == 0


def test_unknown_scope_is_an_error() -> None:
    with pytest.raises(ValueError, match="scope"):
        LocalRegistry().deliver("galaxy", None, "x")


def test_overflow_resync_policy_drops_backlog_and_tells_the_client() -> None:
    metrics = Metrics()
    reg = LocalRegistry(metrics)
    slow = reg.add(Subscriber("slow", "acme", max_queue=4))
    for i in range(4):
        assert slow.offer(str(i))
    assert slow.offer("4") is True  # overflow: backlog 0..3 dropped, resync notice queued, then 4
    assert drain(slow) == [OVERFLOW_RESYNC_FRAME, "4"]
    assert json.loads(OVERFLOW_RESYNC_FRAME) == {"type": "resync", "reason": "overflow"}
    assert slow.dropped == 4 and slow.overflow == 1
    assert metrics.value("aifactory_bus_dropped_total", reason="client_overflow") == 4


def test_overflow_by_bytes() -> None:
    sub = Subscriber("u", "o", max_queue=100, max_bytes=100)
    sub.offer("x" * 60)
    sub.offer("y" * 60)  # 120 bytes > 100: backlog dropped
    assert drain(sub) == [OVERFLOW_RESYNC_FRAME, "y" * 60]
    assert sub.offer("z" * 500) is False  # bigger than the whole budget: dropped, counted
    assert sub.dropped == 2


async def test_overflow_disconnect_policy_closes_and_unregisters() -> None:
    metrics = Metrics()
    reg = LocalRegistry(metrics)
    slow = reg.add(Subscriber("slow", "acme", max_queue=2, policy="disconnect"))
    fast = reg.add(Subscriber("fast", "acme", max_queue=2))
    for i in range(3):
        reg.deliver("org", "acme", str(i))
        assert await fast.get() == str(i)
    assert slow.closed and len(reg) == 1
    with pytest.raises(SubscriberClosed):
        await slow.get()
    assert metrics.value("aifactory_bus_dropped_total", reason="client_closed") == 3


async def test_get_waits_then_wakes() -> None:
    sub = Subscriber("u", "o")
    waiter = asyncio.create_task(sub.get())
    await asyncio.sleep(0)
    assert not waiter.done()
    sub.offer("hello")
    assert await asyncio.wait_for(waiter, 5) == "hello"
    closer = asyncio.create_task(sub.get())
    await asyncio.sleep(0)
    sub.close()
    with pytest.raises(SubscriberClosed):
        await asyncio.wait_for(closer, 5)


def test_bad_subscriber_settings() -> None:
    with pytest.raises(ValueError, match="policy"):
        Subscriber("u", "o", policy="ignore")
    with pytest.raises(ValueError, match="max_queue"):
        Subscriber("u", "o", max_queue=1)


async def test_slow_client_never_delays_a_fast_one_in_the_same_fanout() -> None:
    """A client that never reads is bounded; the fast client gets every event, in order."""
    bus = EventBus(LocalRegistry())
    slow = bus.registry.add(Subscriber("slow", "acme", max_queue=8))
    fast = bus.registry.add(Subscriber("fast", "acme", max_queue=8))
    got = []
    for i in range(200):
        bus.send_to_org("acme", {"i": i})
        got.append(json.loads(await fast.get()))
    assert got == [{"i": i} for i in range(200)]
    assert slow.pending() <= 8 and slow.dropped > 0


async def test_bus_without_redis_logs_the_disabled_line_and_installs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("INFO", logger="aifactory.bus")
    bus = await start_bus(None)
    try:
        assert DISABLED_LINE in caplog.messages
        assert bus.state == "disabled"
        alice = bus.registry.add(Subscriber("alice", "acme"))
        bob = bus.registry.add(Subscriber("bob", "acme"))
        assert bus_module.send_to_user("alice", {"to": "alice"}) == 1
        assert bus_module.send_to_org("acme", {"to": "acme"}) == 2
        assert bus_module.broadcast_event({"to": "all"}) == 2
        assert drain(alice) == ['{"to":"alice"}', '{"to":"acme"}', '{"to":"all"}']
        assert drain(bob) == ['{"to":"acme"}', '{"to":"all"}']
        assert bus.metrics.value("aifactory_bus_delivered_total", source="local") == 5
    finally:
        await bus.aclose()
    with pytest.raises(RuntimeError, match="no EventBus installed"):
        bus_module.broadcast_event({"x": 1})


async def test_calls_from_worker_threads_are_handed_to_the_loop() -> None:
    bus = await start_bus(None, install=False)
    sub = bus.registry.add(Subscriber("alice", "acme"))
    seen_thread: list[str] = []

    def worker() -> None:
        seen_thread.append(threading.current_thread().name)
        bus.send_to_user("alice", {"from": "thread"})

    await asyncio.to_thread(worker)
    assert seen_thread and seen_thread[0] != threading.current_thread().name
    assert await asyncio.wait_for(sub.get(), 5) == '{"from":"thread"}'
    await bus.aclose()


def test_invalid_targets_and_events_fail_the_caller_loudly() -> None:
    bus = EventBus(LocalRegistry())
    with pytest.raises(ValueError, match="user_id"):
        bus.send_to_user("", {"a": 1})
    with pytest.raises(ValueError, match="org_id"):
        bus.send_to_org(None, {"a": 1})  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        bus.broadcast_event("not a dict")  # type: ignore[arg-type]


def test_a_held_subscriber_gets_its_replay_first_then_the_live_frames_the_replay_lacked() -> None:
    reg = LocalRegistry()
    sub = reg.add(Subscriber("u", "o", max_queue=4, hold=True))
    reg.deliver("broadcast", None, "remote-5", ((5, 0), "a", 1))  # also in the replay
    reg.deliver("broadcast", None, "own-1")  # own event: never in this replay, no key
    reg.deliver("broadcast", None, "remote-7", ((7, 0), "a", 2))
    assert sub.pending() == 0  # held: the writer sees nothing yet
    kept = sub.release(["replay-4", "replay-5"], floor=(5, 0))
    assert kept == 2
    # more replayed frames than the queue bound: the replay is outside it
    assert [sub.get_nowait() for _ in range(4)] == ["replay-4", "replay-5", "own-1", "remote-7"]
    reg.deliver("broadcast", None, "late-6", ((6, 0), "a", 3))  # after 7: the floor filter already ended
    assert sub.get_nowait() == "late-6"


def test_the_seam_skips_an_origins_frames_the_client_had_already_seen() -> None:
    reg = LocalRegistry()
    sub = reg.add(Subscriber("u", "o", hold=True))
    sub.release([], floor=(1, 0), skip=("r", 3))
    reg.deliver("broadcast", None, "r-3", ((9, 0), "r", 3))  # published late by r, seen on r already
    reg.deliver("broadcast", None, "r-4", ((10, 0), "r", 4))
    reg.deliver("broadcast", None, "r-2", ((11, 0), "r", 2))  # filter ended at r-4
    assert [sub.get_nowait(), sub.get_nowait(), sub.get_nowait()] == ["r-4", "r-2", None]


def test_replayed_frames_do_not_count_against_the_live_bound() -> None:
    sub = Subscriber("u", "o", max_queue=2, hold=True)
    sub.release([f"r{i}" for i in range(10)])
    assert sub.offer("live-1") and sub.offer("live-2")
    assert sub.pending() == 12 and sub.overflow == 0
