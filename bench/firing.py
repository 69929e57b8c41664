"""Fire events at a fixed rate over HTTP, stamping each with the monotonic send time and a phase label.

Requests are launched on schedule without waiting for earlier ones (bounded in flight), so a slow server
shows up as latency, not as a lower offered rate.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import aiohttp

MAX_IN_FLIGHT = 256


async def fire_at_rate(
    url: str,
    body_for: Callable[[dict[str, Any]], dict[str, Any]],
    rate: float,
    duration: float,
    phase: str,
    size: int,
    headers: dict[str, str] | None = None,
) -> dict[str, int]:
    """POST `body_for(event)` to `url` `rate` times per second for `duration` seconds; returns counts."""
    pad = "x" * max(0, size - 60)
    total = max(1, int(rate * duration))
    sem = asyncio.Semaphore(MAX_IN_FLIGHT)
    counts = {"sent": 0, "ok": 0, "failed": 0}
    connector = aiohttp.TCPConnector(limit=64)
    async with aiohttp.ClientSession(connector=connector, headers=headers or {}) as session:

        async def one(i: int) -> None:
            async with sem:
                event = {"type": "bench", "phase": phase, "i": i, "t": time.monotonic(), "pad": pad}
                try:
                    async with session.post(url, json=body_for(event)) as resp:
                        await resp.read()
                        counts["ok" if resp.status < 300 else "failed"] += 1
                except aiohttp.ClientError:
                    counts["failed"] += 1

        start = time.monotonic()
        tasks = []
        for i in range(total):
            delay = start + i / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            counts["sent"] += 1
            tasks.append(asyncio.create_task(one(i)))
        await asyncio.gather(*tasks)
    return counts
