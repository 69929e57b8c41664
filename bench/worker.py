"""A benchmark helper process spoken to by lines on stdin/stdout (`READY`, commands, `QUIT`).

Load clients and bridge workers run in their own processes so they never share an event loop or a GIL with
what they measure; this is the one place that starts, talks to and stops them.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


class LineWorker:
    """`python -m <module> <args>` from the repo root, with line-buffered text pipes."""

    def __init__(
        self,
        module: str,
        *args: str,
        quit_timeout: float = 15.0,
        env: Mapping[str, str] | None = None,
    ) -> None:
        """`env` replaces the inherited environment (default: this process's)."""
        base = dict(os.environ if env is None else env)
        pythonpath = os.pathsep.join(filter(None, [str(ROOT), base.get("PYTHONPATH")]))
        self.quit_timeout = quit_timeout
        self.proc = subprocess.Popen(
            [sys.executable, "-m", module, *args],
            cwd=ROOT,
            env=dict(base, PYTHONPATH=pythonpath),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def ask(self, command: str | None) -> str:
        """Send one command line (or none) and return the next line the worker prints."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        if command is not None:
            self.proc.stdin.write(command + "\n")
            self.proc.stdin.flush()
        return self.proc.stdout.readline().strip()

    def close(self) -> None:
        """Ask the worker to QUIT; kill it if it does not within `quit_timeout`."""
        if self.proc.poll() is None:
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.write("QUIT\n")
                self.proc.stdin.flush()
                self.proc.wait(timeout=self.quit_timeout)
            except (BrokenPipeError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
