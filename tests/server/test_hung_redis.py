"""A hung Redis (SIGSTOP: TCP stays up, nothing answers) is noticed by idle replicas, which reconnect.

Before: the probe's PUBLISH timed out after 5 s and the timeout cleared the pending probe, so an idle
replica (no other traffic to be missed) never concluded anything: it logged nothing and sat on a dead
subscription. Now the timed-out probe stays pending and the subscriber reports itself deaf.
Production probe settings (5 s interval, 10 s timeout): nothing is shortened for the test.
"""

from __future__ import annotations

import signal
import time
import uuid

import pytest

from harness.app_servers import http_json, start_servers
from harness.redis_servers import RedisServer
from tests.server.wsclient import EventClient

pytestmark = pytest.mark.timeout(150)

DEAF = "WARNING aifactory.bridge: Redis subscriber is connected but deaf"
STOPPED_FOR = 20.0


async def test_idle_replicas_notice_a_sigstopped_redis_and_reconnect(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    redis = RedisServer(password="hung-redis-pw").start()
    servers = start_servers(
        3,
        redis_url=redis.url,
        extra_env={"AIFACTORY_REDIS_BACKOFF_MAX": "2"},
        workdir=tmp_path_factory.mktemp("hung"),
    )
    assert redis.proc is not None
    try:
        servers.wait_bridge("connected")
        redis.proc.send_signal(signal.SIGSTOP)
        stopped_at = time.monotonic()
        detected = []
        for server in servers:  # idle: no client, no event on any replica
            server.wait_for_log(DEAF, timeout=STOPPED_FOR + 5)
            detected.append(time.monotonic() - stopped_at)
        print(f"\nhung Redis detected by the idle replicas after {', '.join(f'{d:.1f}s' for d in detected)}")
        assert max(detected) < STOPPED_FOR, "a replica did not notice the hung Redis while it was stopped"
        time.sleep(max(0.0, STOPPED_FOR - (time.monotonic() - stopped_at)))
        redis.proc.send_signal(signal.SIGCONT)

        servers.wait_bridge("connected")
        token = servers.token("alice")
        far = await EventClient.connect(servers[2].ws_url(token=token), "far")
        marker = uuid.uuid4().hex
        status, _ = http_json(
            "POST",
            servers[0].http + "/api/events",
            {"scope": "broadcast", "event": {"type": "after", "marker": marker}},
            token=servers.token("svc", role="service"),
        )
        assert status == 202
        await far.wait_marker(marker)  # fan-out works again without a restart
        await far.close()
        for server in servers:
            log = server.log_text()
            assert log.count(DEAF) == 1 and log.count(" WARNING ") == 1, "exactly the spec's one WARNING"
            assert "Redis pub/sub reconnected" in log
            assert "hung-redis-pw" not in log
    finally:
        if redis.proc is not None and redis.proc.poll() is None:
            redis.proc.send_signal(signal.SIGCONT)
        servers.stop()
        redis.stop()
