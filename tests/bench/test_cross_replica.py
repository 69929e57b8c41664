"""The harness behind the 2x-of-redis-py latency goal (bench.cross_replica) measures what it claims.

A short run of every kind: each event fired on A must be timed on C exactly once, so a broken path (an
in-process replica that never fires through the bus, a WebSocket client that misses frames, a receiver
timing the wrong frames) fails here instead of printing a flattering table. No timing is asserted.
This is the test of the benchmark tool itself, so it (and only tests/bench) imports `bench`.
"""

from __future__ import annotations

from bench import cross_replica
from harness.app_servers import http_json
from harness.redis_servers import RedisServer


def test_every_kind_times_every_event_once(redis_server: RedisServer) -> None:
    rate, duration, rounds = 100.0, 0.5, 2
    rows = cross_replica.measure(redis_server.url, [rate], duration, 256, rounds=rounds)
    expected = int(rate * duration) * rounds
    by_kind = {r["kind"]: r for r in rows}
    assert set(by_kind) == set(cross_replica.KINDS)
    for kind, row in by_kind.items():
        assert row["received"] == expected, f"{kind}: {row['received']:.0f} of {expected} events timed"
        assert row["lost"] == 0
        assert 0 < row["p50"] <= row["p99"] <= row["max"], f"{kind}: {row}"
    ratios = {q["kind"]: q for q in cross_replica.ratios(rows)}
    assert set(ratios) == {"bridge", "replica", "relay"}
    assert ratios["replica"]["p50_ratio"] == by_kind["replica"]["p50"] / by_kind["raw"]["p50"]


def test_replica_kind_runs_the_real_server_on_both_sides(redis_server: RedisServer) -> None:
    """Replica C is an `aifactory-server` process holding the one WebSocket; A is the real app serving
    HTTP in the firing process; both report a connected bridge, and A's events reach C's client."""
    pair = cross_replica.Pair("replica", redis_server.url)
    try:
        assert pair.replica_c is not None and pair.replica_a_http is not None
        status, body = pair.replica_c[0].readyz()
        assert (status, body["bridge"], body["clients"]) == (200, "connected", 1)
        status, body = http_json("GET", pair.replica_a_http + "/readyz")
        assert (status, body["bridge"], body["clients"]) == (200, "connected", 0)
        assert len(pair.run(100, 20, 256)) == 20
    finally:
        pair.close()
