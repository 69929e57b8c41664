"""The processes a benchmark run owns: replicas of either server kind and load-client processes.

Both kinds expose the same three things to the benchmark: a WebSocket URL per replica for a user, a fire
URL + request body on a replica, and the replica's process id (for RSS and profiling).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.worker import LineWorker
from harness.app_servers import ServerSet, start_servers
from harness.ports import free_port, wait_for_port

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Replicas:
    """N replicas of one server kind ("aifactory" or "socketio") on one Redis and channel."""

    kind: str
    count: int
    redis_url: str
    channel: str
    ports: list[int] = field(default_factory=list)
    pids: list[int] = field(default_factory=list)
    _aif: ServerSet | None = None
    _procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start(self) -> Replicas:
        if self.kind == "aifactory":
            self._aif = start_servers(
                self.count,
                redis_url=self.redis_url,
                channel=self.channel,
                extra_env={"LOG_LEVEL": "WARNING", "AIFACTORY_WS_QUEUE": "10000"},
            )
            self.ports = [s.port for s in self._aif]
            self.pids = [s.proc.pid for s in self._aif if s.proc]
            for s in self._aif:
                s.wait_bridge("connected")
        else:
            logdir = Path(tempfile.mkdtemp(prefix="aif-bench-sio-"))
            for i in range(self.count):
                port = free_port()
                log = open(logdir / f"sio{i}.log", "wb")  # noqa: SIM115 - lives as long as the process
                proc = subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "bench.sio_server",
                        "--port",
                        str(port),
                        "--redis",
                        self.redis_url,
                        "--channel",
                        self.channel,
                    ],
                    cwd=ROOT,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
                self._procs.append(proc)
                self.ports.append(port)
                self.pids.append(proc.pid)
            for port in self.ports:
                wait_for_port(port, timeout=30)
            time.sleep(0.5)  # let each AsyncRedisManager subscribe before the first event
        return self

    def stop(self) -> None:
        if self._aif is not None:
            self._aif.stop()
        for proc in self._procs:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def alive(self) -> list[bool]:
        if self._aif is not None:
            return [s.proc is not None and s.proc.poll() is None for s in self._aif]
        return [p.poll() is None for p in self._procs]

    # ---- what the benchmark needs --------------------------------------------------------------
    def ws_url(self, i: int, user: str) -> str:
        if self.kind == "aifactory":
            assert self._aif is not None
            return self._aif[i].ws_url("/ws/events", self._aif.token(user, org=f"org-{user}"))
        return f"ws://127.0.0.1:{self.ports[i]}/socket.io/?EIO=4&transport=websocket&user={user}"

    def fire_url(self, i: int) -> str:
        path = "/api/events" if self.kind == "aifactory" else "/fire"
        return f"http://127.0.0.1:{self.ports[i]}{path}"

    def fire_headers(self) -> dict[str, str]:
        if self.kind == "aifactory":
            assert self._aif is not None
            return {"Authorization": f"Bearer {self._aif.token('bench-firer', role='service')}"}
        return {}

    def fire_body(self, event: dict[str, Any], user: str | None = None) -> dict[str, Any]:
        if self.kind == "aifactory":
            if user is None:
                return {"scope": "broadcast", "event": event}
            return {"scope": "user", "target": user, "event": event}
        return {"room": user, "event": event}


class LoadClient(LineWorker):
    """A `bench.loadclient` process holding sockets; `dump()` returns latency samples per group/phase."""

    def __init__(self, plan: list[dict[str, Any]]) -> None:
        super().__init__("bench.loadclient", json.dumps(plan), quit_timeout=10.0)
        line = self.ask(None)
        if not line.startswith("READY"):
            self.close()
            raise RuntimeError(f"load client failed to connect its sockets: {line or 'exited'}")
        self.sockets = int(line.split()[1])

    def dump(self) -> dict[str, list[float]]:
        return json.loads(self.ask("DUMP"))["samples"]
