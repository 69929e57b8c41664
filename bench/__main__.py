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

from bench import cross_replica, fanout, signing
from bench.floor import raw_round_trip, redis_benchmark_publish
from bench.profile import profile_phase
from bench.report import plot_latency, write_markdown
from harness.redis_servers import RedisServer

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
    out[:0] = goal_check(res.get("cross_replica") or [], res["floor"])
    unsaturated = [a for a, _ in pairs if a["p99"] <= fanout.P99_LIMIT_MS]
    ratios = [a["p50"] / floor[a["rate"]]["p50"] for a in unsaturated if floor.get(a["rate"], {}).get("p50")]
    out.insert(
        len(out) - len(pairs),
        f"Under fan-out load (HTTP POST on A → 30 of 90 sockets on C, one load-client process reading all"
        f" 90): aifactory-server's p99 is below python-socketio's at {ahead} of {len(pairs)} rates"
        + (
            f"; its p50 there is {min(ratios):.0f}-{max(ratios):.0f}x the single-process raw Redis round trip"
            f" at the rates where its p99 stays under {fanout.P99_LIMIT_MS:.0f} ms: that path adds an HTTP"
            " request, and every C socket's frame waits behind the other sockets' frames in the server and"
            " in the one load client (see Method)."
            if ratios
            else "."
        ),
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
    if res.get("signing"):
        out.append(signing.summary_line(res["signing"]))
    mem = [r for r in res["clients"] if r.get("kib_per_socket") is not None and r["clients"] >= 1000]
    for r in mem:
        out.append(
            f"{fanout_name(r['kind'])}: {r['kib_per_socket']:.1f} KiB RSS per connected socket "
            f"({r['clients']:,} sockets over 3 replicas)."
        )
    return out


def goal_check(rows: list[dict[str, Any]], floor: list[dict[str, Any]]) -> list[str]:
    """The issue's latency goal, from the like-for-like cross-replica section: within 2x of raw redis-py.
    Also says how the product path compares with the single-process round trip, the stricter floor."""
    q = cross_replica.ratios(rows)
    out = []
    paths = {
        "replica": "replica path (`broadcast_event` on a real replica A, as task code fires events → "
        "WebSocket client of replica C)",
        "bridge": "bridge alone (`broadcast_event` on A → local subscriber on C, no WebSocket)",
    }
    for kind, path in paths.items():
        mine = [r for r in q if r["kind"] == kind]
        if not mine:
            continue
        p50s, p99s = [r["p50_ratio"] for r in mine], [r["p99_ratio"] for r in mine]
        met50, met99 = sum(1 for x in p50s if x <= 2.0), sum(1 for x in p99s if x <= 2.0)
        out.append(
            f"Goal check, {path}: p50 {min(p50s):.2f}-{max(p50s):.2f}x and p99 {min(p99s):.2f}-"
            f"{max(p99s):.2f}x raw `redis.asyncio` publish → subscribe across two processes (same run, same"
            f" Redis); within 2x on p50 at {met50} of {len(mine)} rates, on p99 at {met99} of {len(mine)}."
        )
    relay = [r for r in q if r["kind"] == "relay"]
    by = {(r["kind"], r["rate"]): r for r in rows}
    vs_relay = [
        by[("replica", r["rate"])]["p50"] / by[("relay", r["rate"])]["p50"]
        for r in relay
        if ("replica", r["rate"]) in by
    ]
    if relay and vs_relay:
        out.append(
            f"The extra WebSocket hop alone: a bare relay (raw subscriber on C passing each message to a bare"
            f" `websockets` server's client) is p50 {min(r['p50_ratio'] for r in relay):.2f}-"
            f"{max(r['p50_ratio'] for r in relay):.2f}x and p99 {min(r['p99_ratio'] for r in relay):.2f}-"
            f"{max(r['p99_ratio'] for r in relay):.2f}x raw; the replica path's p50 is "
            f"{min(vs_relay):.2f}-{max(vs_relay):.2f}x the bare relay's."
        )
    one_proc = {r["rate"]: r["p50"] for r in floor if r.get("p50")}
    replica = [r for r in rows if r["kind"] == "replica" and r["rate"] in one_proc]
    if replica:
        vs = [r["p50"] / one_proc[r["rate"]] for r in replica]
        out.append(
            f"Against the single-process round trip (*Floor*: publisher and subscriber in one process, so no "
            f"cross-process wake-up at all), the replica path's p50 is {min(vs):.1f}-{max(vs):.1f}x; the 2x"
            " goal is judged against the raw path of the same shape as replica A → replica C (two processes)."
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
    say("envelope signing cost per event (bench.signing)")
    res["signing"] = signing.measure(args.size)
    say(signing.summary_line(res["signing"]))
    with RedisServer() as redis:
        say(f"redis-server on 127.0.0.1:{redis.port}")
        say("floor: raw redis.asyncio round trip")
        res["floor"] = [
            {"kind": "redis", "rate": r, **asyncio.run(raw_round_trip(redis.url, r, dur, args.size))}
            for r in rates
        ]
        say(f"cross-replica latency vs raw redis-py ({', '.join(cross_replica.KINDS)}; kinds alternating)")
        res["cross_replica"] = cross_replica.measure(redis.url, rates, dur / 2, args.size)
        cross_replica.print_table(res["cross_replica"])
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
        plot_latency(res["rates"], res["floor"], png, res.get("cross_replica"))
        write_markdown(res, args.out, png)
        say(f"re-rendered {args.out} and {png} from {args.from_json}")
        return 0
    res = run(args)
    png = args.out.parent / "benchmark-latency.png"
    plot_latency(res["rates"], res["floor"], png, res.get("cross_replica"))
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
