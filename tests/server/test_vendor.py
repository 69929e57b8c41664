"""The vendored front-end files are exactly the pinned upstream bytes, with their licences."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
VENDOR = ROOT / "aifactory" / "static" / "vendor"


def test_vendored_files_match_their_pinned_sha256() -> None:
    run = subprocess.run(
        [sys.executable, "scripts/fetch_vendor.py", "--check"], cwd=ROOT, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr


def test_a_changed_vendored_byte_is_caught(tmp_path: Path) -> None:
    xterm = VENDOR / "xterm.js"
    original = xterm.read_bytes()
    try:
        xterm.write_bytes(original + b"\n// tampered\n")
        run = subprocess.run(
            [sys.executable, "scripts/fetch_vendor.py", "--check"], cwd=ROOT, capture_output=True, text=True
        )
    finally:
        xterm.write_bytes(original)
    assert run.returncode == 1
    assert "xterm.js does not match its sha256" in run.stderr


def test_each_vendored_library_ships_its_mit_licence() -> None:
    for name in ("LICENSE.xterm", "LICENSE.addon-fit"):
        assert "Permission is hereby granted, free of charge" in (VENDOR / name).read_text()
