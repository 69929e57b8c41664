"""A real HAProxy process in front of real replicas, configured by deploy.haproxy from chart values."""

from __future__ import annotations

import shutil
import signal
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
    """`haproxy -db` on a free loopback port; `stop()` ends only this process."""

    servers: list[str]
    settings: LbSettings = field(default_factory=example_settings)
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="aif-haproxy-")))

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
        cfg.write_text(
            render(self.settings, self.servers, bind=f"127.0.0.1:{self.port}", served_by_header=SERVED_BY)
        )
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

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
