"""Shared real-process fixtures for the server tests: one Redis and a module-scoped 3-replica cluster."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from harness.app_servers import ServerSet, start_servers
from harness.redis_servers import RedisServer

REDIS_PASSWORD = "s3cret-redis-pw-for-tests"


@pytest.fixture(scope="module")
def module_redis() -> Iterator[RedisServer]:
    """A password-protected redis-server for one test module (the password must never reach a log)."""
    server = RedisServer(password=REDIS_PASSWORD).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def cluster(module_redis: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerSet]:
    """Three replicas on one Redis, bridges connected; tests must leave it as they found it."""
    servers = start_servers(3, redis_url=module_redis.url, workdir=tmp_path_factory.mktemp("cluster"))
    try:
        servers.wait_bridge("connected")
        yield servers
    finally:
        servers.stop()
