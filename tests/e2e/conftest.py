"""The e2e stacks (module-scoped): Redis + three replicas + HAProxy (`stack`); the same with
AIFACTORY_TERMINALS=host, two terminal hosts and no affinity (`hstack`); and headless Chromium (`browser`)."""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import BrowserContext, sync_playwright

from aifactory.constants import TERMINAL_PATH
from harness.app_servers import ServerProc, ServerSet, new_secret, start_servers
from harness.redis_servers import RedisServer
from tests.conftest import ROOT
from tests.e2e.lb import HAProxy, example_settings


@dataclass
class Stack:
    redis: RedisServer
    replicas: ServerSet
    lb: HAProxy


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    redis = RedisServer().start()
    replicas = None
    lb = None
    try:
        replicas = start_servers(3, redis_url=redis.url, extra_env={"AIFACTORY_TERMINAL_GRACE_SECONDS": "30"})
        replicas.wait_bridge("connected")
        lb = HAProxy([f"127.0.0.1:{s.port}" for s in replicas]).start()
        yield Stack(redis, replicas, lb)
    finally:
        if lb is not None:
            lb.stop()
        if replicas is not None:
            replicas.stop()
        redis.stop()


CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = ROOT / "test-artifacts"


@pytest.fixture
def browser() -> Iterator[BrowserContext]:
    if not Path(CHROMIUM).is_file():  # `make test` installs Debian's chromium (SYSTEM_DEPS)
        raise RuntimeError(f"{CHROMIUM} missing: run the tests through `make test`")
    profile = tempfile.mkdtemp(prefix="aif-chromium-")  # a fresh --user-data-dir every time
    with sync_playwright() as pw:
        ctx = pw.chromium.launch_persistent_context(
            profile,
            executable_path=CHROMIUM,
            headless=True,
            args=FLAGS,
            viewport={"width": 1200, "height": 860},
        )
        try:
            yield ctx
        finally:
            ctx.close()
            shutil.rmtree(profile, ignore_errors=True)


@dataclass
class HostStack:
    redis: RedisServer
    hosts: ServerSet
    replicas: ServerSet
    lb: HAProxy

    def url(self, server: ServerProc | None, term: str, user: str) -> str:
        token = self.replicas.token(user, "org-h")
        base = self.lb.ws if server is None else f"ws://127.0.0.1:{server.port}"
        return f"{base}{TERMINAL_PATH}/{term}?token={token}"


@pytest.fixture(scope="module")
def hstack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HostStack]:
    redis = RedisServer().start()
    secret = new_secret()
    workdir = tmp_path_factory.mktemp("hosts")
    env = {"AIFACTORY_TERMINAL_GRACE_SECONDS": "30", "AIFACTORY_TERMINAL_SHELL": "/bin/sh"}
    hosts = replicas = lb = None
    try:
        hosts = start_servers(
            2, redis_url=redis.url, secret=secret, extra_env=env, workdir=workdir, command="terminal-host"
        )
        replicas = start_servers(
            3, redis_url=redis.url, secret=secret, workdir=workdir, extra_env={"AIFACTORY_TERMINALS": "host"}
        )
        replicas.wait_bridge("connected")
        settings = dataclasses.replace(example_settings(), affinity=False)
        lb = HAProxy([f"127.0.0.1:{s.port}" for s in replicas], settings=settings).start()
        yield HostStack(redis, hosts, replicas, lb)
    finally:
        for part in (lb, replicas, hosts):
            if part is not None:
                part.stop()
        redis.stop()
