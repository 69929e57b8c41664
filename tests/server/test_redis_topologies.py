"""Real Sentinel and real Cluster deployments carrying fan-out between real server processes."""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.server.wsclient import EventClient
from tests.support.ports import free_port, wait_for_port
from tests.support.redis_procs import RedisServer, redis_server_binary
from tests.support.servers import ServerSet, http_json, start_servers

pytestmark = pytest.mark.timeout(150)

FAST = {"AIFACTORY_REDIS_BACKOFF_MAX": "0.5"}


def cli(port: int, *args: str) -> str:
    done = subprocess.run(["redis-cli", "-p", str(port), *args], capture_output=True, text=True, timeout=20)
    return done.stdout.strip()


def wait_until(what: str, check, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@dataclass
class Sentinel:
    """One redis-server in sentinel mode watching `master_port` as `mymaster` (quorum 2)."""

    master_port: int
    workdir: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Sentinel:
        conf = self.workdir / f"sentinel-{self.port}.conf"
        conf.write_text(
            f"port {self.port}\nbind 127.0.0.1\ndir {self.workdir}\n"
            f"sentinel monitor mymaster 127.0.0.1 {self.master_port} 2\n"
            "sentinel down-after-milliseconds mymaster 1000\n"
            "sentinel failover-timeout mymaster 5000\n"
            "sentinel parallel-syncs mymaster 1\n"
        )
        log = self.workdir / f"sentinel-{self.port}.log"
        self.proc = subprocess.Popen(
            [redis_server_binary(), str(conf), "--sentinel", "--logfile", str(log)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port)
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


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


@pytest.fixture
def sentinel_setup(tmp_path: Path) -> Iterator[tuple[RedisServer, RedisServer, list[Sentinel]]]:
    master = RedisServer().start()
    replica = RedisServer(extra_args=["--replicaof", "127.0.0.1", str(master.port)]).start()
    sentinels: list[Sentinel] = []
    try:
        wait_until(
            "replica in sync", lambda: "master_link_status:up" in cli(replica.port, "info", "replication")
        )
        sentinels = [Sentinel(master.port, tmp_path).start() for _ in range(3)]
        wait_until(
            "sentinels see the replica and each other",
            lambda: all(
                str(replica.port) in cli(s.port, "sentinel", "replicas", "mymaster")
                and "num-other-sentinels\n2" in cli(s.port, "sentinel", "master", "mymaster")
                for s in sentinels
            ),
        )
        yield master, replica, sentinels
    finally:
        for sentinel in sentinels:
            sentinel.stop()
        replica.stop()
        master.stop()


async def test_fanout_survives_a_sentinel_failover(
    sentinel_setup: tuple[RedisServer, RedisServer, list[Sentinel]], tmp_path: Path
) -> None:
    master, replica, sentinels = sentinel_setup
    url = "redis+sentinel://" + ",".join(f"127.0.0.1:{s.port}" for s in sentinels) + "/mymaster"
    servers = start_servers(2, redis_url=url, extra_env=FAST, workdir=tmp_path / "servers")
    try:
        servers.wait_bridge("connected")
        far = await EventClient.connect(servers[1].ws_url(token=servers.token("alice", "org-a")), "far")
        await fan_out_recovers(servers, far, attempts=3)

        master.stop()  # the replica must be promoted by the sentinels
        wait_until(
            "failover to the replica",
            lambda: cli(sentinels[0].port, "sentinel", "get-master-addr-by-name", "mymaster").endswith(
                str(replica.port)
            ),
        )
        await fan_out_recovers(servers, far)
        for server in servers:
            assert server.readyz()[1]["bridge"] == "connected"
        await far.close()
    finally:
        servers.stop()


@pytest.fixture
def redis_cluster() -> Iterator[list[RedisServer]]:
    # the cluster bus port defaults to port + 10000, which may be taken or past 65535: pick a free one
    nodes = [
        RedisServer(
            extra_args=[
                "--cluster-enabled",
                "yes",
                "--cluster-node-timeout",
                "2000",
                "--cluster-port",
                str(free_port()),
            ]
        )
        for _ in range(3)
    ]
    try:
        for node in nodes:
            node.start()
        done = subprocess.run(
            [
                "redis-cli",
                "--cluster",
                "create",
                *(f"127.0.0.1:{n.port}" for n in nodes),
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        wait_until(
            "cluster_state:ok",
            lambda: all("cluster_state:ok" in cli(n.port, "cluster", "info") for n in nodes),
        )
        yield nodes
    finally:
        for node in nodes:
            node.stop()


async def test_three_master_cluster_carries_fanout(redis_cluster: list[RedisServer], tmp_path: Path) -> None:
    url = "redis+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in redis_cluster)
    servers = start_servers(3, redis_url=url, extra_env=FAST, workdir=tmp_path / "servers")
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
        for client in clients:
            await client.close()
    finally:
        servers.stop()
