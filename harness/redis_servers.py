"""Real `redis-server` processes on free loopback ports, started and stopped by the tests."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from harness.ports import free_port, wait_for_port


def redis_server_binary() -> str:
    path = shutil.which("redis-server")
    if path is None:  # make test installs it; a missing binary is a broken setup, not a skip
        raise RuntimeError("redis-server not found: run the tests through `make test`")
    return path


@dataclass
class RedisServer:
    """One redis-server process. `stop()` kills it; `start()` brings it back on the same port."""

    port: int = field(default_factory=free_port)
    password: str | None = None
    extra_args: list[str] = field(default_factory=list)
    proc: subprocess.Popen[bytes] | None = None
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="aif-redis-")))

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        # fmt: off
        args = [
            redis_server_binary(),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.workdir),
            "--logfile", str(self.workdir / "redis.log"),
        ]
        # fmt: on
        if self.password:
            args += ["--requirepass", self.password]
        args += self.extra_args
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(self.port)
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None
        # make sure the port is really closed before a caller restarts on it
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                wait_for_port(self.port, timeout=0.1)
            except TimeoutError:
                return
            time.sleep(0.05)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --- Sentinel and Cluster (owner: bus engineer) ---------------------------------------------------------


def redis_cli(port: int, *args: str, password: str | None = None, check: bool = True) -> str:
    """Run one `redis-cli` command against 127.0.0.1:port and return its stdout (stripped)."""
    cli = shutil.which("redis-cli")
    if cli is None:  # make test installs redis-tools; a missing binary is a broken setup, not a skip
        raise RuntimeError("redis-cli not found: run the tests through `make test`")
    cmd = [cli, "-h", "127.0.0.1", "-p", str(port)]
    if password:
        cmd += ["--no-auth-warning", "-a", password]
    done = subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=30)
    if check and (done.returncode != 0 or done.stdout.startswith("ERR")):
        raise RuntimeError(f"redis-cli {' '.join(args[:2])} on :{port} failed: {done.stdout}{done.stderr}")
    return done.stdout.strip()


def wait_until(predicate: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except (RuntimeError, subprocess.TimeoutExpired):
            pass
        time.sleep(0.1)
    raise TimeoutError(f"timed out waiting for {what}")


@dataclass
class SentinelSetup:
    """A real Sentinel deployment: one master, one replica and three `redis-server --sentinel` processes."""

    service_name: str = "mymaster"
    password: str | None = None
    sentinel_password: str | None = None  # `requirepass` on the sentinels themselves
    master: RedisServer | None = None
    replica: RedisServer | None = None
    sentinels: list[subprocess.Popen[bytes]] = field(default_factory=list)
    sentinel_ports: list[int] = field(default_factory=list)
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="aif-sentinel-")))

    def url(self, scheme: str = "redis+sentinel") -> str:
        auth = f":{self.password}@" if self.password else ""
        hosts = ",".join(f"127.0.0.1:{p}" for p in self.sentinel_ports)
        query = f"?sentinel_password={self.sentinel_password}" if self.sentinel_password else ""
        return f"{scheme}://{auth}{hosts}/{self.service_name}/0{query}"

    def _sentinel_cli(self, port: int, *args: str) -> str:
        return redis_cli(port, *args, password=self.sentinel_password)

    def _auth_args(self) -> list[str]:
        return ["--masterauth", self.password] if self.password else []

    def start(self) -> SentinelSetup:
        self.master = RedisServer(password=self.password, extra_args=self._auth_args()).start()
        self.replica = replica = RedisServer(
            password=self.password,
            extra_args=[*self._auth_args(), "--replicaof", "127.0.0.1", str(self.master.port)],
        ).start()
        wait_until(
            lambda: (
                "master_link_status:up"
                in redis_cli(replica.port, "INFO", "replication", password=self.password)
            ),
            "the replica to sync with the master",
        )
        for _ in range(3):
            port = free_port()
            conf = self.workdir / f"sentinel-{port}.conf"
            lines = [
                f"port {port}",
                "bind 127.0.0.1",
                f"dir {self.workdir}",
                f"logfile {self.workdir / f'sentinel-{port}.log'}",
                f"sentinel monitor {self.service_name} 127.0.0.1 {self.master.port} 2",
                f"sentinel down-after-milliseconds {self.service_name} 1000",
                f"sentinel failover-timeout {self.service_name} 5000",
                f"sentinel parallel-syncs {self.service_name} 1",
            ]
            if self.password:
                lines.append(f"sentinel auth-pass {self.service_name} {self.password}")
            if self.sentinel_password:
                lines += [
                    f"requirepass {self.sentinel_password}",
                    f"sentinel sentinel-pass {self.sentinel_password}",
                ]
            conf.write_text("\n".join(lines) + "\n")
            proc = subprocess.Popen(
                [redis_server_binary(), str(conf), "--sentinel"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            self.sentinels.append(proc)
            self.sentinel_ports.append(port)
            wait_for_port(port)
        for port in self.sentinel_ports:

            def sees_replica(port: int = port) -> bool:
                return self._master_info(port).get("num-slaves") == "1"

            wait_until(sees_replica, f"sentinel :{port} to see the replica")
        return self

    def _master_info(self, port: int) -> dict[str, str]:
        words = self._sentinel_cli(port, "SENTINEL", "MASTER", self.service_name).splitlines()
        return dict(zip(words[::2], words[1::2], strict=False))

    def master_port(self) -> int:
        """The master's port according to the first sentinel."""
        addr = self._sentinel_cli(
            self.sentinel_ports[0], "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.service_name
        )
        return int(addr.splitlines()[1])

    def failover(self) -> int:
        """Force a failover (SENTINEL FAILOVER) and wait until every sentinel names the new master."""
        old = self.master_port()
        wait_until(
            lambda: (
                self._sentinel_cli(self.sentinel_ports[0], "SENTINEL", "FAILOVER", self.service_name) == "OK"
            ),
            "SENTINEL FAILOVER to be accepted",
        )
        for port in self.sentinel_ports:

            def names_new_master(port: int = port) -> bool:
                addr = self._sentinel_cli(port, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.service_name)
                return int(addr.splitlines()[1]) != old

            wait_until(names_new_master, f"sentinel :{port} to name the new master")
        return self.master_port()

    def server_on(self, port: int) -> RedisServer:
        assert self.master is not None and self.replica is not None
        return self.master if self.master.port == port else self.replica

    def stop(self) -> None:
        for proc in self.sentinels:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
        self.sentinels.clear()
        for server in (self.master, self.replica):
            if server is not None:
                server.stop()

    def __enter__(self) -> SentinelSetup:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass
class ClusterSetup:
    """A real Redis Cluster of `masters` masters (no replicas), built by `redis-cli --cluster create`."""

    masters: int = 3
    password: str | None = None
    nodes: list[RedisServer] = field(default_factory=list)

    def url(self, scheme: str = "redis+cluster") -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"{scheme}://{auth}" + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes[:2])

    def start(self) -> ClusterSetup:
        for _ in range(self.masters):
            node = RedisServer(password=self.password)
            node.extra_args = ["--cluster-enabled", "yes", "--cluster-port", str(free_port())]
            node.extra_args += ["--cluster-config-file", str(node.workdir / "nodes.conf")]
            node.extra_args += ["--cluster-node-timeout", "2000"]
            if self.password:
                node.extra_args += ["--masterauth", self.password]
            self.nodes.append(node.start())
        addrs = [f"127.0.0.1:{n.port}" for n in self.nodes]
        create = ["--cluster", "create", *addrs, "--cluster-replicas", "0", "--cluster-yes"]
        redis_cli(self.nodes[0].port, *create, password=self.password)
        for node in self.nodes:

            def cluster_ok(node: RedisServer = node) -> bool:
                return "cluster_state:ok" in redis_cli(node.port, "CLUSTER", "INFO", password=self.password)

            wait_until(cluster_ok, f"cluster node :{node.port} to report cluster_state:ok")
        return self

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def __enter__(self) -> ClusterSetup:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
