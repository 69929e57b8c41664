"""One Redis, three aifactory-server replicas and HAProxy in front, shared by the e2e tests of a module."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from harness.app_servers import ServerSet, start_servers
from harness.redis_servers import RedisServer
from tests.e2e.lb import HAProxy


@dataclass
class Stack:
    redis: RedisServer
    replicas: ServerSet
    lb: HAProxy


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    redis = RedisServer().start()
    replicas = None
    lb = None
    try:
        replicas = start_servers(3, redis_url=redis.url, extra_env={"AIFACTORY_TERMINAL_GRACE_SECONDS": "30"})
        replicas.wait_bridge("connected")
        lb = HAProxy([f"127.0.0.1:{s.port}" for s in replicas]).start()
        yield Stack(redis, replicas, lb)
    finally:
        if lb is not None:
            lb.stop()
        if replicas is not None:
            replicas.stop()
        redis.stop()
