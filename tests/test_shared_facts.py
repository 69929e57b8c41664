"""The facts in `aifactory.constants` say what the operator documentation promises, word for word, and
the release version is one number everywhere it is written.

Every other test imports these constants, so this is the one place their user-visible text is pinned:
the startup lines operators grep for, the default channel, the socket paths and the close codes.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import yaml

import aifactory
from aifactory import constants

ROOT = Path(__file__).resolve().parent.parent


def test_one_version_in_pyproject_package_and_chart() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    chart = yaml.safe_load((ROOT / "chart/Chart.yaml").read_text())
    assert constants.VERSION == aifactory.__version__ == pyproject
    assert (chart["version"], chart["appVersion"]) == (pyproject, pyproject), "bump chart/Chart.yaml too"


def test_startup_lines_are_the_documented_ones() -> None:
    assert constants.DISABLED_LINE == "Redis pub/sub disabled (REDIS_URL unset) — in-process broadcasts only"
    uuid = "0b6f5c1e-1111-4a7e-9a57-6f1f4c1b0001"
    line = constants.ENABLED_LINE % (uuid, "aifactory:events")
    assert line == f"Redis pub/sub enabled — replica {uuid} on channel 'aifactory:events'"
    match = constants.ENABLED_LINE_RE.search(f"2026-01-01 INFO aifactory.bus: {line}\n")
    assert match is not None and match.groups() == (uuid, "aifactory:events")
    assert constants.ENABLED_LINE_RE.search(constants.DISABLED_LINE) is None


def test_channel_id_limit_paths_and_close_codes() -> None:
    assert constants.DEFAULT_CHANNEL == "aifactory:events"
    assert constants.MAX_ID_LEN == 256
    assert (constants.EVENTS_PATH, constants.TERMINAL_PATH) == ("/ws/events", "/ws/terminal")
    codes = (
        constants.WS_NORMAL,
        constants.WS_GOING_AWAY,
        constants.WS_POLICY_VIOLATION,
        constants.WS_INTERNAL_ERROR,
        constants.WS_TRY_AGAIN_LATER,
        constants.WS_TAKEN_OVER,
    )
    assert codes == (1000, 1001, 1008, 1011, 1013, 4409)
