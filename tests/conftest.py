"""Fixtures shared by every test area: real helm binaries (v3 and v4) and real redis-server processes."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.redis_servers import RedisServer

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "chart"
EXAMPLES = ROOT / "examples"

HELM_BINARIES = {
    "helm4": os.environ.get("AIFACTORY_HELM4", str(ROOT / ".tools/helm4/helm")),
    "helm3": os.environ.get("AIFACTORY_HELM3", str(ROOT / ".tools/helm3/helm")),
}


def _check_helm(path: str) -> str:
    if not Path(path).is_file():  # `make test` fetches them; missing means a broken setup, never a skip
        raise RuntimeError(f"{path} missing: run the tests through `make test` (it fetches helm)")
    return path


@pytest.fixture(params=sorted(HELM_BINARIES), scope="session")
def helm(request: pytest.FixtureRequest) -> str:
    """Path of a real helm binary; every test using it runs once with Helm 3 and once with Helm 4."""
    return _check_helm(HELM_BINARIES[request.param])


@pytest.fixture(scope="session")
def helm4() -> str:
    return _check_helm(HELM_BINARIES["helm4"])


def run_helm(
    helm_bin: str, *args: str, check: bool = False, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run helm with an isolated home so no user config or repo cache leaks into tests; `env` adds
    variables (e.g. KUBECONFIG for a test's fake API server)."""
    extra = env or {}
    env = dict(os.environ)
    cache = ROOT / ".cache" / "helm-home"
    env.update(
        HELM_CACHE_HOME=str(cache / "cache"),
        HELM_CONFIG_HOME=str(cache / "config"),
        HELM_DATA_HOME=str(cache / "data"),
    )
    env.update(extra)
    return subprocess.run([helm_bin, *args], capture_output=True, text=True, env=env, check=check)


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A fresh redis-server on a free loopback port, killed after the test."""
    server = RedisServer().start()
    try:
        yield server
    finally:
        server.stop()
