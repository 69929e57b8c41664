"""Redis going away and coming back (real processes): serving never depends on it, fan-out heals itself."""

from __future__ import annotations

import uuid

import pytest

from harness.app_servers import ServerSet, http_json, start_servers
from harness.redis_servers import RedisServer
from tests.server.wsclient import EventClient

pytestmark = pytest.mark.timeout(120)

FAST_BACKOFF = {"AIFACTORY_REDIS_BACKOFF_MAX": "0.5"}  # default 1 s → 30 s; tests only shorten the cap
LOST = "WARNING aifactory.bridge: Redis connection lost"


def fire(servers: ServerSet, replica: int, marker: str) -> None:
    status, reply = http_json(
        "POST",
        servers[replica].http + "/api/events",
        {"scope": "broadcast", "event": {"type": "probe", "marker": marker}},
        token=servers.token("svc", "ops", "service"),
    )
    assert status == 202, reply


async def test_redis_killed_mid_session_local_delivery_continues_and_fanout_resumes(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    redis = RedisServer().start()
    servers = start_servers(
        2, redis_url=redis.url, extra_env=FAST_BACKOFF, workdir=tmp_path_factory.mktemp("kill")
    )
    try:
        servers.wait_bridge("connected")
        token = servers.token("alice", "org-a")
        near, far = [await EventClient.connect(s.ws_url(token=token), s.name) for s in servers]
        before = uuid.uuid4().hex
        fire(servers, 0, before)
        await far.wait_marker(before)

        redis.stop()
        for server in servers:
            server.wait_for_log(LOST)
            server.wait_bridge("reconnecting")
        during = uuid.uuid4().hex
        fire(servers, 0, during)
        await near.wait_marker(during)  # own-replica delivery is independent of Redis

        redis.start()  # same port: the servers were never restarted
        servers.wait_bridge("connected")
        after = uuid.uuid4().hex
        fire(servers, 0, after)
        await far.wait_marker(after)
        assert far.count("marker", during) == 0, "at-most-once: no replay of the outage window"
        gap = far.matching(lambda f: f.get("type") == "resync" and f.get("reason") == "gap")
        assert gap and gap[0]["missed"] >= 1, "the far client is told to refetch what it missed"
        for server in servers:
            log = server.log_text()
            assert log.count(LOST) == 1, "one WARNING per outage, not one per retry"
            assert log.count(" WARNING ") == 1
            assert "Redis pub/sub reconnected" in log
        await near.close()
        await far.close()
    finally:
        servers.stop()
        redis.stop()


async def test_redis_down_at_startup_logs_error_once_then_debug_and_recovers(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    redis = RedisServer()  # port reserved, not started yet
    servers = start_servers(
        2,
        redis_url=redis.url,
        extra_env=FAST_BACKOFF | {"LOG_LEVEL": "DEBUG"},
        workdir=tmp_path_factory.mktemp("down"),
    )
    try:
        for server in servers:
            server.wait_for_log("ERROR aifactory.bridge: Redis unreachable at startup")
            server.wait_for_log("DEBUG aifactory.bridge: Redis connect attempt", count=2)
            status, body = server.readyz()
            assert status == 200 and body["bridge"] == "connecting", "ready to serve without Redis"
        token = servers.token("alice", "org-a")
        near, far = [await EventClient.connect(s.ws_url(token=token), s.name) for s in servers]
        local = uuid.uuid4().hex
        fire(servers, 0, local)
        await near.wait_marker(local)

        redis.start()
        servers.wait_bridge("connected")
        crossed = uuid.uuid4().hex
        fire(servers, 0, crossed)
        await far.wait_marker(crossed)
        for server in servers:
            log = server.log_text()
            assert log.count(" ERROR ") == 1, "ERROR on the first failed connect only"
            assert log.count("Redis pub/sub connected") == 1
        await near.close()
        await far.close()
    finally:
        servers.stop()
        redis.stop()
