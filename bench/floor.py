"""The floor: a raw redis.asyncio publish→subscribe round trip and `redis-benchmark` PUBLISH throughput.

Nothing can deliver across replicas faster than one Redis PUBLISH reaching one SUBSCRIBE; these numbers
bound what any fan-out layer (ours or python-socketio's) can achieve on this machine.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import time
from typing import Any

import redis.asyncio as aioredis

from bench.stats import summarize


async def raw_round_trip(url: str, rate: float, duration: float, size: int) -> dict[str, float]:
    """Publish JSON messages of `size` bytes at `rate`/s on one connection; a subscriber times arrivals."""
    channel = "bench:floor"
    pub = aioredis.from_url(url)
    sub_client = aioredis.from_url(url)
    pubsub = sub_client.pubsub()
    await pubsub.subscribe(channel)
    await pubsub.get_message(timeout=1.0)  # subscribe confirmation
    samples: list[float] = []
    total = max(1, int(rate * duration))
    pad = "x" * max(0, size - 40)

    async def listen() -> None:
        while len(samples) < total:
            msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=2.0)
            if msg is None:
                return
            samples.append((time.monotonic() - json.loads(msg["data"])["t"]) * 1000.0)

    listener = asyncio.create_task(listen())
    start = time.monotonic()
    for i in range(total):
        delay = start + i / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        await pub.publish(channel, json.dumps({"i": i, "t": time.monotonic(), "pad": pad}))
    await asyncio.wait_for(listener, timeout=duration + 10)
    await pubsub.aclose()
    await sub_client.aclose()
    await pub.aclose()
    return summarize(samples, expected=total)


def redis_benchmark_publish(
    port: int, size: int, subscribers: int = 3, requests: int = 100_000
) -> dict[str, Any]:
    """`redis-benchmark ... PUBLISH` requests/s with `subscribers` redis-cli SUBSCRIBE clients attached."""
    binary = shutil.which("redis-benchmark")
    if binary is None:
        raise RuntimeError("redis-benchmark not found (Debian package redis-tools); run `make bench`")
    subs = [
        subprocess.Popen(
            ["redis-cli", "-p", str(port), "subscribe", "bench:rb"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(subscribers)
    ]
    try:
        time.sleep(0.3)
        cmd = [
            binary,
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "-n",
            str(requests),
            "-c",
            "50",
            "-q",
            "--csv",
            "PUBLISH",
            "bench:rb",
            "x" * size,
        ]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=300).stdout
    finally:
        for p in subs:
            p.kill()
            p.wait()
    row = [line for line in out.splitlines() if line.startswith('"PUBLISH')][-1]
    rps = float(row.split(",")[1].strip('"'))
    return {
        "command": " ".join([*cmd[:-1], f"<{size}-byte payload>"]),
        "rps": rps,
        "subscribers": subscribers,
    }
