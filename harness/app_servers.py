"""Real `aifactory-server` processes on free loopback ports, for the server, proof and demo code.

`start_servers(3, redis_url=..., secret=...)` launches the replicas in parallel, waits for /readyz,
and captures each process's stdout+stderr into a log file the tests read (startup lines, warnings).
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from aifactory.auth import mint_token
from harness.ports import free_port

ROOT = Path(__file__).resolve().parents[1]
# Variables a developer's shell might carry that would silently change what a test server does.
_SCRUB = ("REDIS_URL", "REDIS_CHANNEL", "AIFACTORY_AUTH_SECRET", "PORT", "LOG_LEVEL")


def rss_kib(pid: int) -> int:
    """Resident set size of a process in KiB (from /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def new_secret() -> str:
    return secrets.token_urlsafe(48)


def server_command(command: str = "serve") -> list[str]:
    return [sys.executable, "-m", "aifactory.cli", command]


def base_env(workdir: Path) -> dict[str, str]:
    """The parent env minus server settings, plus private paths so nothing touches shared /tmp files."""
    env = {k: v for k, v in os.environ.items() if k not in _SCRUB and not k.startswith("AIFACTORY_")}
    env.update(
        AIFACTORY_HOST="127.0.0.1",
        AIFACTORY_DEV_SECRET_FILE=str(workdir / "dev-secret"),
        PYTHONUNBUFFERED="1",
    )
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def http_json(
    method: str,
    url: str,
    body: Any = None,
    token: str | None = None,
    raw: bytes | None = None,
    timeout: float = 10.0,
) -> tuple[int, Any]:
    """(status, parsed JSON body or text) without raising on 4xx/5xx."""
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            status, payload = resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        status, payload = exc.code, exc.read()
    try:
        return status, json.loads(payload)
    except ValueError:
        return status, payload.decode(errors="replace")


@dataclass
class ServerProc:
    """One `aifactory-server serve` process; `log_path` holds everything it printed."""

    name: str
    env: dict[str, str]
    workdir: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    command: str = "serve"  # or "terminal-host"

    @property
    def log_path(self) -> Path:
        return self.workdir / f"{self.name}.log"

    @property
    def audit_path(self) -> Path:
        return Path(self.env["AIFACTORY_AUDIT_LOG"])

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def ws_url(self, path: str = "/ws/events", token: str | None = None) -> str:
        query = f"?token={quote(token)}" if token is not None else ""
        return f"ws://127.0.0.1:{self.port}{path}{query}"

    def start(self) -> ServerProc:
        self.env["PORT"] = str(self.port)
        self.env.setdefault("AIFACTORY_AUDIT_LOG", str(self.workdir / f"{self.name}-audit.jsonl"))
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                server_command(self.command),
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
                start_new_session=True,
            )
        return self

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def readyz(self) -> tuple[int, Any]:
        return http_json("GET", self.http + "/readyz", timeout=2.0)

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.log_text()}")
            try:
                if self.readyz()[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"{self.name} not ready on port {self.port} after {timeout}s:\n{self.log_text()}")

    def wait_for_log(self, text: str, timeout: float = 20.0, count: int = 1) -> str:
        """Block until `text` appears `count` times in the log; return the log."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            log = self.log_text()
            if log.count(text) >= count:
                return log
            time.sleep(0.05)
        raise TimeoutError(f"{text!r} not in {self.name}'s log after {timeout}s:\n{self.log_text()}")

    def wait_bridge(self, state: str, timeout: float = 30.0) -> None:
        """Block until /readyz reports the Redis bridge in `state` (e.g. 'connected')."""
        deadline = time.monotonic() + timeout
        body: Any = None
        while time.monotonic() < deadline:
            _status, body = self.readyz()
            if isinstance(body, dict) and body.get("bridge") == state:
                return
            time.sleep(0.05)
        raise TimeoutError(f"{self.name} bridge not {state!r} after {timeout}s (last /readyz: {body})")

    def kill(self) -> None:
        """SIGKILL, no goodbye (a crashed pod): its sockets drop without a close frame."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, then SIGKILL if it lingers; returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=timeout)
        return self.proc.returncode


@dataclass
class ServerSet:
    """N replicas sharing one secret (and Redis, if given)."""

    servers: list[ServerProc]
    secret: str

    def __getitem__(self, i: int) -> ServerProc:
        return self.servers[i]

    def __iter__(self) -> Iterator[ServerProc]:
        return iter(self.servers)

    def __len__(self) -> int:
        return len(self.servers)

    def token(self, user: str, org: str = "org-a", role: str = "user", ttl: float = 3600) -> str:
        return mint_token(self.secret, user, org, role, ttl)

    def wait_bridge(self, state: str) -> None:
        """Block until every replica's /readyz reports this bridge state (e.g. "connected")."""
        for server in self.servers:
            server.wait_bridge(state)

    def stop(self) -> None:
        for server in self.servers:
            server.stop()


def start_servers(
    count: int,
    *,
    redis_url: str | None = None,
    secret: str | None = None,
    channel: str | None = None,
    extra_env: Mapping[str, str] | None = None,
    workdir: Path | None = None,
    names: Iterable[str] | None = None,
    wait: bool = True,
    command: str = "serve",
) -> ServerSet:
    """Start `count` servers in parallel and (by default) wait until each answers /readyz."""
    workdir = workdir or Path(tempfile.mkdtemp(prefix="aif-servers-"))
    workdir.mkdir(parents=True, exist_ok=True)
    secret = secret if secret is not None else new_secret()
    prefix = "host" if command == "terminal-host" else "replica"
    names = list(names) if names is not None else [f"{prefix}{i + 1}" for i in range(count)]
    servers = []
    for name in names[:count]:
        env = base_env(workdir)
        env["LOG_LEVEL"] = "INFO"
        if secret:
            env["AIFACTORY_AUTH_SECRET"] = secret
        if redis_url:
            env["REDIS_URL"] = redis_url
        if channel:
            env["REDIS_CHANNEL"] = channel
        env.update(extra_env or {})
        servers.append(ServerProc(name=name, env=env, workdir=workdir, command=command))
    started = ServerSet([s.start() for s in servers], secret)
    try:
        if wait:
            for server in started:
                server.wait_ready()
    except BaseException:
        started.stop()
        raise
    return started


def run_server_once(
    env: Mapping[str, str], timeout: float = 20.0, args: Iterable[str] = ("serve",)
) -> subprocess.CompletedProcess[str]:
    """Run `aifactory-server` to completion (for config errors and `token`); never waits for a healthy one."""
    workdir = Path(tempfile.mkdtemp(prefix="aif-once-"))
    full = base_env(workdir)
    full.update(env)
    return subprocess.run(
        [sys.executable, "-m", "aifactory.cli", *args],
        env=full,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )
