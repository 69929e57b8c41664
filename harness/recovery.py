"""Recovery under faults: resuming clients on every replica, a steady firer on replica A, the ledger.

`ResumingClient` is what a browser should do: keep the last `_offset`, and on any close or drop reconnect
(to the next replica) with `?since=<offset>`. `Firer` sends numbered events to replica A at a fixed rate
to a mix of broadcast / user / org audiences and records which were accepted. `verdict()` checks the
recovery invariant for one client: every accepted event of its audience arrived exactly once, in order,
unless a `resync` announced the loss. Shared by tests/e2e/test_recovery.py (and anyone proving recovery).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import aiohttp

__all__ = ["Firer", "ResumingClient", "Verdict", "verdict"]


@dataclass
class ResumingClient:
    """One user's events socket that resumes from its last `_offset` on any replica."""

    name: str
    user: str
    org: str
    token: str
    bases: list[str]  # ws://host:port of every replica, tried in turn starting at `index`
    index: int = 0
    got: list[int] = field(default_factory=list)
    resyncs: list[dict[str, Any]] = field(default_factory=list)
    hellos: list[dict[str, Any]] = field(default_factory=list)
    closes: list[int | None] = field(default_factory=list)
    offset: str | None = None
    paused_until: float = 0.0
    _task: asyncio.Task[None] | None = None
    _ws: aiohttp.ClientWebSocketResponse | None = None
    _stop: bool = False
    _ready: asyncio.Event = field(default_factory=asyncio.Event)

    def url(self) -> str:
        base = self.bases[self.index % len(self.bases)]
        since = f"&since={quote(self.offset)}" if self.offset else ""
        return f"{base}/ws/events?token={quote(self.token)}{since}"

    async def start(self, session: aiohttp.ClientSession) -> None:
        self._task = asyncio.create_task(self._run(session))
        await asyncio.wait_for(self._ready.wait(), 30)

    async def _run(self, session: aiohttp.ClientSession) -> None:
        while not self._stop:
            delay = self.paused_until - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            try:
                async with session.ws_connect(
                    self.url(), heartbeat=None, timeout=aiohttp.ClientWSTimeout(ws_close=5)
                ) as ws:
                    self._ws = ws
                    async for msg in ws:
                        if msg.type != aiohttp.WSMsgType.TEXT:
                            break
                        self._on_frame(msg.json())
                    self.closes.append(ws.close_code)
            except (aiohttp.ClientError, OSError, TimeoutError):
                self.closes.append(None)
            self._ws = None
            if self._stop:
                return
            if time.monotonic() >= self.paused_until:  # a drop reconnects where it was; a close moves on
                self.index += 1
            await asyncio.sleep(0.05)

    def _on_frame(self, frame: dict[str, Any]) -> None:
        kind = frame.get("type")
        if kind == "hello":
            self.hellos.append(frame)
            self._ready.set()
        elif kind == "resync":
            self.resyncs.append(frame)
        elif kind == "load":
            self.got.append(frame["n"])
            self.offset = frame["_offset"]

    async def drop(self, seconds: float) -> None:
        """A client-side network drop: the socket dies without a close handshake; back after `seconds`."""
        self.paused_until = time.monotonic() + seconds
        ws = self._ws
        if ws is not None and ws._response.connection is not None:
            ws._response.connection.transport.abort()  # type: ignore[union-attr]

    async def stop(self) -> None:
        self._stop = True
        if self._ws is not None:
            await self._ws.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task


@dataclass
class Firer:
    """Numbered `load` events to one replica at `rate`/s, audiences drawn from `audiences`."""

    base: str  # http://host:port of replica A
    token: str  # a service token
    audiences: list[tuple[str, str | None]]
    rate: float = 100.0
    accepted: dict[int, tuple[str, str | None]] = field(default_factory=dict)
    origins: dict[int, str] = field(default_factory=dict)  # n -> the replica that accepted it
    refused: int = 0
    _counter: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    async def run(self, session: aiohttp.ClientSession, seconds: float) -> None:
        rng = random.Random(12)
        pending: set[asyncio.Task[None]] = set()
        start = time.monotonic()
        i = 0
        while (now := time.monotonic()) - start < seconds:
            due = start + i / self.rate
            if due > now:
                await asyncio.sleep(due - now)
            i += 1
            scope, target = rng.choice(self.audiences)
            task = asyncio.create_task(self._fire(session, next(self._counter), scope, target))
            pending.add(task)
            task.add_done_callback(pending.discard)
        if pending:
            await asyncio.wait(pending, timeout=15)

    async def _fire(self, session: aiohttp.ClientSession, n: int, scope: str, target: str | None) -> None:
        body: dict[str, Any] = {"scope": scope, "event": {"type": "load", "n": n}}
        if target is not None:
            body["target"] = target
        try:
            async with session.post(
                self.base + "/api/events",
                json=body,
                headers={"Authorization": f"Bearer {self.token}"},
                timeout=aiohttp.ClientTimeout(total=5),
            ) as resp:
                if resp.status == 202:
                    self.accepted[n] = (scope, target)
                    self.origins[n] = (await resp.json()).get("replica", "")
                else:
                    self.refused += 1
        except (aiohttp.ClientError, OSError, TimeoutError):
            self.refused += 1

    def expected(self, client: ResumingClient) -> list[int]:
        return sorted(
            n
            for n, (scope, target) in self.accepted.items()
            if scope == "broadcast"
            or (scope == "user" and target == client.user)
            or (scope == "org" and target == client.org)
        )


@dataclass
class Verdict:
    name: str
    expected: int
    received: int
    lost: int
    duplicates: int
    out_of_order: int
    resyncs: int
    reconnects: int
    recovered: int  # hellos that said recovered: true

    @property
    def ok(self) -> bool:
        """The invariant: nothing lost unless announced, never a duplicate, in order."""
        return self.duplicates == 0 and self.out_of_order == 0 and (self.lost == 0 or self.resyncs > 0)


def verdict(client: ResumingClient, firer: Firer, reference: list[int] | None = None) -> Verdict:
    """`reference`: the same audience as seen by another client (fired concurrently, events have no
    global order by `n`; order means the same relative order on every replica)."""
    expected = firer.expected(client)
    got = client.got
    unique = set(got)
    ref = reference if reference is not None else got
    common = unique & set(ref)
    mine = [n for n in dict.fromkeys(got) if n in common]
    theirs = [n for n in dict.fromkeys(ref) if n in common]
    return Verdict(
        name=client.name,
        expected=len(expected),
        received=len(got),
        lost=len(set(expected) - unique),
        duplicates=len(got) - len(unique),
        out_of_order=sum(1 for a, b in zip(mine, theirs, strict=True) if a != b),
        resyncs=len(client.resyncs),
        reconnects=len(client.hellos) - 1,
        recovered=sum(1 for h in client.hellos if h.get("recovered")),
    )
