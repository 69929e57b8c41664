"""The simulation behind docs/scaling.md counts what it claims (bench.scaling_sim).

A tiny run (2 subscriber processes, 1 s) of both modes on a real redis-server: single-channel subscribers
must receive every envelope, per-audience subscribers exactly the envelopes of their own users, orgs and
broadcasts and nothing else. No timing is asserted; a broken tool fails here instead of printing a ratio.
"""

from __future__ import annotations

from bench import scaling_sim
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
