"""A real HAProxy process in front of real replicas, configured by deploy.haproxy from chart values."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from deploy.haproxy import LbSettings, lb_settings, load_values, render
from harness.ports import free_port, wait_for_port
from tests.conftest import EXAMPLES

SERVED_BY = "X-Served-By"  # debug header naming the HAProxy server (r1..rN) that answered
# The shipped production example, minus TLS: HAProxy here speaks plain HTTP on loopback, so the only
# difference from production is the cookie's Secure flag.
TEST_OVERRIDE = "ingress:\n  tls: []\n"


def example_settings() -> LbSettings:
    workdir = Path(tempfile.mkdtemp(prefix="aif-lb-values-"))
    override = workdir / "no-tls.yaml"
    override.write_text(TEST_OVERRIDE)
    return lb_settings(load_values([EXAMPLES / "production.yaml", override]))


@dataclass
class HAProxy:
    """`haproxy -db` on a free loopback port; `stop()` ends only this process.

    `admin_socket=True` opens HAProxy's runtime API, so a test can take servers in and out of rotation the
    way a Kubernetes ingress follows Endpoints (`set_serving`), instead of waiting for health checks.
    """

    servers: list[str]
    settings: LbSettings = field(default_factory=example_settings)
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="aif-haproxy-")))
    admin_socket: bool = False

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / "haproxy.log"

    def start(self) -> HAProxy:
        binary = shutil.which("haproxy")
        if binary is None:  # `make test` installs it (SYSTEM_DEPS); missing means a broken setup
            raise RuntimeError("haproxy not found: run the tests through `make test`")
        cfg = self.workdir / "haproxy.cfg"
        text = render(self.settings, self.servers, bind=f"127.0.0.1:{self.port}", served_by_header=SERVED_BY)
        if self.admin_socket:
            text = text.replace("global\n", f"global\n    stats socket {self.socket_path} level admin\n", 1)
        cfg.write_text(text)
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [binary, "-db", "-f", str(cfg)], stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        try:
            wait_for_port(self.port, timeout=10)
        except TimeoutError:
            self.stop()
            raise RuntimeError(f"haproxy did not start:\n{self.log_path.read_text()}") from None
        return self

    @property
    def socket_path(self) -> Path:
        return self.workdir / "admin.sock"

    def command(self, line: str) -> str:
        """One runtime API command (needs admin_socket=True); HAProxy's answer."""
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(5)
            sock.connect(str(self.socket_path))
            sock.sendall(line.encode() + b"\n")
            return b"".join(iter(lambda: sock.recv(65536), b"")).decode()

    def set_serving(self, serving: set[str]) -> None:
        """Route only to the servers (host:port) in `serving`; the rest go to maintenance (both backends)."""
        for i, server in enumerate(self.servers, start=1):
            state = "ready" if server in serving else "maint"
            for backend in ("balanced", "terminal"):
                answer = self.command(f"set server {backend}/r{i} state {state}")
                assert answer.strip() == "", answer

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
