"""Local delivery: which WebSocket clients on this replica get which frame. Framework-free.

The web layer wraps each connected socket in a `Subscriber` and runs one writer task per socket:
`frame = await sub.get()` then `await ws.send_text(frame)`. The bus calls `LocalRegistry.deliver`, which
only appends the (already encoded, shared) str to bounded queues — it never awaits a socket, so a slow
client can never delay another one or the caller.

Slow clients (queue full, by count or bytes): with the default policy "resync" the client's whole backlog is
dropped (it is stale anyway) and replaced by one `{"type":"resync","reason":"overflow"}` frame so the UI
refetches; the client stays connected. With policy "disconnect" the subscriber is closed instead; `get()`
then raises `SubscriberClosed` and the web layer closes the socket (code 1013, try again later). Both are
counted in `aifactory_bus_dropped_total`.

Recovery (docs/recovery.md) adds two things, both free for a socket that does not resume:
- hold: a resuming socket is registered *held* (frames are kept, not handed to the writer) while its
  replay is read; `release(replay, ...)` puts the replayed frames first, then the held live ones. Replayed
  frames do not count against the queue bound (the history bounds them).
- a seam filter: remote frames come with a key (stream id, origin, seq); after a replay, frames the replay
  already contained are skipped by key until the first newer one arrives.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # only for the annotation: the registry itself needs no prometheus import
    from aifactory.metrics import Metrics

# (stream id, origin, seq) of a remote frame, so a resumed socket can skip what its replay contained
FrameKey = tuple[tuple[int, int], str, int]

__all__ = ["OVERFLOW_RESYNC_FRAME", "FrameKey", "LocalRegistry", "Subscriber", "SubscriberClosed"]

OVERFLOW_RESYNC_FRAME = '{"type":"resync","reason":"overflow"}'
POLICIES = ("resync", "disconnect")


class SubscriberClosed(Exception):
    """Raised by `Subscriber.get()` once the subscriber is closed and has nothing left to send."""


class Subscriber:
    """One local client: identity for routing plus a bounded queue of frames."""

    __slots__ = (
        "_bytes",
        "_floor",
        "_held",
        "_queue",
        "_replayed",
        "_skip",
        "_wakeup",
        "closed",
        "dropped",
        "max_bytes",
        "max_queue",
        "on_drop",
        "org_id",
        "overflow",
        "policy",
        "user_id",
    )

    def __init__(
        self,
        user_id: str | None,
        org_id: str | None,
        max_queue: int = 1024,
        *,
        max_bytes: int = 8 * 1024 * 1024,
        policy: str = "resync",
        hold: bool = False,
    ) -> None:
        if policy not in POLICIES:
            raise ValueError(f"policy must be one of {POLICIES}, not {policy!r}")
        if max_queue < 2:
            raise ValueError("max_queue must be at least 2 (one slot is kept for the resync notice)")
        self.user_id = user_id
        self.org_id = org_id
        self.max_queue = max_queue
        self.max_bytes = max_bytes
        self.policy = policy
        self.closed = False
        self.dropped = 0  # frames this client lost
        self.overflow = 0  # times its queue overflowed
        self.on_drop: Callable[[str, int], None] | None = None  # set by the registry: (reason, n)
        self._queue: deque[str] = deque()
        self._bytes = 0
        self._wakeup = asyncio.Event()
        self._held: list[tuple[str, FrameKey | None]] | None = [] if hold else None
        self._replayed = 0  # replayed frames still at the head of the queue (outside the bound)
        self._floor: tuple[int, int] | None = None  # skip remote frames with a stream id <= this
        self._skip: tuple[str, int] | None = None  # skip frames of this origin with seq <= this

    def offer(self, frame: str, key: FrameKey | None = None) -> bool:
        """Queue a frame without ever blocking; False if this client did not take it (closed)."""
        if self.closed:
            return False
        if key is not None and (self._floor is not None or self._skip is not None) and self._seen(key):
            return True
        if self._held is not None:
            if len(self._held) >= self.max_queue:
                self._held.clear()
                self._held.append((OVERFLOW_RESYNC_FRAME, None))
                self.overflow += 1
            self._held.append((frame, key))
            return True
        if len(self._queue) - self._replayed >= self.max_queue or self._bytes + len(frame) > self.max_bytes:
            self.overflow += 1
            lost = len(self._queue)
            self._queue.clear()
            self._bytes = 0
            self._replayed = 0
            if self.policy == "disconnect":
                self.dropped += lost + 1
                self.close()
                if self.on_drop:
                    self.on_drop("client_closed", lost + 1)
                return False
            self.dropped += lost
            if self.on_drop:
                self.on_drop("client_overflow", lost)
            self._queue.append(OVERFLOW_RESYNC_FRAME)
            self._bytes = len(OVERFLOW_RESYNC_FRAME)
            if len(frame) + self._bytes > self.max_bytes:  # a single frame bigger than the whole budget
                self.dropped += 1
                if self.on_drop:
                    self.on_drop("client_overflow", 1)
                self._wakeup.set()
                return False
        self._queue.append(frame)
        self._bytes += len(frame)
        self._wakeup.set()
        return True

    def _seen(self, key: FrameKey) -> bool:
        """True for a remote frame the replay already delivered; each filter ends at its first miss."""
        if self._floor is not None:
            if key[0] <= self._floor:
                return True
            self._floor = None
        if self._skip is not None and key[1] == self._skip[0]:
            if key[2] <= self._skip[1]:
                return True
            self._skip = None
        return False

    def release(
        self,
        replay: list[str],
        *,
        floor: tuple[int, int] | None = None,
        skip: tuple[str, int] | None = None,
    ) -> int:
        """End hold: queue `replay` first, then the held frames the replay did not already contain.

        `floor`: the last stream id the replay read; `skip`: (origin, seq) the client had already seen.
        Both keep filtering later live frames until the first newer one. Returns the held frames kept.
        """
        held, self._held = self._held or [], None
        self._floor, self._skip = floor, skip
        for frame in replay:
            self._queue.append(frame)
        self._replayed = len(self._queue)
        kept = 0
        for frame, key in held:
            if key is not None and self._seen(key):
                continue
            self.offer(frame)
            kept += 1
        if self._queue:
            self._wakeup.set()
        return kept

    def _pop(self) -> str:
        frame = self._queue.popleft()
        if self._replayed:
            self._replayed -= 1
        else:
            self._bytes -= len(frame)
        return frame

    async def get(self) -> str:
        """Next frame to send; waits when idle; raises SubscriberClosed once closed."""
        while not self._queue:
            if self.closed:
                raise SubscriberClosed
            self._wakeup.clear()
            await self._wakeup.wait()
        return self._pop()

    def get_nowait(self) -> str | None:
        """A queued frame, or None (lets a writer batch several frames per wakeup)."""
        if not self._queue:
            return None
        return self._pop()

    def pending(self) -> int:
        return len(self._queue)

    def close(self) -> None:
        """Stop accepting frames and wake the writer so it can finish."""
        self.closed = True
        self._queue.clear()
        self._bytes = 0
        self._replayed = 0
        self._held = None
        self._wakeup.set()


class LocalRegistry:
    """Subscribers of this replica, indexed by user and org so a scoped send touches only its audience."""

    def __init__(self, metrics: Metrics | None = None) -> None:
        self._all: set[Subscriber] = set()
        self._by_user: dict[str, set[Subscriber]] = {}
        self._by_org: dict[str, set[Subscriber]] = {}
        self._metrics = metrics

    def __len__(self) -> int:
        return len(self._all)

    def _on_drop(self, reason: str, n: int) -> None:
        if self._metrics is not None and n:
            self._metrics.drop[reason].inc(n)

    def add(self, sub: Subscriber) -> Subscriber:
        sub.on_drop = self._on_drop
        self._all.add(sub)
        if sub.user_id is not None:
            self._by_user.setdefault(sub.user_id, set()).add(sub)
        if sub.org_id is not None:
            self._by_org.setdefault(sub.org_id, set()).add(sub)
        if self._metrics is not None:
            self._metrics.clients.set(len(self._all))
        return sub

    def remove(self, sub: Subscriber) -> None:
        self._all.discard(sub)
        for index, key in ((self._by_user, sub.user_id), (self._by_org, sub.org_id)):
            if key is not None and key in index:
                index[key].discard(sub)
                if not index[key]:
                    del index[key]
        if self._metrics is not None:
            self._metrics.clients.set(len(self._all))

    def audience(self, scope: str, target: str | None) -> set[Subscriber] | frozenset[Subscriber]:
        if scope == "broadcast":
            return self._all
        if scope == "user":
            return self._by_user.get(target, frozenset()) if target is not None else frozenset()
        if scope == "org":
            return self._by_org.get(target, frozenset()) if target is not None else frozenset()
        raise ValueError(f"scope must be broadcast, user or org, not {scope!r}")

    def deliver(self, scope: str, target: str | None, frame: str, key: FrameKey | None = None) -> int:
        """Offer the same frame str to every subscriber in scope; returns how many took it. Never blocks."""
        taken = 0
        closed: list[Subscriber] = []
        for sub in self.audience(scope, target):  # offer() never mutates the index sets
            if sub.offer(frame, key):
                taken += 1
            elif sub.closed:
                closed.append(sub)
        for sub in closed:
            self.remove(sub)
        return taken
