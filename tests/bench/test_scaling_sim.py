"""The tools behind docs/scaling.md count what they claim (bench.scaling_sim, bench.scaling).

A tiny run (2 subscriber processes, 1 s) of both modes on a real redis-server: single-channel subscribers
must receive every envelope, per-audience subscribers exactly the envelopes of their own users, orgs and
broadcasts and nothing else. No timing is asserted; a broken tool fails here instead of printing a ratio.
"""

from __future__ import annotations

from bench import scaling, scaling_sim
from harness.redis_servers import RedisServer


def test_single_gets_everything_and_audience_only_its_own(redis_server: RedisServer) -> None:
    result = scaling_sim.simulate(redis_server, replicas=2, users=6, rate=100, duration=1.0)
    single, audience = result["single"], result["audience"]
    published = single["published"]
    assert published == audience["published"] == 100
    for sub in single["per_replica"]:
        assert sub["received"] == published
        assert sub["delivered"] == sub["expected"] and sub["no_audience"] == published - sub["expected"]
    for sub in audience["per_replica"]:
        assert sub["received"] == sub["delivered"] == sub["expected"] < published
        assert sub["no_audience"] == 0
    assert audience["received"] < single["received"]


def test_replica_bench_delivers_every_targeted_event(redis_server: RedisServer) -> None:
    """bench.scaling against 2 real replicas: the clients on replica 1 get every event, and the table
    has a cost for the replica with no audience (the number docs/scaling.md is about)."""
    rows = scaling.measure(redis_server, [2], rate=100, duration=1.0)
    (row,) = rows
    assert row["replicas"] == 2 and row["delivered"] == row["events"] == 100
    assert row["other_us_per_event"] is not None and row["other_cpu_pct"] is not None
    assert "replicas" in scaling.table(rows, 100)
