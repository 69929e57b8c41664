"""Real `redis-server` processes on free loopback ports, started and stopped by the tests."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.ports import free_port, wait_for_port


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
        args = [
            redis_server_binary(),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.workdir),
            "--logfile", str(self.workdir / "redis.log"),
        ]
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
