"""Where the time goes: py-spy samples of replica A (fires) and C (receives) during one load phase."""

from __future__ import annotations

import collections
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.fanout import Bench, Run

RATE_HZ = 200
_FRAME = re.compile(r"^(?P<func>.+?) \((?P<file>[^:]+)(?::\d+)?\)$")


def _short(frame: str) -> str:
    m = _FRAME.match(frame)
    if not m:
        return frame
    path = m.group("file")
    parts = Path(path).parts
    for anchor in ("site-packages", "python3.11", "python3.12", "python3.13", "main"):
        if anchor in parts:
            path = "/".join(parts[parts.index(anchor) + 1 :])
            break
    return f"{m.group('func')} ({path})"


def summarize_raw(text: str, duration: float, top: int = 12) -> dict[str, Any]:
    """Self time per leaf function and inclusive time per aifactory function, as % of wall time."""
    self_t: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    total = 0
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [_short(f) for f in stack.split(";")]
        total += n
        self_t[frames[-1]] += n
        for f in set(frames):
            if "aifactory/" in f and "aifactory/cli.py" not in f:  # cli.py frames are the whole process
                incl[f] += n
    wall = RATE_HZ * duration
    return {
        "busy_pct": round(100 * total / wall, 1),
        "self": [(f, round(100 * n / wall, 1)) for f, n in self_t.most_common(top)],
        "inclusive": [(f, round(100 * n / wall, 1)) for f, n in incl.most_common(top)],
    }


def profile_phase(bench: Bench, rate: float, duration: float) -> tuple[Run, dict[str, Any]]:
    """Run one phase while py-spy samples replica A and the last replica; returns the run + summaries."""
    spy = shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))
    if spy is None:
        raise RuntimeError("py-spy not found: it comes with the bench extra (pip install -e '.[bench]')")
    outdir = Path(tempfile.mkdtemp(prefix="aif-prof-"))
    targets = {"A (fires)": bench.reps.pids[0], "C (receives)": bench.reps.pids[-1]}
    procs = {}
    for label, pid in targets.items():
        out = outdir / f"{pid}.txt"
        cmd = [
            spy,
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(int(duration)),
            "--rate",
            str(RATE_HZ),
            "--format",
            "raw",
            "--nonblocking",
            "-o",
            str(out),
        ]
        procs[label] = (subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL), out)
    run = bench.phase(rate, duration)  # py-spy samples both replicas meanwhile
    summaries = {}
    for label, (proc, out) in procs.items():
        proc.wait(timeout=60)
        summaries[label] = summarize_raw(out.read_text() if out.exists() else "", duration)
    return run, summaries
