"""Keystroke-to-echo latency of `/ws/terminal`: in-process shells (local) vs relayed to a terminal host.

Real processes on loopback: a private redis-server, one `AIFACTORY_TERMINALS=local` replica, one
`AIFACTORY_TERMINALS=host` replica and one `aifactory-server terminal-host`. Each keystroke is one binary
frame; the time is until the PTY's echo of it arrives back. Also the memory a terminal costs on a host:
(host RSS + shells' RSS) growth per open terminal. `python -m bench.terminal_latency` prints a summary.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from harness.app_servers import ServerProc, new_secret, rss_kib, start_servers
from harness.redis_servers import RedisServer
from harness.terminal_client import TerminalClient

__all__ = ["measure", "summary_line"]


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def _echo_latencies(url: str, keystrokes: int) -> list[float]:
    client = TerminalClient(url)
    await client.connect()
    await client.send("stty -icanon echo; echo warm-$((1+1))\n")
    await client.read_until("warm-2")
    await asyncio.sleep(0.2)
    samples = []
    for i in range(keystrokes):
        before = len(client.output)
        t0 = time.perf_counter()
        await client.send(b"a")
        while len(client.output) <= before:
            client._changed.clear()
            await asyncio.wait_for(client._changed.wait(), 10)
        samples.append((time.perf_counter() - t0) * 1000)
        if i % 50 == 49:
            await client.send(b"\x15")  # Ctrl-U: keep the line short
            await asyncio.sleep(0.05)
    await client.close()
    return samples


def _tree_rss_kib(pid: int) -> int:
    """RSS of `pid` and all its descendants (the host and the shells it spawned)."""
    total = 0
    pending = [pid]
    while pending:
        p = pending.pop()
        try:
            total += rss_kib(p)
            children = Path(f"/proc/{p}/task/{p}/children").read_text().split()
        except (OSError, RuntimeError):
            continue
        pending += [int(c) for c in children]
    return total


async def _rss_per_terminal(host: ServerProc, url_for: Any, count: int) -> float:
    assert host.proc is not None
    await asyncio.sleep(0.5)
    base = _tree_rss_kib(host.proc.pid)
    clients = []
    for i in range(count):
        client = TerminalClient(url_for(f"rss-{i}"))
        await client.connect()
        await client.send("echo up-$((2+3))\n")
        await client.read_until("up-5")
        clients.append(client)
    after = _tree_rss_kib(host.proc.pid)
    for client in clients:
        await client.close()
    return (after - base) / count


async def _run(keystrokes: int, rss_terminals: int) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="aif-bench-term-"))
    secret = new_secret()
    redis = RedisServer().start()
    env = {"AIFACTORY_TERMINAL_SHELL": "/bin/sh"}
    sets = []
    try:
        host = start_servers(
            1, redis_url=redis.url, secret=secret, extra_env=env, workdir=workdir, command="terminal-host"
        )
        sets.append(host)
        local = start_servers(
            1, redis_url=redis.url, secret=secret, extra_env=env, workdir=workdir, names=["local"]
        )
        sets.append(local)
        relay = start_servers(
            1,
            redis_url=redis.url,
            secret=secret,
            workdir=workdir,
            names=["relay"],
            extra_env={"AIFACTORY_TERMINALS": "host"},
        )
        sets.append(relay)
        token = local.token("bench", "org-b")

        def url(server: ServerProc, term: str) -> str:
            return server.ws_url(f"/ws/terminal/{term}", token=token)

        result: dict[str, Any] = {"keystrokes": keystrokes}
        for mode, server in (("local", local[0]), ("host", relay[0])):
            samples = await _echo_latencies(url(server, f"lat-{mode}"), keystrokes)
            result[mode] = {
                "p50_ms": round(statistics.median(samples), 3),
                "p99_ms": round(_percentile(samples, 0.99), 3),
            }
        result["ratio_p50"] = round(result["host"]["p50_ms"] / result["local"]["p50_ms"], 2)
        result["ratio_p99"] = round(result["host"]["p99_ms"] / result["local"]["p99_ms"], 2)
        result["rss_terminals"] = rss_terminals
        result["rss_kib_per_terminal"] = round(
            await _rss_per_terminal(host[0], lambda t: url(relay[0], t), rss_terminals), 1
        )
        return result
    finally:
        for s in reversed(sets):
            s.stop()
        redis.stop()


def measure(keystrokes: int = 300, rss_terminals: int = 10) -> dict[str, Any]:
    return asyncio.run(_run(keystrokes, rss_terminals))


def summary_line(r: dict[str, Any]) -> str:
    return (
        f"Terminal keystroke-to-echo ({r['keystrokes']} keystrokes): local p50 {r['local']['p50_ms']:.2f} ms"
        f" / p99 {r['local']['p99_ms']:.2f} ms; via a terminal host p50 {r['host']['p50_ms']:.2f} ms"
        f" / p99 {r['host']['p99_ms']:.2f} ms (x{r['ratio_p50']} / x{r['ratio_p99']});"
        f" {r['rss_kib_per_terminal']:.0f} KiB RSS per terminal on a host ({r['rss_terminals']} terminals)."
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.terminal_latency", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--keystrokes", type=int, default=300)
    parser.add_argument("--terminals", type=int, default=10, help="terminals opened for the RSS figure")
    parser.add_argument("--json", action="store_true", help="print the raw numbers as JSON too")
    args = parser.parse_args(argv)
    result = measure(args.keystrokes, args.terminals)
    print(summary_line(result))
    if args.json:
        print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
