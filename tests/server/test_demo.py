"""`make demo` end to end: it must pass on a machine where `make` has installed helm and redis-server."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from aifactory.constants import ENABLED_LINE_RE
from harness.ports import wait_for_port
from tests.conftest import ROOT

pytestmark = pytest.mark.timeout(120)


def test_demo_shows_every_scope_crossing_replicas_and_stops_what_it_started() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts/demo.py")], capture_output=True, text=True, timeout=110, cwd=ROOT
    )
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    assert len(ENABLED_LINE_RE.findall(out)) == 3
    assert "REDIS_URL <- Secret aifactory-redis/REDIS_URL: resolved locally to redis://127.0.0.1:" in out
    assert "AIFACTORY_AUTH_SECRET <- Secret" in out and "<generated>" in out
    for line in (
        "broadcast    -> alice, bob, carol  OK",
        "user:bob     -> bob                OK",
        "org:org-b    -> carol              OK",
    ):
        assert line in out
    assert "hello recovered=True replayed=2 -> demo.missed.1, demo.missed.2" in out
    assert "Deployment aifactory-ui: replicas=3" in out and "Deployment aifactory-agents: replicas=HPA" in out
    assert "/api/tasks -> aifactory-agents" in out and "/ws/events -> aifactory-ui" in out
    assert out.rstrip().endswith("== Stopping everything the demo started")
    ports = [int(p) for p in re.findall(r"replica\d \(:(\d+)\)", out)]
    ports.append(int(re.search(r"Start redis-server on 127.0.0.1:(\d+)", out)[1]))
    assert len(ports) == 4
    for port in ports:  # the demo's redis and servers are gone
        with pytest.raises(TimeoutError):
            wait_for_port(port, timeout=0.3)
