"""Fan-out scenarios, run identically against every server kind on the same Redis.

Three replicas per kind; events are broadcasts fired by HTTP POST on replica A (index 0); the sockets sit
on the receiving replicas (B and C), each read by its own load-client process so the driver is never the
bottleneck. A phase measures latency, loss and duplicates on every socket, and the CPU time the receiving
replicas and the load clients spent, per delivered frame. All kinds stay up at once and every round runs
each kind back to back (in a rotating order), so background load on the shared machine hits all alike.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

from bench.firing import fire_at_rate
from bench.procs import LoadClient, Replicas, cpu_seconds
from bench.stats import summarize
from harness.app_servers import rss_kib

DRAIN_SECONDS = 1.0
P99_LIMIT_MS = 100.0  # "sustained": the highest rate whose median p99 stays under this with 0 lost
SATURATED_MS = 1000.0  # a kind leaves the ladder after a rate with a median p99 above this, or a loss


@dataclass
class Run:
    """One load phase of one kind: what was offered, what the receiving sockets saw, what it cost."""

    kind: str
    clients: int
    rate: float
    round: int
    sent: int
    failed: int
    received: int
    dups: int
    late: int  # frames that arrived after a later event on the same socket
    lost: int
    latency: dict[str, float]
    server_us: float  # receiving replicas' CPU per delivered frame
    driver_us: float  # load clients' CPU per delivered frame
    extra: dict[str, Any] = field(default_factory=dict)

    def row(self) -> dict[str, Any]:
        out = {k: v for k, v in vars(self).items() if k not in ("latency", "extra")}
        return {**out, "deliveries_per_s": self.rate * self.clients, **self.latency, **self.extra}


class Bench:
    """Replicas of one kind + one load client per receiving replica; `phase()` fires and measures."""

    def __init__(self, kind: str, replicas: int, clients: int, redis_url: str) -> None:
        self.kind, self.clients = kind, clients
        self.reps = Replicas(kind, replicas, redis_url, f"bench:{kind}:{time.monotonic_ns()}").start()
        self.receivers = list(range(1, replicas)) or [0]
        recv_pids = [self.reps.pids[i] for i in self.receivers]
        rss_before = [rss_kib(pid) for pid in recv_pids]
        per = [clients // len(self.receivers) + (i < clients % len(self.receivers)) for i in self.receivers]
        self.loaders: list[LoadClient] = []
        try:
            for i, n in zip(self.receivers, per, strict=True):
                url = self.reps.ws_url(i, f"user{i}")
                self.loaders.append(LoadClient([{"url": url, "proto": _proto(kind), "count": n}]))
        except BaseException:
            self.close()
            raise
        time.sleep(0.5)
        grown = sum(rss_kib(pid) for pid in recv_pids) - sum(rss_before)
        self.kib_per_socket = grown / max(1, clients)

    def _cpu(self) -> tuple[float, float]:
        server = sum(cpu_seconds(self.reps.pids[i]) for i in self.receivers)
        return server, sum(cpu_seconds(lc.pid) for lc in self.loaders)

    def phase(self, rate: float, duration: float, rnd: int = 0) -> Run:
        name = f"{rate:g}@{time.monotonic_ns()}"
        s0, d0 = self._cpu()
        url, headers = self.reps.fire_url(0), self.reps.fire_headers()
        counts = asyncio.run(fire_at_rate(url, self.reps.fire_body, rate, duration, name, 256, headers))
        time.sleep(DRAIN_SECONDS)
        dumps = [lc.dump() for lc in self.loaders]
        s1, d1 = self._cpu()
        samples = [x for d in dumps for x in d["samples"].get(name, [])]
        dups = sum(d["dups"].get(name, 0) for d in dumps)
        late = sum(d["late"].get(name, 0) for d in dumps)
        frames = max(1, len(samples))
        return Run(
            kind=self.kind,
            clients=self.clients,
            rate=rate,
            round=rnd,
            sent=counts["sent"],
            failed=counts["failed"],
            received=len(samples),
            dups=dups,
            late=late,
            lost=max(0, counts["ok"] * self.clients - len(samples)),
            latency={k: v for k, v in summarize(samples).items() if k != "received"},
            server_us=round((s1 - s0) / frames * 1e6, 1),
            driver_us=round((d1 - d0) / frames * 1e6, 1),
        )

    def close(self) -> None:
        for lc in self.loaders:
            lc.close()
        self.reps.stop()


def _proto(kind: str) -> str:
    return "sio" if kind in ("socketio", "node-sio") else "json"


def start_all(kinds: tuple[str, ...], replicas: int, clients: int, redis_url: str) -> dict[str, Bench]:
    """One Bench per kind, all alive at once, so each round runs back to back for every kind."""
    benches: dict[str, Bench] = {}
    try:
        for kind in kinds:
            benches[kind] = Bench(kind, replicas, clients, redis_url)
    except BaseException:
        close_all(benches)
        raise
    return benches


def close_all(benches: dict[str, Bench]) -> None:
    for b in benches.values():
        b.close()


def failed_rows(rows: list[dict[str, Any]], limit_ms: float = P99_LIMIT_MS) -> bool:
    """A step a kind does not sustain: its median p99 over the rounds is over the limit, or a phase lost,
    duplicated or failed anything."""
    p99 = statistics.median(r["p99"] for r in rows)
    return not p99 <= limit_ms or any(r["lost"] or r["dups"] or r["failed"] for r in rows)


def ladder(
    benches: dict[str, Bench], rates: list[float], duration: float, rounds: int, say: Any = print
) -> list[Run]:
    """Every rate, `rounds` interleaved rounds per kind; a kind leaves after the first rate at which it is
    saturated (median p99 over SATURATED_MS) or loses frames, so the p99 ladder goes past the sustained
    limit and one noisy step on the shared machine does not end a kind's ladder."""
    active = list(benches)
    runs: list[Run] = []
    for rate in rates:
        step: dict[str, list[Run]] = {k: [] for k in active}
        for rnd in range(rounds):
            order = active[rnd % len(active) :] + active[: rnd % len(active)]
            for kind in order:
                step[kind].append(benches[kind].phase(rate, duration, rnd))
        for kind, rs in step.items():
            runs += rs
            p99s = " / ".join(f"{r.latency['p99']:.0f}" for r in rs)
            cpu = " / ".join(f"{r.server_us:.0f}" for r in rs)
            lost = sum(r.lost for r in rs)
            say(f"  {rate:g} ev/s {kind}: p99 {p99s} ms, server {cpu} µs/frame, lost {lost}")
            if failed_rows([r.row() for r in rs], SATURATED_MS):
                active.remove(kind)
        if not active:
            break
    return runs


def memory(kinds: tuple[str, ...], redis_url: str, clients: int, duration: float) -> list[Run]:
    """RSS per connected socket on the receiving replicas, one kind at a time, plus one check phase."""
    out = []
    for kind in kinds:
        b = Bench(kind, 3, clients, redis_url)
        try:
            run = b.phase(5, duration)
            run.extra["kib_per_socket"] = round(b.kib_per_socket, 1)
            out.append(run)
        finally:
            b.close()
    return out
