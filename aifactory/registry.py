"""Local delivery: which WebSocket clients on this replica get which frame. Framework-free.

The bus calls `LocalRegistry.deliver(scope, target, frame)`: the event's frame str (encoded once by the
bus) is turned ONCE per call into the bytes of a complete WebSocket text frame (`text_frame`, server
frames are unmasked, so every socket gets the very same bytes), and each subscriber in scope `offer()`s
it. `deliver` never awaits a socket, so a slow client can never delay another one or the caller.

A subscriber writes in one of two ways:

- Attached (`attach(sink)`, the fast path): the web layer hands it the socket's transport as a `Sink`.
  `offer()` writes the shared bytes straight to it, unless the sink is backed up (its write buffer is
  above the transport's high-water mark), the subscriber is held, or frames are already queued: then the
  frame goes to the bounded queue, and `flush()` (called by the web layer when the sink has drained,
  and by `release()`) writes the queue out in order. Only sockets with a backlog keep one. Writes are
  batched per event-loop turn: what a socket gets in one turn (a burst of Redis messages handled
  together) leaves as one write, one send syscall.
- Not attached: every frame is queued and the web layer's writer task sends it (`await sub.get()`).

Hold mode is the seam between frames that must come first and live frames. The connect sequence is:
`sub.hold(); registry.add(sub); sub.attach(sink); sub.send_now(hello); [sub.send_now(f) for f in
replayed]; sub.release()`. While held, live frames from `deliver` queue (still bounded, same overflow
policy); `send_now()` writes ahead of them (directly when attached, else from a front queue that `get()`
empties first); `release()` writes the held live frames, then the subscriber goes live. So a client sees
hello → replayed → live, in order, each exactly once.

The seam filter (recovery, docs/recovery.md): remote frames come with a key (stream id, origin, seq). A
resuming socket gets `set_skip((origin, seq))` before the bus's first await: the client had already seen
that origin's events up to `seq`, so frames of that origin with seq <= it (published late, arriving live)
are skipped; the filter ends at the first newer frame of that origin. The replay itself stops at the
stream id the bridge had reached when the resume began, so live frames after it are not in the replay.

Slow clients (queue full, by count or bytes): with the default policy "resync" the client's whole backlog is
dropped (it is stale anyway) and replaced by one `{"type":"resync","reason":"overflow"}` frame so the UI
refetches; the client stays connected. With policy "disconnect" the subscriber is closed instead; `get()`
then raises `SubscriberClosed` and the web layer closes the socket (code 1013, try again later). Both are
counted in `aifactory_bus_dropped_total`.
"""

from __future__ import annotations

import asyncio
import struct
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:  # only for the annotation: the registry itself needs no prometheus import
    from aifactory.metrics import Metrics

# (stream id, origin, seq) of a remote frame, so a resumed socket can skip what its client already saw
FrameKey = tuple[tuple[int, int], str, int]

__all__ = [
    "OVERFLOW_RESYNC_FRAME",
    "FrameKey",
    "LocalRegistry",
    "Sink",
    "Subscriber",
    "SubscriberClosed",
    "text_frame",
]

OVERFLOW_RESYNC_FRAME = '{"type":"resync","reason":"overflow"}'
POLICIES = ("resync", "disconnect")


def text_frame(text: str) -> bytes:
    """A complete, final, unmasked WebSocket text frame (RFC 6455 §5.2) carrying `text`: what a server
    sends, identical for every client, so it is built once per event and written to every socket."""
    payload = text.encode()
    n = len(payload)
    if n < 126:
        return bytes((0x81, n)) + payload
    if n < 65536:
        return struct.pack("!BBH", 0x81, 126, n) + payload
    return struct.pack("!BBQ", 0x81, 127, n) + payload


class Sink(Protocol):
    """Where an attached subscriber writes complete frame bytes: a socket's transport."""

    def write(self, data: bytes) -> None: ...

    def backed_up(self) -> bool: ...


class SubscriberClosed(Exception):
    """Raised by `Subscriber.get()` once the subscriber is closed and has nothing left to send."""


class Subscriber:
    """One local client: identity for routing plus a bounded queue of frames."""

    __slots__ = (
        "_bytes",
        "_cork",
        "_corked",
        "_front",
        "_held",
        "_queue",
        "_sink",
        "_skip",
        "_wakeup",
        "closed",
        "dropped",
        "max_bytes",
        "max_queue",
        "on_close",
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
        self.on_close: Callable[[], None] | None = None  # set by the web layer: close the socket
        self._queue: deque[str] = deque()
        self._front: deque[str] | None = None  # send_now() frames while not attached (made when needed)
        self._bytes = 0
        self._wakeup: asyncio.Event | None = None  # only a writer task waiting in get() needs one
        self._sink: Sink | None = None
        self._held = False
        self._cork: Callable[[Subscriber], bool] | None = None  # set by the registry (see _write)
        self._corked: list[bytes] | None = None
        self._skip: tuple[str, int] | None = None  # skip frames of this origin with seq <= this

    # ---- the connect sequence (see the module docstring) ------------------------------------------
    def attach(self, sink: Sink) -> None:
        """Write frames straight to `sink` from now on (while not held and not backed up)."""
        self._sink = sink

    def hold(self) -> None:
        """Queue live frames instead of writing them, until `release()`."""
        self._held = True

    def send_now(self, frame: str) -> None:
        """Send `frame` ahead of every queued live frame (hello, replayed frames). The caller bounds how
        much it sends this way: it bypasses the queue's limits."""
        if self.closed:
            return
        if self._sink is not None:
            self._write(text_frame(frame))
            return
        if self._front is None:
            self._front = deque()
        self._front.append(frame)
        self._wake()

    def set_skip(self, skip: tuple[str, int] | None) -> None:
        """Skip live frames of origin `skip[0]` with seq <= `skip[1]` (the resuming client saw them),
        until the first newer frame of that origin."""
        self._skip = skip

    def release(self) -> None:
        """End hold mode: write the held live frames (as far as the sink takes them), then go live."""
        self._held = False
        self.flush()
        if self._queue:
            self._wake()

    @property
    def attached(self) -> bool:
        return self._sink is not None

    def flush(self) -> int:
        """Write queued frames to the sink, in order, until it backs up; returns how many were written."""
        sink, n = self._sink, 0
        if sink is None or self._held:
            return 0
        while self._queue and not sink.backed_up():
            frame = self._queue.popleft()
            self._bytes -= len(frame)
            self._write(text_frame(frame))
            n += 1
        return n

    def _write(self, data: bytes) -> None:
        """Every write to the sink goes through here, in order. Within one event-loop turn the frames for
        this socket are collected and leave as one write (one send syscall) when the turn ends."""
        if self._corked is not None:
            self._corked.append(data)
        elif self._cork is not None and self._cork(self):
            self._corked = [data]
        else:
            self._sink.write(data)  # type: ignore[union-attr]  # only called while attached

    def uncork(self) -> None:
        """End of the turn: write what `_write` collected."""
        data, self._corked = self._corked, None
        if data and self._sink is not None:
            self._sink.write(data[0] if len(data) == 1 else b"".join(data))

    # ---- delivery --------------------------------------------------------------------------------
    def offer(self, frame: str, wire: bytes | None = None, key: FrameKey | None = None) -> bool:
        """Take a frame without ever blocking: straight to the sink when attached, live and not backed
        up (`wire` = `text_frame(frame)` when the caller has built it once for many subscribers), else to
        the bounded queue. `key` (remote frames with history) lets the seam filter skip a frame the
        client already had. False if this client did not take it (closed)."""
        if self.closed:
            return False
        skip = self._skip
        if skip is not None and key is not None and key[1] == skip[0]:
            if key[2] <= skip[1]:
                return True
            self._skip = None
        sink = self._sink
        if sink is not None and not self._held and not self._queue and not sink.backed_up():
            self._write(wire if wire is not None else text_frame(frame))
            return True
        if len(self._queue) >= self.max_queue or self._bytes + len(frame) > self.max_bytes:
            self.overflow += 1
            lost = len(self._queue)
            self._queue.clear()
            self._bytes = 0
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
                self._wake()
                return False
        self._queue.append(frame)
        self._bytes += len(frame)
        self._wake()
        return True

    def _wake(self) -> None:
        if self._wakeup is not None:
            self._wakeup.set()

    async def wait_pending(self) -> None:
        """Wait until frames are queued and not held; raises SubscriberClosed once closed."""
        while not self._front and (self._held or not self._queue):
            if self.closed:
                raise SubscriberClosed
            if self._wakeup is None:
                self._wakeup = asyncio.Event()
            self._wakeup.clear()
            await self._wakeup.wait()

    async def get(self) -> str:
        """Next frame to send (not attached); waits when idle; raises SubscriberClosed once closed."""
        await self.wait_pending()
        frame = self.get_nowait()
        assert frame is not None
        return frame

    def get_nowait(self) -> str | None:
        """A queued frame, or None (lets a writer batch several frames per wakeup)."""
        if self._front:
            return self._front.popleft()
        if not self._queue or self._held:
            return None
        frame = self._queue.popleft()
        self._bytes -= len(frame)
        return frame

    def pending(self) -> int:
        return len(self._queue) + len(self._front or ())

    def close(self) -> None:
        """Stop accepting frames and wake the writer so it can finish."""
        self.closed = True
        self._queue.clear()
        self._front = None
        self._bytes = 0
        self._sink = None
        self._wake()
        on_close, self.on_close = self.on_close, None
        if on_close is not None:
            on_close()


class LocalRegistry:
    """Subscribers of this replica, indexed by user and org so a scoped send touches only its audience."""

    def __init__(self, metrics: Metrics | None = None) -> None:
        self._all: set[Subscriber] = set()
        self._by_user: dict[str, set[Subscriber]] = {}
        self._by_org: dict[str, set[Subscriber]] = {}
        self._metrics = metrics
        self._corked: list[Subscriber] = []  # subscribers with frames collected in this event-loop turn

    def __len__(self) -> int:
        return len(self._all)

    def _on_drop(self, reason: str, n: int) -> None:
        if self._metrics is not None and n:
            self._metrics.drop[reason].inc(n)

    def _cork(self, sub: Subscriber) -> bool:
        """Batch per event-loop turn: several events delivered in one turn (a burst from Redis) reach a
        socket as one write. Without a running loop (plain calls) frames are written at once."""
        if not self._corked:
            try:
                asyncio.get_running_loop().call_soon(self._uncork)
            except RuntimeError:
                return False
        self._corked.append(sub)
        return True

    def _uncork(self) -> None:
        subs, self._corked = self._corked, []
        for sub in subs:
            sub.uncork()

    def add(self, sub: Subscriber) -> Subscriber:
        sub.on_drop = self._on_drop
        sub._cork = self._cork
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
        """Offer the same frame (str, and its wire bytes built once) to every subscriber in scope; returns
        how many took it. Never blocks. `key`: see the seam filter in the module docstring."""
        taken = 0
        closed: list[Subscriber] = []
        audience = self.audience(scope, target)
        wire = text_frame(frame) if audience else None
        for sub in audience:  # offer() never mutates the index sets
            if sub.offer(frame, wire, key):
                taken += 1
            elif sub.closed:
                closed.append(sub)
        for sub in closed:
            self.remove(sub)
        return taken
