"""`make bench`: Redis floor, bridge alone vs raw redis-py, aifactory-server vs python-socketio, profile,
validator cold start.

Short by default (a few minutes); `--full` adds 5,000 sockets and higher rates. All load stays on
127.0.0.1 against a private redis-server on a free port, bounded in count and time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import io
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench import bridge_latency, fanout
from bench.floor import raw_round_trip, redis_benchmark_publish
from bench.profile import profile_phase
from bench.report import plot_latency, write_markdown
from tests.support.redis_procs import RedisServer

ROOT = Path(__file__).resolve().parent.parent
KINDS = ("aifactory", "socketio")


def machine() -> dict[str, Any]:
    cpu = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem_kib = int(Path("/proc/meminfo").read_text().split()[1])
    redis_v = subprocess.run(["redis-server", "--version"], capture_output=True, text=True).stdout.split()
    return {
        "cpus": os.cpu_count(),
        "cpu": cpu,
        "mem_gib": round(mem_kib / 1024 / 1024, 1),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "redis": next((w.split("=")[1] for w in redis_v if w.startswith("v=")), "?"),
        "loadavg": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


def raise_nofile() -> None:
    """5,000 sockets need more than the common 1,024 descriptors; children inherit the raised limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def say(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def summary(res: dict[str, Any]) -> list[str]:
    out = []
    by = {(r["kind"], r["rate"]): r for r in res["rates"]}
    floor = {r["rate"]: r for r in res["floor"]}
    for rate in sorted({r["rate"] for r in res["rates"]}):
        a, s = by.get(("aifactory", rate)), by.get(("socketio", rate))
        if a and s:
            verdict = "ahead" if a["p99"] < s["p99"] else "behind"
            f = floor.get(rate)
            ratio = f" ({a['p50'] / f['p50']:.0f}x the raw Redis p50)" if f and f["p50"] else ""
            out.append(
                f"{rate:g} events/s: aifactory p50/p99 {a['p50']:.1f}/{a['p99']:.1f} ms vs python-socketio "
                f"{s['p50']:.1f}/{s['p99']:.1f} ms — {verdict} on p99{ratio}."
            )
    pairs = [
        (by[("aifactory", r)], by[("socketio", r)])
        for r in sorted({r["rate"] for r in res["rates"]})
        if ("aifactory", r) in by and ("socketio", r) in by
    ]
    ahead = sum(1 for a, s in pairs if a["p99"] < s["p99"])
    ratios = [a["p50"] / floor[a["rate"]]["p50"] for a, _ in pairs if floor.get(a["rate"], {}).get("p50")]
    out.insert(
        0,
        f"Goal check, end to end: aifactory-server's p99 is below python-socketio's at {ahead} of "
        f"{len(pairs)} rates; its p50 (HTTP POST on A → WebSocket client on C) is "
        f"{min(ratios):.0f}-{max(ratios):.0f}x the single-process raw Redis round trip — 2x not met on "
        "that path, which adds an HTTP request, a second process and a WebSocket hop (see Method).",
    )
    alone = bridge_latency.ratios(res.get("bridge_alone") or [])
    if alone:
        p50s, p99s = [q["p50_ratio"] for q in alone], [q["p99_ratio"] for q in alone]
        added = [q["added_p50_ms"] for q in alone]
        met50, met99 = sum(1 for r in p50s if r <= 2.0), sum(1 for r in p99s if r <= 2.0)
        verdict = "met" if met50 == met99 == len(alone) else "not fully met"
        out.insert(
            1,
            f"Goal check, bridge alone (`broadcast_event` on A → local subscriber on C, two processes, "
            f"vs raw redis.asyncio publish → subscribe in the same two-process shape): p50 "
            f"{min(p50s):.2f}-{max(p50s):.2f}x raw redis-py ({min(added) * 1000:+.0f} to "
            f"{max(added) * 1000:+.0f} µs), p99 {min(p99s):.2f}-{max(p99s):.2f}x — within 2x on p50 at "
            f"{met50} of {len(alone)} rates and on p99 at {met99} of {len(alone)}: the 2x goal is "
            f"{verdict} for the part our code controls.",
        )
    for kind in KINDS:
        best = res["sustained_best"].get(kind)
        if best:
            out.append(
                f"{fanout_name(kind)}: sustained {best['deliveries_per_s']:,.0f} deliveries/s "
                f"({best['rate']:g} events/s × {best['clients']} sockets) with p99 {best['p99']:.1f} ms."
            )
        else:
            out.append(f"{fanout_name(kind)}: p99 above 100 ms already at the lowest sustained step.")
    mem = [r for r in res["clients"] if r.get("kib_per_socket") is not None and r["clients"] >= 1000]
    for r in mem:
        out.append(
            f"{fanout_name(r['kind'])}: {r['kib_per_socket']:.1f} KiB RSS per connected socket "
            f"({r['clients']:,} sockets over 3 replicas)."
        )
    return out


def fanout_name(kind: str) -> str:
    return {"aifactory": "aifactory-server", "socketio": "python-socketio"}[kind]


def run(args: argparse.Namespace) -> dict[str, Any]:
    raise_nofile()
    res: dict[str, Any] = {
        "full": args.full,
        "size": args.size,
        "machine": machine(),
        "when": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }
    rates = [50, 100, 200, 400, 800] if args.full else [50, 200, 500]
    client_counts = [100, 1000, 5000] if args.full else [100, 1000]
    dur = args.duration
    with RedisServer() as redis:
        say(f"redis-server on 127.0.0.1:{redis.port}")
        say("floor: raw redis.asyncio round trip")
        res["floor"] = [
            {"kind": "redis", "rate": r, **asyncio.run(raw_round_trip(redis.url, r, dur, args.size))}
            for r in rates
        ]
        say("bridge alone vs raw redis-py (two processes each, kinds alternating)")
        res["bridge_alone"] = bridge_latency.measure(redis.url, rates, dur / 2, args.size, rounds=4)
        bridge_latency.print_table(res["bridge_alone"])
        say("floor: redis-benchmark PUBLISH")
        res["redis_benchmark"] = redis_benchmark_publish(redis.port, args.size)
        say(f"latency at rates {rates} (90 sockets, 3 replicas), kinds interleaved")
        res["rates"] = [r.row() for r in fanout.latency_at_rates(KINDS, redis.url, rates, 90, dur, args.size)]
        say("sustained throughput (300 sockets, doubling rate)")
        best, steps = fanout.sustained(KINDS, redis.url, 300, dur, args.size, 25, 3200 if args.full else 800)
        res["sustained"] = [r.row() for r in steps]
        res["sustained_best"] = {k: (r.row() if r else None) for k, r in best.items()}
        say(f"scaling sockets {client_counts} (5 broadcasts/s to every socket)")
        res["clients"] = [
            r.row() for r in fanout.scaling_clients(KINDS, redis.url, client_counts, 5, dur, args.size)
        ]
        say("scaling replicas 1 → 3 (300 sockets, 30 events/s)")
        res["replicas"] = [
            r.row() for r in fanout.scaling_replicas(KINDS, redis.url, [1, 3], 300, 30, dur, args.size)
        ]
        say("profile: py-spy on aifactory replicas A and C (300 sockets, 100 events/s)")
        b = fanout.Bench("aifactory", 3, 300, redis.url, args.size)
        try:
            prun, prof = profile_phase(b, 100, max(dur, 5))
        finally:
            b.close()
        res["profile"] = {"rate": 100, "clients": 300, "deliveries": prun.deliveries_per_s, "replicas": prof}
    res["summary"] = summary(res)
    soak = ROOT / "bench" / "results" / "soak.json"
    res["soak"] = json.loads(soak.read_text()) if soak.exists() else None
    res["cold_start"] = cold_start()
    return res


def cold_start() -> list[str]:
    """The validator engineer's cold-start benchmark (bench/cold_start.py) runs in the same `make bench`."""
    say("validator cold start (bench.cold_start)")
    try:
        from bench import cold_start as cs
    except ModuleNotFoundError as exc:
        if exc.name != "bench.cold_start":
            raise
        return ["bench/cold_start.py is not present in this checkout; nothing measured."]
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = cs.main([])
    print(buf.getvalue(), end="", flush=True)
    return [
        "Output of `bench.cold_start.main()` in the same run" + ("" if rc == 0 else f" (exit {rc})") + ":",
        "",
        "```",
        *buf.getvalue().rstrip().splitlines(),
        "```",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--full", action="store_true", help="add 5,000 sockets and higher rates (tens of minutes)"
    )
    parser.add_argument("--duration", type=float, default=5.0, help="seconds of firing per load phase")
    parser.add_argument("--size", type=int, default=256, help="event size in bytes")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks.md")
    parser.add_argument("--from-json", type=Path, help="re-render the report from a saved results file")
    args = parser.parse_args(argv)
    started = time.monotonic()
    if args.from_json:
        res = json.loads(args.from_json.read_text())
        res["summary"] = summary(res)
        png = args.out.parent / "benchmark-latency.png"
        plot_latency(res["rates"], res["floor"], png, res.get("bridge_alone"))
        write_markdown(res, args.out, png)
        say(f"re-rendered {args.out} and {png} from {args.from_json}")
        return 0
    res = run(args)
    png = args.out.parent / "benchmark-latency.png"
    plot_latency(res["rates"], res["floor"], png, res.get("bridge_alone"))
    write_markdown(res, args.out, png)
    results = ROOT / "bench" / "results"
    results.mkdir(exist_ok=True)
    (results / "latest.json").write_text(json.dumps(res, indent=1))
    for line in res["summary"]:
        say(line)
    say(f"wrote {args.out} and {png} in {time.monotonic() - started:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
