"""The offset codec, the replay planner and the in-process ring (pure logic, no I/OT)."""

from __future__ import annotations

import json

import pytest

from aifactory.history import Entry, Offset, OffsetError, Ring, parse_offset, plan_replay, with_offset

R, Q, OT = "r-1", "q-2", "o-3"


def every(_scope: str, _target: str | None) -> bool:
    return True


def e(ms: int, origin: str, seq: int, scope: str = "broadcast", target: str | None = None) -> Entry:
    return Entry((ms, 0), origin, seq, scope, target, json.dumps({"n": ms}))


def test_offset_round_trips_and_refuses_anything_else() -> None:
    off = Offset("ab12", (1700000000000, 3), "0f0e-aa", 42)
    assert parse_offset(off.encode()) == off
    for bad in ("", "x", "ab:1-2:r:", "ab:1-2:r:3:4", "a b:1-2:r:3", "ab:1:r:3", "x" * 300):
        with pytest.raises(OffsetError):
            parse_offset(bad)


def test_with_offset_keeps_the_event_keys_and_appends_one_string() -> None:
    assert json.loads(with_offset('{"type":"x","n":1}', "o")) == {"type": "x", "n": 1, "_offset": "o"}
    assert json.loads(with_offset("{}", "o")) == {"_offset": "o"}


def test_replay_skips_what_the_offset_origin_already_delivered() -> None:
    # the client on R saw stream entries up to ms=10 and R's own events up to seq 5
    off = Offset("ep", (10, 0), R, 5)
    entries = [e(11, R, 5), e(12, OT, 8), e(13, R, 6), e(14, OT, 9)]
    got = plan_replay(entries, off, self_origin=Q, self_seq=0, accept=every)
    assert got is not None
    assert [(x.origin, x.seq) for x, _ in got] == [(OT, 8), (R, 6), (OT, 9)]


def test_replay_leaves_own_newer_events_to_live_delivery() -> None:
    off = Offset("ep", (10, 0), R, 1)
    entries = [e(11, Q, 1), e(12, Q, 2), e(13, Q, 3)]
    got = plan_replay(entries, off, self_origin=Q, self_seq=2, accept=every)
    assert got is not None and [x.seq for x, _ in got] == [1, 2]


def test_a_hole_in_any_origins_seq_means_resync() -> None:
    off = Offset("ep", (10, 0), R, 5)
    assert plan_replay([e(11, R, 7)], off, self_origin=Q, self_seq=0, accept=every) is None
    assert plan_replay([e(11, OT, 1), e(12, OT, 3)], off, self_origin=Q, self_seq=0, accept=every) is None
    # own events the stream never got (Redis was down) when resuming on the same replica
    off_self = Offset("ep", (10, 0), Q, 2)
    assert plan_replay([e(11, Q, 3)], off_self, self_origin=Q, self_seq=4, accept=every) is None


def test_replay_filters_to_the_audience_but_still_checks_every_seq() -> None:
    off = Offset("ep", (10, 0), R, 0)
    entries = [e(11, R, 1, "user", "bob"), e(12, R, 2, "user", "ann"), e(13, R, 3, "org", "o1")]
    got = plan_replay(entries, off, self_origin=Q, self_seq=0, accept=lambda s, t: t in ("ann", "o1"))
    assert got is not None and [x.seq for x, _ in got] == [2, 3]


def test_ring_replays_after_a_seq_and_refuses_trimmed_or_expired_history() -> None:
    now = [0.0]
    ring = Ring(size=3, ttl=10, clock=lambda: now[0])
    for seq in range(1, 6):
        ring.append(Entry((0, seq), R, seq, "broadcast", None, "{}"))
    assert [x.seq for x in ring.after(3) or []] == [4, 5]
    assert ring.after(5) == []
    assert ring.after(2) == [ring.after(2)[0], *ring.after(3)] and ring.after(1) is None  # type: ignore[index]
    assert ring.after(9) is None  # an offset this ring never wrote
    now[0] = 11.0
    assert ring.after(4) is None and ring.after(5) == []
