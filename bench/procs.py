"""The processes a benchmark run owns: replicas of one server kind, and load-client processes.

Every kind exposes the same things to the benchmark: a WebSocket URL per replica for a user, a fire URL +
request body on a replica, and each replica's process id (for CPU, RSS and profiling). Kinds:

- aifactory: `aifactory-server` (the product).
- socketio: python-socketio + AsyncRedisManager under the same uvicorn (bench/sio_server.py).
- node-sio: Node socket.io 4 + @socket.io/redis-adapter 8 (bench/node/peers.js).
- py-relay: a bare Python `websockets` relay using `broadcast()` (bench/relay.py).
- node-ws: a bare Node `ws` relay (bench/node/peers.js).
"""

from __future__ import annotations

import json
import os
import shutil
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
NODE_MODULES = ROOT / ".cache" / "node-bench" / "node_modules"  # `make bench` installs bench/node here
KINDS = ("aifactory", "node-sio", "socketio", "py-relay", "node-ws")
NAMES = {
    "aifactory": "aifactory-server",
    "socketio": "python-socketio + AsyncRedisManager",
    "node-sio": "Node socket.io 4 + redis-adapter 8",
    "py-relay": "bare Python websockets broadcast() relay",
    "node-ws": "bare Node ws relay",
}
PROTO = {"aifactory": "json", "socketio": "sio", "node-sio": "sio", "py-relay": "json", "node-ws": "json"}
_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process, all threads (from /proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def _peer_command(kind: str, port: int, fire_port: int, redis_url: str, channel: str) -> list[str]:
    if kind in ("node-sio", "node-ws"):
        node = shutil.which("node")
        if node is None or not NODE_MODULES.is_dir():
            raise RuntimeError("the Node peers need node and `make bench` (npm ci into .cache/node-bench)")
        script = str(ROOT / "bench" / "node" / "peers.js")
        return [node, script, kind.removeprefix("node-"), str(port), redis_url, channel]
    module = "bench.sio_server" if kind == "socketio" else "bench.relay"
    cmd = [sys.executable, "-m", module, "--port", str(port), "--redis", redis_url, "--channel", channel]
    return [*cmd, "--fire-port", str(fire_port)] if kind == "py-relay" else cmd


@dataclass
class Replicas:
    """N replicas of one server kind on one Redis and channel."""

    kind: str
    count: int
    redis_url: str
    channel: str
    ports: list[int] = field(default_factory=list)
    fire_ports: list[int] = field(default_factory=list)
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
            self.ports = self.fire_ports = [s.port for s in self._aif]
            self.pids = [s.proc.pid for s in self._aif if s.proc]
            for s in self._aif:
                s.wait_bridge("connected")
            return self
        logdir = Path(tempfile.mkdtemp(prefix=f"aif-bench-{self.kind}-"))
        env = dict(os.environ, NODE_PATH=str(NODE_MODULES), PYTHONPATH=str(ROOT))
        for i in range(self.count):
            port = free_port()
            fire_port = free_port() if self.kind == "py-relay" else port
            log = open(logdir / f"{i}.log", "wb")  # noqa: SIM115 - lives as long as the process
            cmd = _peer_command(self.kind, port, fire_port, self.redis_url, self.channel)
            proc = subprocess.Popen(
                cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
            self._procs.append(proc)
            self.ports.append(port)
            self.fire_ports.append(fire_port)
            self.pids.append(proc.pid)
        for port in {*self.ports, *self.fire_ports}:
            wait_for_port(port, timeout=30)
        time.sleep(0.5)  # let each Redis subscriber subscribe before the first event
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
        if self._aif is not None:
            return self._aif[i].ws_url("/ws/events", self._aif.token(user, org=f"org-{user}"))
        if PROTO[self.kind] == "sio":
            return f"ws://127.0.0.1:{self.ports[i]}/socket.io/?EIO=4&transport=websocket&user={user}"
        return f"ws://127.0.0.1:{self.ports[i]}/"

    def fire_url(self, i: int) -> str:
        path = "/api/events" if self.kind == "aifactory" else "/fire"
        return f"http://127.0.0.1:{self.fire_ports[i]}{path}"

    def fire_headers(self) -> dict[str, str]:
        if self._aif is not None:
            return {"Authorization": f"Bearer {self._aif.token('bench-firer', role='service')}"}
        return {}

    def fire_body(self, event: dict[str, Any], user: str | None = None) -> dict[str, Any]:
        if self.kind == "aifactory":
            if user is None:
                return {"scope": "broadcast", "event": event}
            return {"scope": "user", "target": user, "event": event}
        return {"room": user, "event": event}


class LoadClient(LineWorker):
    """A `bench.loadclient` process holding sockets; `dump()` returns its counts and latency samples."""

    def __init__(self, plan: list[dict[str, Any]]) -> None:
        super().__init__("bench.loadclient", json.dumps(plan), quit_timeout=10.0)
        line = self.ask(None)
        if not line.startswith("READY"):
            self.close()
            raise RuntimeError(f"load client failed to connect its sockets: {line or 'exited'}")
        self.sockets = int(line.split()[1])

    def dump(self) -> dict[str, Any]:
        return json.loads(self.ask("DUMP"))
