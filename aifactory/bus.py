"""The event bus: `broadcast_event`, `send_to_user`, `send_to_org`. Framework-free.

Every send does two things, in this order:
1. local delivery, synchronous and independent of Redis: the event is JSON-encoded ONCE and the same str is
   offered to every matching local subscriber (`LocalRegistry.deliver`, never blocks);
2. one non-blocking publish of that same frame, wrapped in an envelope, to the Redis bridge (if any). A
   publish that fails is counted and logged by the bridge; it never raises into, or delays, the caller.

Web-layer startup (call once inside the ASGI lifespan, on the serving event loop):

    bus = await start_bus(target, channel)   # target = parse_redis_url(REDIS_URL) or None when unset
    ...                                      # bus.registry: add/remove Subscribers; bus.metrics: /metrics
    await bus.aclose()                       # on shutdown

`start_bus` logs exactly one of the two startup lines (logger "aifactory.bus", level INFO; the text lives
in `aifactory.constants`, where `aifactory-validate --cluster` reads it too):
    Redis pub/sub enabled — replica <uuid> on channel '<channel>'
    Redis pub/sub disabled (REDIS_URL unset) — in-process broadcasts only
and installs the bus, so task/agent code can simply `from aifactory.bus import send_to_user`.
`bus.state` gives the bridge state for /readyz: disabled | connecting | connected | reconnecting.

Recovery (docs/recovery.md; on unless `history_size` is 0): every event frame gets a top-level `"_offset"`
(appended once per event, so every socket still shares the same str) and `resume(sub, since)` replays what
a reconnecting client missed, from the Redis stream (through the bridge) or, without Redis, from an
in-process `Ring`. With `history_size=0` frames are exactly the bare event JSON.

Thread safety: the send functions may be called from worker threads (e.g. sync Starlette endpoints); the
work is then handed to the bus's event loop with `call_soon_threadsafe` (and the call returns 0).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import TYPE_CHECKING, Any

from aifactory.constants import DEFAULT_CHANNEL, DISABLED_LINE, ENABLED_LINE
from aifactory.envelope import SCOPES, encode_event
from aifactory.history import (
    DEFAULT_HISTORY_TTL,
    Entry,
    Offset,
    OffsetError,
    Ring,
    parse_offset,
    plan_replay,
    with_offset,
)
from aifactory.metrics import Metrics
from aifactory.registry import FrameKey, LocalRegistry, Subscriber

if TYPE_CHECKING:
    from aifactory.bridge import RedisBridge
    from aifactory.redis_url import RedisTarget

__all__ = [
    "REPLICA_ID",
    "EventBus",
    "broadcast_event",
    "get_bus",
    "install_bus",
    "send_to_org",
    "send_to_user",
    "start_bus",
]

log = logging.getLogger("aifactory.bus")

REPLICA_ID = str(uuid.uuid4())  # fresh per process: correlates this pod's Redis traffic in logs


class EventBus:
    """Local delivery plus an optional bridge to the other replicas."""

    def __init__(
        self,
        registry: LocalRegistry,
        bridge: RedisBridge | None = None,
        metrics: Metrics | None = None,
        *,
        replica_id: str | None = None,
        history_size: int = 0,
        history_ttl: int = DEFAULT_HISTORY_TTL,
    ) -> None:
        self.registry = registry
        self.bridge = bridge
        self.metrics = metrics if metrics is not None else Metrics()
        self.replica_id = replica_id or REPLICA_ID
        self.history_size = history_size
        self.history_ttl = history_ttl
        # without Redis the history is this ring; with Redis, the bridge's stream (set in start_bus)
        self.ring: Ring | None = Ring(history_size, history_ttl) if history_size else None
        self._seq = 0  # own events, when there is no bridge to number them
        self._delivered_local = self.metrics.delivered_local
        self._delivered_remote = self.metrics.delivered_remote
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def recovery(self) -> bool:
        return self.history_size > 0

    @property
    def state(self) -> str:
        return "disabled" if self.bridge is None else self.bridge.state

    def bind_loop(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Remember the serving loop so calls from other threads are handed over safely."""
        self._loop = loop or asyncio.get_running_loop()

    def broadcast_event(self, event: dict[str, Any]) -> int:
        """Send to every client on every replica; returns the number of local clients reached."""
        return self._emit("broadcast", None, event)

    def send_to_user(self, user_id: str, event: dict[str, Any]) -> int:
        """Send to every socket of one user, on every replica."""
        return self._emit("user", _check_id(user_id, "user_id"), event)

    def send_to_org(self, org_id: str, event: dict[str, Any]) -> int:
        """Send to every socket of one org's members, on every replica."""
        return self._emit("org", _check_id(org_id, "org_id"), event)

    def _emit(self, scope: str, target: str | None, event: dict[str, Any]) -> int:
        frame = encode_event(event)  # the one and only encode of this event (raises TypeError if not JSON)
        loop = self._loop
        if loop is not None:
            try:
                running = asyncio.get_running_loop()
            except RuntimeError:
                running = None
            if running is not loop and not loop.is_closed():
                loop.call_soon_threadsafe(self._emit_frame, scope, target, frame)
                return 0
        return self._emit_frame(scope, target, frame)

    def _emit_frame(self, scope: str, target: str | None, frame: str) -> int:
        if not self.history_size:
            n = self.registry.deliver(scope, target, frame)
            if n:
                self._delivered_local.inc(n)
            if self.bridge is not None:
                self.bridge.publish(scope, target, frame)
            return n
        bridge = self.bridge
        if bridge is not None:
            seq = bridge.next_seq()
            epoch, sid = bridge.epoch, bridge.last_sid
        else:
            self._seq = seq = self._seq + 1
            epoch, sid = self.ring.epoch, (0, 0)  # type: ignore[union-attr]
        stamped = with_offset(frame, Offset(epoch, sid, self.replica_id, seq).encode())
        n = self.registry.deliver(scope, target, stamped)
        if n:
            self._delivered_local.inc(n)
        if bridge is not None:
            bridge.publish(scope, target, frame, seq=seq)
        else:
            self.ring.append(Entry((0, seq), self.replica_id, seq, scope, target, frame))  # type: ignore[union-attr]
        return n

    def deliver_remote(self, scope: str, target: str | None, frame: str, key: FrameKey | None = None) -> int:
        """Called by the bridge for an event fired on another replica: local delivery only.

        `key` (stream id, origin, seq) comes with history entries; the frame then gets its `_offset`.
        """
        if scope not in SCOPES:
            return 0
        if key is not None and self.history_size and self.bridge is not None:
            off = Offset(self.bridge.epoch, key[0], self.replica_id, self.bridge.seq)
            frame = with_offset(frame, off.encode())
        n = self.registry.deliver(scope, target, frame, key)
        if n:
            self._delivered_remote.inc(n)
        return n

    async def resume(self, sub: Subscriber, since: str) -> list[str] | None:
        """The frames a reconnecting client missed since its last `_offset`, to send right after hello.

        `sub` must have been added to the registry *held*, just before this call (no await in between):
        the state captured here, before the first await, is the seam (the replay ends where the live
        frames begin, and the skip filter drops late frames the client had seen). Returns the replayed
        frames, or None when the history cannot cover the gap: the caller then sends
        [HISTORY_RESYNC_FRAME] as the next frame after hello (the client refetches). The caller sends the
        frames with `send_now()` and then `release()`s `sub`.
        """
        self_seq = self.bridge.seq if self.bridge is not None else self._seq
        until = self.bridge.last_sid if self.bridge is not None else None
        try:
            offset = parse_offset(since)
        except OffsetError:
            self.metrics.resync_history.inc()
            return None
        sub.set_skip((offset.origin, offset.seq) if offset.origin != self.replica_id else None)
        frames = await self._replay(sub, offset, self_seq, until)
        if frames is None:
            sub.set_skip(None)
            self.metrics.resync_history.inc()
            return None
        return frames

    async def _replay(
        self, sub: Subscriber, offset: Offset, self_seq: int, until: tuple[int, int] | None
    ) -> list[str] | None:
        def accept(scope: str, target: str | None) -> bool:
            return (
                scope == "broadcast"
                or (scope == "user" and target == sub.user_id)
                or (scope == "org" and target == sub.org_id)
            )

        me = self.replica_id
        if self.bridge is None:
            ring = self.ring
            if ring is None or offset.epoch != ring.epoch or offset.origin != me:
                return None
            entries = ring.after(offset.seq)
            if entries is None:
                return None
            return [
                with_offset(e.frame, Offset(ring.epoch, (0, 0), me, e.seq).encode())
                for e in entries
                if e.seq <= self_seq and accept(e.scope, e.target)
            ]
        assert until is not None
        bridge = self.bridge
        if not bridge.own_events_kept(offset, self_seq):
            return None  # some of our own events never reached the stream
        snap = await bridge.history_after(offset.sid, self_seq, self.history_size)
        if snap is None or snap.epoch != offset.epoch or not snap.complete:
            return None
        planned = plan_replay(
            snap.entries, offset, self_origin=me, self_seq=self_seq, accept=accept, until=until
        )
        if planned is None:
            return None
        # where the offset origin's last seen event sits in the stream: beyond `until`, its skip still
        # matters, so frames keep naming it
        origin_sid = next(
            (e.sid for e in snap.entries if e.origin == offset.origin and e.seq == offset.seq), None
        )
        subsumed = offset.origin == me or origin_sid is None or origin_sid <= until
        frames = []
        for e, origin_seq in planned:
            if e.sid > until and subsumed:  # one of our own events, published after `until`
                off = Offset(snap.epoch, until, me, e.seq)
            else:
                off = Offset(snap.epoch, min(e.sid, until), offset.origin, origin_seq)
            frames.append(with_offset(e.frame, off.encode()))
        return frames

    async def flush(self, timeout: float) -> None:
        """Shutdown: give the bridge up to `timeout` s to publish this replica's events so far."""
        if self.bridge is not None:
            await self.bridge.flush(timeout)

    async def aclose(self) -> None:
        """Stop the bridge (if any) and forget the loop."""
        if self.bridge is not None:
            await self.bridge.stop()
        if _installed is self:
            install_bus(None)
        self._loop = None


def _check_id(value: str, name: str) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name} must be a non-empty string")
    return value


async def start_bus(
    target: RedisTarget | None,
    channel: str = DEFAULT_CHANNEL,
    *,
    registry: LocalRegistry | None = None,
    metrics: Metrics | None = None,
    replica_id: str | None = None,
    install: bool = True,
    secret: str | None = None,
    history_size: int = 0,
    history_ttl: int = DEFAULT_HISTORY_TTL,
    **bridge_options: Any,
) -> EventBus:
    """Build the bus (and bridge when `target` is set), log the startup line, start, and install it.

    With a `target`, `secret` (AIFACTORY_AUTH_SECRET, the same on every replica) is required: the bridge
    signs every envelope with a key derived from it and drops envelopes not signed that way.

    Never waits for Redis: an unreachable Redis is not fatal, the bridge keeps retrying in the background.
    `history_size` > 0 turns recovery on (the server passes AIFACTORY_HISTORY_SIZE, default
    DEFAULT_HISTORY_SIZE; this library default keeps frames bare for embedders and unit tests).
    `bridge_options` go to RedisBridge (backoff, probe interval, size limit, queue size) — tests use them.
    """
    metrics = metrics if metrics is not None else Metrics()
    registry = registry if registry is not None else LocalRegistry(metrics)
    rid = replica_id or REPLICA_ID
    bus = EventBus(
        registry,
        metrics=metrics,
        replica_id=rid,
        history_size=history_size if target is None else 0,
        history_ttl=history_ttl,
    )
    bus.bind_loop()
    if target is None:
        log.info(DISABLED_LINE)
    else:
        from aifactory.bridge import RedisBridge  # redis-py is only imported when Redis is on
        from aifactory.envelope import EnvelopeSigner

        if not secret:
            raise ValueError("the Redis bridge needs the shared auth secret to sign its envelopes")
        bus.bridge = RedisBridge(
            target,
            channel,
            rid,
            bus.deliver_remote,
            signer=EnvelopeSigner(secret),
            metrics=metrics,
            history_size=history_size,
            history_ttl=history_ttl,
            **bridge_options,
        )
        bus.history_size = history_size
        log.info(ENABLED_LINE, rid, channel)
        await bus.bridge.start()
    if install:
        install_bus(bus)
    return bus


_installed: EventBus | None = None


def install_bus(bus: EventBus | None) -> None:
    """Make `bus` the target of the module-level send functions (None uninstalls)."""
    global _installed
    _installed = bus


def get_bus() -> EventBus:
    if _installed is None:
        raise RuntimeError("no EventBus installed: the server calls start_bus() at startup")
    return _installed


def broadcast_event(event: dict[str, Any]) -> int:
    """Send `event` to every client on every replica."""
    return get_bus().broadcast_event(event)


def send_to_user(user_id: str, event: dict[str, Any]) -> int:
    """Send `event` to every socket of `user_id`, on every replica."""
    return get_bus().send_to_user(user_id, event)


def send_to_org(org_id: str, event: dict[str, Any]) -> int:
    """Send `event` to every socket of `org_id`'s members, on every replica."""
    return get_bus().send_to_org(org_id, event)
