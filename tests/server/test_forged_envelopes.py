"""Write access to Redis alone can neither inject events nor silence a replica (real replicas, real Redis).

Before: one `PUBLISH` of `{"v":1,"origin":<replica A's id>,"seq":1e30,...}` reached every client, and
made every other replica drop A's real events as duplicates until A restarted. Now every envelope is
signed with a key derived from AIFACTORY_AUTH_SECRET; unsigned or badly signed ones are dropped and
counted (`aifactory_bus_malformed_total{reason="unsigned"|"bad_signature"}`), and in any case no single
envelope can move an origin's sequence baseline for good.
"""

from __future__ import annotations

import json
import re
import uuid

from harness.app_servers import ServerSet, http_json
from harness.redis_servers import RedisServer, redis_cli
from tests.server.conftest import REDIS_PASSWORD
from tests.server.wsclient import EventClient

CHANNEL = "aifactory:events"


def fire(servers: ServerSet, replica: int, marker: str) -> None:
    status, reply = http_json(
        "POST",
        servers[replica].http + "/api/events",
        {"scope": "broadcast", "event": {"type": "real", "marker": marker}},
        token=servers.token("svc", role="service"),
    )
    assert status == 202, reply


def metric(servers: ServerSet, replica: int, reason: str) -> float:
    _, text = http_json("GET", servers[replica].http + "/metrics")
    found = re.search(rf'^aifactory_bus_malformed_total{{reason="{reason}"}} (\S+)$', text, re.M)
    return float(found[1]) if found else 0.0


async def test_forged_envelopes_reach_no_client_and_real_events_keep_flowing(
    cluster: ServerSet, module_redis: RedisServer
) -> None:
    far = await EventClient.connect(cluster[2].ws_url(token=cluster.token("alice")), "far")
    first = uuid.uuid4().hex
    fire(cluster, 0, first)
    await far.wait_marker(first)  # replica C knows replica A's sequence baseline now

    origin = cluster[0].readyz()[1]["replica"]
    event = json.dumps({"type": "forged", "marker": "forged"})
    huge = 999_999_999_999_999_999  # the canonical layout's largest seq
    forgeries = [
        # the attack: a real replica id and seq 1e30, unsigned
        f'{{"v":1,"origin":"{origin}","seq":{10**30},"scope":"broadcast","target":null,"event":{event}}}',
        f'{{"v":1,"origin":"{origin}","seq":{huge},"scope":"broadcast","target":null,"event":{event}}}',
        f'{{"v":1,"origin":"{origin}","kind":"probe","nonce":1,"seq":{huge}}}',
        # the right layout with a made-up signature
        "s1." + "0" * 64 + f'.{{"v":1,"origin":"{origin}","seq":{huge},"scope":"user","target":"alice",'
        f'"event":{event}}}',
    ]
    unsigned_before, bad_before = metric(cluster, 2, "unsigned"), metric(cluster, 2, "bad_signature")
    for forged in forgeries:
        assert int(redis_cli(module_redis.port, "PUBLISH", CHANNEL, forged, password=REDIS_PASSWORD)) == 3

    after = uuid.uuid4().hex
    fire(cluster, 0, after)
    await far.wait_marker(after)  # A's next real event is not a "duplicate" on C
    assert far.count("marker", "forged") == 0, "a forged envelope reached a client"
    assert not far.matching(lambda f: f.get("type") == "resync"), "a forged seq moved the sequence state"
    assert metric(cluster, 2, "unsigned") - unsigned_before == 3
    assert metric(cluster, 2, "bad_signature") - bad_before == 1
    await far.close()
