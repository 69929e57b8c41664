"""The fan-out harness behind docs/benchmarks.md (bench.fanout) measures what it claims, for every peer.

A short phase per kind (aifactory-server, Node socket.io, python-socketio, the two bare relays): every
broadcast fired on replica A must reach every socket on replicas B and C exactly once, and the CPU of the
receiving replicas and of the load clients must be counted. No timing is asserted.
"""

from __future__ import annotations

from bench import fanout
from bench.procs import KINDS, cpu_seconds
from bench.report import round_ratios, summary
from harness.redis_servers import RedisServer


def test_every_peer_delivers_every_frame_once(redis_server: RedisServer) -> None:
    benches = fanout.start_all(KINDS, 3, 12, redis_server.url)
    try:
        assert {b.receivers == [1, 2] for b in benches.values()} == {True}
        runs = fanout.ladder(benches, [20], 1.0, 2, say=lambda _m: None)
    finally:
        fanout.close_all(benches)
    assert sorted({r.kind for r in runs}) == sorted(KINDS)
    for r in runs:
        assert (r.sent, r.failed) == (20, 0), r
        assert (r.received, r.lost, r.dups) == (20 * 12, 0, 0), r
        assert r.server_us > 0 and r.driver_us > 0, r
        assert 0 < r.latency["p50"] <= r.latency["p99"], r
    rows = [r.row() for r in runs]
    assert len(round_ratios(rows, "aifactory", 20, "server_us")) == 2
    lines = summary({"ladder": rows, "clients": 12})
    assert any("aifactory-server / Node socket.io" in line for line in lines)


def test_cpu_seconds_counts_this_process() -> None:
    import os

    before = cpu_seconds(os.getpid())
    sum(i * i for i in range(2_000_000))
    assert cpu_seconds(os.getpid()) > before
