"""Fan-out scenarios, run identically against each server kind on the same Redis.

Every scenario: start replicas, connect load-client sockets, fire on replica A (index 0) at a fixed rate,
and measure latency on the sockets of the last replica (C when there are three) — the cross-replica path.
Losses count every socket of every replica.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from bench.firing import fire_at_rate
from bench.procs import LoadClient, Replicas
from bench.stats import summarize
from harness.app_servers import rss_kib

DRAIN_SECONDS = 1.0
P99_LIMIT_MS = 100.0
REPEATS = 2  # latency-vs-rate and sustained steps: best p99 of this many back-to-back runs


@dataclass
class Run:
    """One load phase: what was offered and what the receivers of replica C saw."""

    kind: str
    replicas: int
    clients: int
    rate: float
    size: int
    sent: int
    failed: int
    latency: dict[str, float]  # on the last replica's sockets
    lost: int  # over all sockets
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def deliveries_per_s(self) -> float:
        return self.rate * self.clients

    def row(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "replicas": self.replicas,
            "clients": self.clients,
            "rate": self.rate,
            "size": self.size,
            "sent": self.sent,
            "failed": self.failed,
            "lost": self.lost,
            "deliveries_per_s": self.deliveries_per_s,
            **self.latency,
            **self.extra,
        }


class Bench:
    """Replicas + one load client for a scenario; `phase()` fires at a rate and collects the result."""

    def __init__(self, kind: str, replicas: int, clients: int, redis_url: str, size: int) -> None:
        self.kind, self.size, self.clients = kind, size, clients
        self.reps = Replicas(kind, replicas, redis_url, f"bench:{kind}:{time.monotonic_ns()}").start()
        self.rss_before = [rss_kib(pid) for pid in self.reps.pids]
        per = [clients // replicas + (1 if i < clients % replicas else 0) for i in range(replicas)]
        proto = "aif" if kind == "aifactory" else "sio"
        plan = []
        for i, n in enumerate(per):
            # one user per socket group; broadcast reaches everyone, so users only matter for auth/rooms
            plan.append(
                {"url": self.reps.ws_url(i, f"user{i}"), "proto": proto, "count": n, "group": f"r{i}"}
            )
        try:
            self.client = LoadClient(plan)
        except BaseException:
            self.reps.stop()
            raise
        time.sleep(0.5)
        self.rss_after = [rss_kib(pid) for pid in self.reps.pids]

    @property
    def kib_per_socket(self) -> float:
        delta = sum(a - b for a, b in zip(self.rss_after, self.rss_before, strict=True))
        return delta / max(1, self.clients)

    def phase(self, rate: float, duration: float) -> Run:
        name = f"{rate:g}@{time.monotonic_ns()}"
        counts = asyncio.run(
            fire_at_rate(
                self.reps.fire_url(0),
                self.reps.fire_body,
                rate,
                duration,
                name,
                self.size,
                self.reps.fire_headers(),
            )
        )
        time.sleep(DRAIN_SECONDS)
        samples = self.client.dump()
        last = len(self.reps.ports) - 1
        received = sum(len(v) for k, v in samples.items() if k.endswith("/" + name))
        expected = counts["ok"] * self.clients
        return Run(
            kind=self.kind,
            replicas=len(self.reps.ports),
            clients=self.clients,
            rate=rate,
            size=self.size,
            sent=counts["sent"],
            failed=counts["failed"],
            latency=summarize(samples.get(f"r{last}/{name}", [])),
            lost=max(0, expected - received),
        )

    def close(self) -> list[bool]:
        alive = self.reps.alive()
        self.client.close()
        self.reps.stop()
        return alive


def _pair(kinds: tuple[str, ...], replicas: int, clients: int, redis_url: str, size: int) -> dict[str, Bench]:
    """One Bench per kind, all alive at once, so each load step runs back to back for both kinds."""
    benches: dict[str, Bench] = {}
    try:
        for kind in kinds:
            benches[kind] = Bench(kind, replicas, clients, redis_url, size)
    except BaseException:
        for b in benches.values():
            b.close()
        raise
    return benches


def _best_of(
    benches: dict[str, Bench], kinds: tuple[str, ...], rate: float, duration: float
) -> dict[str, Run]:
    """Run the step REPEATS times per kind, interleaved (A, B, A, B), keeping each kind's lowest p99: one
    stall from other work on the shared machine should not decide a step, while a stall the server
    causes itself shows up in every repeat."""
    runs: dict[str, list[Run]] = {k: [] for k in kinds}
    for _ in range(REPEATS):
        for k in kinds:
            runs[k].append(benches[k].phase(rate, duration))
    best = {}
    for k, rs in runs.items():
        best[k] = min(rs, key=lambda r: (r.lost, r.latency["p99"]))
        best[k].extra["p99_of_repeats"] = " / ".join(f"{r.latency['p99']:.0f}" for r in rs)
    return best


def _close(benches: dict[str, Bench]) -> None:
    for b in benches.values():
        b.close()


def latency_at_rates(
    kinds: tuple[str, ...],
    redis_url: str,
    rates: list[float],
    clients: int,
    duration: float,
    size: int,
    replicas: int = 3,
) -> list[Run]:
    """Fixed rates, fixed clients: the latency-vs-rate curve, kinds interleaved at every rate."""
    benches = _pair(kinds, replicas, clients, redis_url, size)
    try:
        out = []
        for rate in rates:
            best = _best_of(benches, kinds, rate, duration)
            out += [best[k] for k in kinds]
        return out
    finally:
        _close(benches)


def sustained(
    kinds: tuple[str, ...],
    redis_url: str,
    clients: int,
    duration: float,
    size: int,
    start_rate: float,
    max_rate: float,
) -> tuple[dict[str, Run | None], list[Run]]:
    """Double the rate until p99 on replica C exceeds 100 ms (or events are lost); the last good step wins."""
    benches = _pair(kinds, 3, clients, redis_url, size)
    runs: list[Run] = []
    best: dict[str, Run | None] = dict.fromkeys(kinds)
    active = list(kinds)
    try:
        rate = start_rate
        while rate <= max_rate and active:
            step = _best_of(benches, tuple(active), rate, duration)
            for kind in list(active):
                run = step[kind]
                runs.append(run)
                if run.latency["p99"] > P99_LIMIT_MS or run.lost > 0 or run.failed > 0:
                    active.remove(kind)
                else:
                    best[kind] = run
            rate *= 2
    finally:
        _close(benches)
    return best, runs


def scaling_clients(
    kinds: tuple[str, ...], redis_url: str, counts: list[int], rate: float, duration: float, size: int
) -> list[Run]:
    """Same event rate (broadcast to every socket), growing socket count; also RSS per socket."""
    out = []
    for n in counts:
        benches = _pair(kinds, 3, n, redis_url, size)
        try:
            for kind in kinds:
                run = benches[kind].phase(rate, duration)
                run.extra["kib_per_socket"] = round(benches[kind].kib_per_socket, 1)
                out.append(run)
        finally:
            _close(benches)
    return out


def scaling_replicas(
    kinds: tuple[str, ...],
    redis_url: str,
    counts: list[int],
    clients: int,
    rate: float,
    duration: float,
    size: int,
) -> list[Run]:
    """Same clients and rate spread over 1..N replicas (one replica: fire and receive on A)."""
    out = []
    for n in counts:
        benches = _pair(kinds, n, clients, redis_url, size)
        try:
            out += [benches[k].phase(rate, duration) for k in kinds]
        finally:
            _close(benches)
    return out
