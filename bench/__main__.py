"""`make bench`: aifactory-server against Node socket.io, python-socketio and two bare relays (fan-out
CPU, sustained rate, p99 ladder, RSS per socket), cross-replica latency against raw redis-py, a py-spy
profile, and the validator's cold start.

All load stays on 127.0.0.1 against a private redis-server on a free port, bounded in count and time.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import io
import json
import os
import platform
import resource
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench import cross_replica, fanout, signing
from bench.procs import KINDS
from bench.profile import profile_phase
from bench.report import plot, write_markdown
from harness.redis_servers import RedisServer

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
PROFILE_BEFORE = ROOT / "bench" / "profile-before.json"  # the ASGI-path profile, kept for the report


def machine() -> dict[str, Any]:
    cpu = next(
        (
            ln.split(":", 1)[1].strip()
            for ln in Path("/proc/cpuinfo").read_text().splitlines()
            if "model name" in ln
        ),
        "unknown CPU",
    )
    mem_kib = int(Path("/proc/meminfo").read_text().split()[1])
    redis_v = subprocess.run(["redis-server", "--version"], capture_output=True, text=True).stdout.split()
    node_v = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
    return {
        "cpus": os.cpu_count(),
        "cpu": cpu,
        "mem_gib": round(mem_kib / 1024 / 1024, 1),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "node": node_v,
        "redis": next((w.split("=")[1] for w in redis_v if w.startswith("v=")), "?"),
        "loadavg": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


def say(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def run(args: argparse.Namespace) -> dict[str, Any]:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # children inherit it
    kinds = tuple(args.kinds)
    res: dict[str, Any] = {
        "command": shlex.join(["python", "-m", "bench", *(args.argv or [])]),
        "machine": machine(),
        "when": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "kinds": kinds,
        "clients": args.clients,
        "rounds": args.rounds,
        "duration": args.duration,
    }
    say("envelope signing cost per event (bench.signing)")
    res["signing"] = signing.measure(256)
    say(signing.summary_line(res["signing"]))
    with RedisServer() as redis:
        say(f"redis-server on 127.0.0.1:{redis.port}")
        if "cross" in args.parts:
            say(f"cross-replica latency vs raw redis-py ({', '.join(cross_replica.KINDS)}; alternating)")
            res["cross_replica"] = cross_replica.measure(redis.url, [50, 200, 500], args.duration / 2, 256)
            cross_replica.print_table(res["cross_replica"])
        if "ladder" in args.parts:
            say(
                f"fan-out ladder {args.rates} ev/s × {args.clients} sockets, {args.rounds} rounds interleaved"
            )
            benches = fanout.start_all(kinds, 3, args.clients, redis.url)
            try:
                res["ladder"] = [
                    r.row() for r in fanout.ladder(benches, args.rates, args.duration, args.rounds, say)
                ]
                if "profile" in args.parts and "aifactory" in benches:
                    say("py-spy on aifactory replicas A and C (100 events/s)")
                    _run, prof = profile_phase(benches["aifactory"], 100, max(args.duration, 5))
                    res["profile"] = {"rate": 100, "clients": args.clients, "replicas": prof}
            finally:
                fanout.close_all(benches)
        if "memory" in args.parts:
            say(f"RSS per socket ({args.memory_clients} sockets, one kind at a time)")
            res["memory"] = [r.row() for r in fanout.memory(kinds, redis.url, args.memory_clients, 2)]
    soak = RESULTS / "soak.json"
    res["soak"] = json.loads(soak.read_text()) if soak.exists() else None
    if "cold" in args.parts:
        res["cold_start"] = cold_start()
    return res


def cold_start() -> list[str]:
    """The validator engineer's cold-start benchmark (bench/cold_start.py) runs in the same `make bench`."""
    say("validator cold start (bench.cold_start)")
    from bench import cold_start as cs

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = cs.main([])
    print(buf.getvalue(), end="", flush=True)
    head = "Output of `bench.cold_start.main()` in the same run" + ("" if rc == 0 else f" (exit {rc})") + ":"
    return [head, "", "```", *buf.getvalue().rstrip().splitlines(), "```"]


def render(res: dict[str, Any], out: Path) -> None:
    if PROFILE_BEFORE.exists():
        res["profile_before"] = json.loads(PROFILE_BEFORE.read_text())
    png = out.parent / "benchmark-latency.png"
    plot(res, png)
    write_markdown(res, out, png)
    say(f"wrote {out} and {png}")


PARTS = ("cross", "ladder", "profile", "memory", "cold")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=4.0, help="seconds of firing per phase")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds per ladder rate")
    parser.add_argument("--clients", type=int, default=300, help="sockets per kind (on replicas B and C)")
    parser.add_argument("--memory-clients", type=int, default=1000)
    parser.add_argument("--rates", type=float, nargs="+", default=[10, 25, 50, 100, 200, 400])
    parser.add_argument("--kinds", nargs="+", choices=KINDS, default=list(KINDS))
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks.md")
    parser.add_argument("--from-json", type=Path, help="re-render the report from a saved results file")
    args = parser.parse_args(argv)
    args.argv = sys.argv[1:] if argv is None else argv
    if args.from_json:
        render(json.loads(args.from_json.read_text()), args.out)
        return 0
    started = time.monotonic()
    res = run(args)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "latest.json").write_text(json.dumps(res, indent=1))
    render(res, args.out)
    say(f"done in {time.monotonic() - started:.0f}s; results in {RESULTS / 'latest.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
