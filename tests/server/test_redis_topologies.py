"""Real Sentinel and real Cluster deployments carrying fan-out between real server processes."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from harness.app_servers import ServerSet, http_json, start_servers
from harness.redis_servers import ClusterSetup, SentinelSetup, wait_until
from tests.server.wsclient import EventClient

pytestmark = pytest.mark.timeout(150)

FAST = {"AIFACTORY_REDIS_BACKOFF_MAX": "0.5"}


async def fan_out_recovers(servers: ServerSet, far: EventClient, attempts: int = 30) -> None:
    """Fire markers on replica 1 until one crosses to the far client (a failover may drop a few)."""
    service = servers.token("svc", "ops", "service")
    for _ in range(attempts):
        marker = uuid.uuid4().hex
        status, _ = http_json(
            "POST",
            servers[0].http + "/api/events",
            {"scope": "org", "target": "org-a", "event": {"marker": marker}},
            token=service,
        )
        assert status == 202
        try:
            await far.wait_marker(marker, timeout=2.0)
            return
        except AssertionError:
            continue
    raise AssertionError("fan-out never resumed")


async def test_fanout_survives_losing_the_sentinel_master(tmp_path: Path) -> None:
    """The master dies (no SENTINEL FAILOVER): the sentinels promote the replica and fan-out resumes."""
    with SentinelSetup() as sentinel:
        servers = start_servers(2, redis_url=sentinel.url(), extra_env=FAST, workdir=tmp_path / "servers")
        try:
            servers.wait_bridge("connected")
            far = await EventClient.connect(servers[1].ws_url(token=servers.token("alice", "org-a")), "far")
            await fan_out_recovers(servers, far, attempts=3)

            old = sentinel.master_port()
            sentinel.server_on(old).stop()
            wait_until(lambda: sentinel.master_port() != old, "the sentinels to promote the replica")
            await fan_out_recovers(servers, far)
            # After a failover the publisher may drop one stale link to the dead master and reconnect
            # once more: the bridge must settle on "connected", not merely pass through it.
            wait_until(
                lambda: all(server.readyz()[1]["bridge"] == "connected" for server in servers),
                "every replica's bridge to settle on connected after the failover",
            )
            await far.close()
        finally:
            servers.stop()


@pytest.fixture
def redis_cluster() -> Iterator[ClusterSetup]:
    with ClusterSetup(masters=3) as cluster:
        yield cluster


async def test_three_master_cluster_carries_fanout(redis_cluster: ClusterSetup, tmp_path: Path) -> None:
    servers = start_servers(3, redis_url=redis_cluster.url(), extra_env=FAST, workdir=tmp_path / "servers")
    try:
        servers.wait_bridge("connected")
        clients = [
            await EventClient.connect(s.ws_url(token=servers.token("alice", "org-a")), s.name)
            for s in servers
        ]
        service = servers.token("svc", "ops", "service")
        for origin in range(3):
            marker = uuid.uuid4().hex
            status, _ = http_json(
                "POST",
                servers[origin].http + "/api/events",
                {"scope": "user", "target": "alice", "event": {"marker": marker}},
                token=service,
            )
            assert status == 202
            for client in clients:
                await client.wait_marker(marker)
        # recovery on a Cluster: resume on replica 3 from the first marker's offset replays the other two
        first = clients[0].offsets[0]
        assert first is not None
        resumed = await EventClient.connect(
            servers[2].ws_url(token=servers.token("alice", "org-a")) + "&since=" + quote(first), "resumed"
        )
        assert resumed.hello["recovered"] is True and resumed.hello["replayed"] == 2
        await resumed.wait_for(lambda f: "marker" in f, count=2)
        assert [f["marker"] for f in resumed.frames] == [f["marker"] for f in clients[0].frames[1:]]
        for client in [*clients, resumed]:
            await client.close()
    finally:
        servers.stop()
