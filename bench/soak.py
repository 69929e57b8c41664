"""`make soak`: the faults of tests/e2e/test_faults.py, longer and under heavier load, as a table.

Default server settings (backoff 1 s doubling to the 30 s cap): a 10 s Redis outage (retries at 1, 2,
4, 8 s: the pending step decides the resume time), a 40 s outage that reaches the 30 s cap, one replica
killed and restarted, and a Sentinel master failover. Load: 50 broadcasts/s fired on replica A, 20
sockets each on A and C.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

from harness.app_servers import ServerSet, start_servers
from harness.faults import FaultResult, redis_outage, replica_restart, run_fault, sentinel_failover
from harness.redis_servers import RedisServer, SentinelSetup

LEGEND = """
lost on A: events accepted by A missing on A's own sockets (goal 0). missed A→C: fired during the
outage, never replayed (at-most-once). gaps: separate runs of missed events on C (1 = one outage
window, nothing lost once resumed). interrupted s: first missed event fired → fan-out back on C.
resume s: fault healed → fan-out back on C (0: never interrupted)."""
RESULTS = Path(__file__).resolve().parent / "results" / "soak.json"  # read by bench.report
COLUMNS = [
    ("fault", 24),
    ("fired", 6),
    ("lost on A", 9),
    ("missed A→C", 10),
    ("gaps", 4),
    ("interrupted s", 13),
    ("resume s", 8),
    ("alive", 5),
    ("RSS +KiB", 9),
]


def say(msg: str) -> None:
    print(f"[soak {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def with_single_redis(
    name: str, make_heal: Callable[[RedisServer, ServerSet], Callable[[], float]], **kw: float
) -> FaultResult:
    redis = RedisServer().start()
    servers = start_servers(3, redis_url=redis.url)
    try:
        servers.wait_bridge("connected")
        say(f"{name}: running")
        return asyncio.run(run_fault(name, servers, make_heal(redis, servers), **kw))  # type: ignore[arg-type]
    finally:
        servers.stop()
        redis.stop()


def with_sentinel(name: str, **kw: float) -> FaultResult:
    with SentinelSetup() as sentinel:
        servers = start_servers(3, redis_url=sentinel.url())
        try:
            servers.wait_bridge("connected")
            say(f"{name}: running")
            return asyncio.run(run_fault(name, servers, sentinel_failover(sentinel), **kw))  # type: ignore[arg-type]
        finally:
            servers.stop()


def table(results: list[FaultResult]) -> str:
    head = " | ".join(h.ljust(w) for h, w in COLUMNS)
    lines = [head, "-" * len(head)]
    for r in results:
        row = r.row()
        cells = [
            row["fault"],
            row["fired"],
            row["lost_local"],
            row["missed_cross"],
            row["gaps"],
            row["interrupted_s"],
            "never" if row["resume_s"] is None else f"{row['resume_s']:.2f}",
            "yes" if row["alive"] else "NO",
            row["rss_growth_kib"],
        ]
        lines.append(" | ".join(str(c).ljust(w) for c, (_, w) in zip(cells, COLUMNS, strict=True)))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=50.0, help="broadcasts per second fired on replica A")
    parser.add_argument("--sockets", type=int, default=20, help="sockets on each of A and C")
    parser.add_argument("--after", type=float, default=15.0, help="seconds of load after fan-out resumed")
    args = parser.parse_args(argv)
    kw = {"rate": args.rate, "sockets": args.sockets, "before": 5.0, "after": args.after, "wait_resume": 35.0}
    results = [
        with_single_redis("kill redis 10 s", lambda r, _s: redis_outage(r, 10.0), **kw),
        with_single_redis("kill redis 40 s (30 s cap)", lambda r, _s: redis_outage(r, 40.0), **kw),
        with_single_redis("kill replica B 5 s", lambda _r, s: replica_restart(s, 1, 5.0), **kw),
        with_sentinel("sentinel failover", **kw),
    ]
    print()
    print(table(results))
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "when": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
                "command": "make soak (python -m bench.soak "
                + " ".join(argv if argv is not None else sys.argv[1:])
                + ")",
                "load": f"{args.rate:g} broadcasts/s fired on replica A, {args.sockets} sockets on A and C",
                "rows": [r.row() for r in results],
            },
            indent=1,
        )
    )
    print(LEGEND)
    ok = all(r.lost_local == 0 and r.resume_s is not None and r.gaps <= 1 and all(r.alive) for r in results)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
