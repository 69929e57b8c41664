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


# ---- the fast path: attached subscribers write shared frame bytes to a sink ----------------------------
class RecordingSink:
    """A transport stand-in that records writes and can be switched to 'backed up'."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.full = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def backed_up(self) -> bool:
        return self.full


def texts(sink: RecordingSink) -> list[str]:
    """Decode the recorded bytes with the websockets library's own frame parser (a client's view)."""
    from websockets.frames import Frame, Opcode
    from websockets.streams import StreamReader

    reader = StreamReader()
    reader.feed_data(b"".join(sink.writes))
    reader.feed_eof()
    out = []
    while reader.buffer:
        gen = Frame.parse(reader.read_exact, mask=False)
        try:
            next(gen)
        except StopIteration as stop:
            frame = stop.value
            assert frame.fin and frame.opcode is Opcode.TEXT and not frame.rsv1
            out.append(frame.data.decode())
    return out


@pytest.mark.parametrize("n", [0, 1, 125, 126, 65535, 65536, 200_000])
def test_text_frame_is_a_valid_server_frame_of_any_length(n: int) -> None:
    from aifactory.registry import text_frame

    sink = RecordingSink()
    sink.write(text_frame("é" * (n // 2) + "x" * (n % 2)))
    assert texts(sink) == ["é" * (n // 2) + "x" * (n % 2)]


def test_attached_subscribers_get_the_same_bytes_built_once() -> None:
    reg = LocalRegistry()
    sinks = [RecordingSink() for _ in range(3)]
    subs = [reg.add(Subscriber("alice", "acme")) for _ in sinks]
    for sub, sink in zip(subs, sinks, strict=True):
        sub.attach(sink)
    assert reg.deliver("broadcast", None, '{"n":1}') == 3
    assert all(s.pending() == 0 for s in subs)  # nothing queued: written straight to the sinks
    first = sinks[0].writes[0]
    assert all(s.writes[0] is first for s in sinks)  # the very same bytes object for every socket
    assert texts(sinks[0]) == ['{"n":1}']


def test_backed_up_sink_queues_in_order_and_flushes_when_drained() -> None:
    reg = LocalRegistry()
    sub, sink = reg.add(Subscriber("a", "o", max_queue=100)), RecordingSink()
    fast, fast_sink = reg.add(Subscriber("b", "o")), RecordingSink()
    sub.attach(sink)
    fast.attach(fast_sink)
    reg.deliver("broadcast", None, "1")
    sink.full = True
    reg.deliver("broadcast", None, "2")
    reg.deliver("broadcast", None, "3")
    assert sub.pending() == 2 and texts(fast_sink) == ["1", "2", "3"]  # the slow one delays nobody
    sink.full = False
    reg.deliver("broadcast", None, "4")  # a backlog exists: queued behind it, not written ahead
    assert texts(sink) == ["1"]
    assert sub.flush() == 3
    assert texts(sink) == ["1", "2", "3", "4"] and sub.pending() == 0


def test_backed_up_sink_overflows_into_the_resync_policy() -> None:
    sub, sink = Subscriber("a", "o", max_queue=3), RecordingSink()
    sub.attach(sink)
    sink.full = True
    for i in range(5):
        sub.offer(str(i))
    sink.full = False
    sub.flush()
    assert texts(sink) == [OVERFLOW_RESYNC_FRAME, "3", "4"]
    assert sub.dropped == 3 and sub.overflow == 1


def test_hold_send_now_release_orders_hello_replay_live() -> None:
    reg = LocalRegistry()
    sub, sink = Subscriber("a", "o"), RecordingSink()
    sub.hold()
    reg.add(sub)
    sub.attach(sink)
    reg.deliver("broadcast", None, "live1")  # arrives while the replay is still being sent
    sub.send_now("hello")
    reg.deliver("broadcast", None, "live2")
    sub.send_now("replayed")
    assert texts(sink) == ["hello", "replayed"] and sub.pending() == 2
    sub.release()
    reg.deliver("broadcast", None, "live3")
    assert texts(sink) == ["hello", "replayed", "live1", "live2", "live3"]


async def test_hold_send_now_release_without_a_sink_keeps_the_same_order() -> None:
    sub = Subscriber("a", "o")
    sub.hold()
    sub.offer("live1")
    sub.send_now("hello")
    assert await sub.get() == "hello"
    assert sub.get_nowait() is None  # held: live frames wait
    sub.release()
    sub.offer("live2")
    assert drain(sub) == ["live1", "live2"]


def test_closed_subscriber_writes_nothing() -> None:
    sub, sink = Subscriber("a", "o"), RecordingSink()
    sub.attach(sink)
    sub.close()
    assert not sub.offer("x")
    sub.send_now("y")
    assert sink.writes == []


async def test_frames_of_one_event_loop_turn_leave_as_one_write_per_socket() -> None:
    reg = LocalRegistry()
    sink, other = RecordingSink(), RecordingSink()
    reg.add(Subscriber("a", "o")).attach(sink)
    reg.add(Subscriber("b", "o")).attach(other)
    for i in range(3):  # a burst from Redis handled in one turn
        reg.deliver("broadcast", None, str(i))
    reg.deliver("user", "a", "only-a")
    assert sink.writes == []  # collected until the turn ends
    await asyncio.sleep(0)
    assert len(sink.writes) == 1 and texts(sink) == ["0", "1", "2", "only-a"]
    assert len(other.writes) == 1 and texts(other) == ["0", "1", "2"]
    reg.deliver("broadcast", None, "next")
    await asyncio.sleep(0)
    assert texts(sink) == ["0", "1", "2", "only-a", "next"]


def test_a_held_subscriber_gets_its_replay_first_then_the_live_frames() -> None:
    reg = LocalRegistry()
    sub = Subscriber("u", "o", max_queue=4)
    sub.hold()
    reg.add(sub)
    reg.deliver("broadcast", None, "own-1")  # own event: never in this replay, no key
    reg.deliver("broadcast", None, "remote-7", ((7, 0), "a", 2))
    for frame in ["replay-4", "replay-5"]:  # what bus.resume returned, sent as the socket does
        sub.send_now(frame)
    sub.release()
    # the replay first, then the held live frames
    assert [sub.get_nowait() for _ in range(4)] == ["replay-4", "replay-5", "own-1", "remote-7"]
    reg.deliver("broadcast", None, "late-6", ((6, 0), "a", 3))
    assert sub.get_nowait() == "late-6"


def test_the_seam_skips_an_origins_frames_the_client_had_already_seen() -> None:
    reg = LocalRegistry()
    sub = Subscriber("u", "o")
    sub.hold()
    reg.add(sub)
    sub.set_skip(("r", 3))  # bus.resume does this before its first await
    reg.deliver("broadcast", None, "r-3", ((9, 0), "r", 3))  # published late by r, seen on r already
    sub.release()
    reg.deliver("broadcast", None, "r-4", ((10, 0), "r", 4))
    reg.deliver("broadcast", None, "r-2", ((11, 0), "r", 2))  # filter ended at r-4
    assert [sub.get_nowait(), sub.get_nowait(), sub.get_nowait()] == ["r-4", "r-2", None]


def test_the_seam_filter_applies_to_attached_subscribers_too() -> None:
    reg = LocalRegistry()
    sink = RecordingSink()
    sub = reg.add(Subscriber("u", "o"))
    sub.attach(sink)
    sub.set_skip(("r", 3))
    reg.deliver("broadcast", None, "r-2", ((8, 0), "r", 2))
    reg.deliver("broadcast", None, "other", ((9, 0), "q", 1))  # another origin: not filtered
    reg.deliver("broadcast", None, "r-4", ((10, 0), "r", 4))
    assert texts(sink) == ["other", "r-4"]


def test_replayed_frames_do_not_count_against_the_live_bound() -> None:
    sub = Subscriber("u", "o", max_queue=2)
    sub.hold()
    for i in range(10):
        sub.send_now(f"r{i}")
    sub.release()
    assert sub.offer("live-1") and sub.offer("live-2")
    assert sub.pending() == 12 and sub.overflow == 0
