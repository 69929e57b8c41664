"""The Dockerfile parses into the instructions the chart relies on (fast; tests/image builds and runs it)."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys

import yaml

from tests.conftest import CHART, ROOT


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    result = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            result.append((keyword.upper(), " ".join(rest.split())))
    return result


def test_dockerfile_builds_a_slim_non_root_server_image() -> None:
    steps = instructions()
    kind, base = steps[0]
    assert kind == "FROM" and re.fullmatch(r"python:3\.12\.\d+-slim-bookworm", base), (
        "a pinned python:3.12-slim"
    )
    by_kind: dict[str, list[str]] = {}
    for kind, args in steps:
        by_kind.setdefault(kind, []).append(args)
    assert by_kind["USER"][-1] == "10001:10001", "non-root, matching the chart's runAsUser"
    assert by_kind["EXPOSE"] == ["8000"]
    assert json.loads(by_kind["CMD"][-1]) == ["aifactory-server"]
    assert any('pip install --no-cache-dir ".[server]"' in run for run in by_kind["RUN"])
    assert any("bubblewrap" in run and "tini" in run for run in by_kind["RUN"]), "PID 1 and the shell sandbox"
    labels = " ".join(by_kind["LABEL"])
    for key in ("source", "version", "licenses"):
        assert f"org.opencontainers.image.{key}=" in labels
    env = " ".join(by_kind["ENV"])
    assert "HOME=/tmp" in env, "writes only /tmp: read-only root works"
    assert "AIFACTORY_AUDIT_LOG" not in env, "audit defaults to stdout"
    assert any("bubblewrap" in run for run in by_kind["RUN"]), "terminal shells need their sandbox"


def test_every_copied_path_exists_and_is_in_the_build_context() -> None:
    allowed = {
        line[1:].rstrip("/")
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.startswith("!")
    }
    for kind, args in instructions():
        if kind == "COPY":
            *sources, _dest = shlex.split(args)
            for source in sources:
                assert (ROOT / source).exists(), source
                assert source in allowed, f"{source} is excluded by .dockerignore"


def test_server_version_is_the_charts_app_version() -> None:
    """`aifactory-server --version` (what the image reports) equals Chart.yaml's appVersion."""
    app_version = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]
    out = subprocess.run(
        [sys.executable, "-m", "aifactory", "--version"], capture_output=True, text=True, check=True
    ).stdout
    assert out.split() == ["aifactory-server", app_version]
