"""podman for the container tests: the same private containers.conf and build code path as `make image`."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

from tests.conftest import ROOT

T = TypeVar("T")
HERE = Path(__file__).resolve().parent


def build_module() -> ModuleType:
    """scripts/image/build.py, imported: the tests build exactly as `make image` does."""
    spec = importlib.util.spec_from_file_location("image_build", ROOT / "scripts" / "image" / "build.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


BUILD = build_module()


def podman(
    *args: str, check: bool = True, input: str | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """One podman call with the project's containers.conf; a failure shows podman's own stderr."""
    result = subprocess.run(
        [*BUILD.engine_cmd("podman"), *args],
        capture_output=True,
        text=True,
        input=input,
        env=BUILD.engine_env(),
        timeout=timeout,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
    return result


def inspect(kind: str, name: str) -> dict[str, Any]:
    return json.loads(podman(kind, "inspect", name).stdout)[0]


def run_in(container: str, *cmd: str, check: bool = False) -> subprocess.CompletedProcess[str]:
    return podman("exec", container, *cmd, check=check)


def build_redis_image() -> str:
    """Debian's redis-server on the project's own base image (no registry), layer-cached after once."""
    tag = f"localhost/aifactory-test-redis:{BUILD.BASE_KEY}"
    if not BUILD.image_exists("podman", tag):
        base = BUILD.ensure_base("podman")
        podman(
            "build", "--network=host", "--from", base, "-t", tag,
            "-f", str(HERE / "redis.Containerfile"), str(HERE),
            timeout=600,
        )  # fmt: skip
    return tag


def wait_until(check: Callable[[], T | None], timeout: float, what: str, interval: float = 0.2) -> T:
    """Poll `check` until it returns something truthy; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
        except Exception as exc:
            last = exc
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last error: {last!r})")
