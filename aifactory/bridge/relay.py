"""The Redis pub/sub bridge: publish this replica's events, route the other replicas' events locally.

It knows nothing of WebSockets: it takes already-encoded frames from the bus (`publish`) and hands remote
frames to `on_remote(scope, target, frame)`. Its parts: `connections` (redis-py clients per topology),
`publisher` (the outbound queue), `sequence` (per-origin gap bookkeeping). Three background tasks, all
started by `start()`:

- subscriber: connects (single / Sentinel master / one Cluster node), SUBSCRIBEs, routes envelopes. On a
  lost connection it logs ONE WARNING, then reconnects with exponential backoff (1 s doubling to a 30 s cap,
  reset after a success; retries log at DEBUG). If Redis is down at startup, the first failure is an ERROR
  and later retries DEBUG. Serving never waits for any of this.
- publisher: drains the bounded outbound queue (pipelined). `publish()` itself only appends a str, so a slow
  or dead Redis never delays a request; when the queue is full, the link is down, or PUBLISH fails, the event
  is dropped and counted (at-most-once delivery, no replay).
- probe: every `probe_interval`, publish a probe envelope; if our own probe does not come back within
  `probe_timeout` while nothing else arrived, the subscriber is connected but deaf: count it, log a WARNING,
  and rebuild both connections. The probe also carries our last settled seq, so the other replicas notice
  a gap even when we go quiet afterwards. (Cost: one tiny PUBLISH per replica per interval.)

Every event consumes a per-origin sequence number even when it is not published (oversize, queue full, link
down), so receivers see the gap and send their clients `{"type":"resync","reason":"gap","origin":<uuid>,
"missed":<n>}`. Malformed, foreign and future-version envelopes are counted and ignored.

Every envelope (events and probes) is signed with a key derived from AIFACTORY_AUTH_SECRET
(`EnvelopeSigner`); unsigned or badly signed messages are dropped before they are parsed and counted as
`aifactory_bus_malformed_total{reason="unsigned"|"bad_signature"}`, so write access to Redis alone can
neither reach a client nor move any origin's sequence state. The password only ever reaches redis-py;
logs use `RedisTarget.redacted()` and scrub exception texts.

With a history (`history_size` > 0, see docs/recovery.md) events are appended to a Redis stream and
published by one script, every live message carries its stream id (a header in front of the signed
message), and a subscriber that lost its connection first reads the entries it missed (`_catch_up`)
instead of announcing a gap. Stream entries are signed messages too and are verified the same way.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from aifactory.bridge.connections import RedisConnections
from aifactory.bridge.publisher import Publisher
from aifactory.bridge.sequence import OriginSequences
from aifactory.bridge.stream import Replayable, StreamHistory, read_page, split_published
from aifactory.envelope import (
    KIND_PROBE,
    SIGNED_PREFIX_LEN,
    EnvelopeError,
    EnvelopeSigner,
    decode_with_frame,
    encode_event,
    encode_probe,
    encode_with_frame,
    own_event_prefix,
)
from aifactory.history import HISTORY_RESYNC_FRAME, NO_EPOCH, Entry, Offset
from aifactory.metrics import Metrics
from aifactory.redis_url import RedisTarget
from aifactory.throttle import ThrottledLog

__all__ = ["DEFAULT_MAX_EVENT_BYTES", "RedisBridge", "backoff_delay", "resync_frame"]

log = logging.getLogger("aifactory.bridge")

DEFAULT_MAX_EVENT_BYTES = 512 * 1024  # far below Redis' pubsub output-buffer limits (8 MB soft / 32 MB hard)


def backoff_delay(attempt: int, initial: float = 1.0, cap: float = 30.0) -> float:
    """Seconds to wait before reconnect attempt `attempt` (0-based): initial, 2×, 4×, … capped at `cap`."""
    return min(cap, initial * 2.0 ** min(attempt, 62))


def resync_frame(origin: str, missed: int) -> str:
    """The frame a client gets when events from `origin` were missed: the UI should refetch its state."""
    return encode_event({"type": "resync", "reason": "gap", "origin": origin, "missed": missed})


class _Deaf(Exception):
    """The subscription is open but our own probe never came back."""


class RedisBridge:
    """Cross-replica fan-out over one Redis pub/sub channel."""

    def __init__(
        self,
        target: RedisTarget,
        channel: str,
        replica_id: str,
        on_remote: Callable[[str, str | None, str], int],
        *,
        signer: EnvelopeSigner,
        metrics: Metrics | None = None,
        backoff_initial: float = 1.0,
        backoff_max: float = 30.0,
        probe_interval: float = 5.0,
        probe_timeout: float | None = None,
        max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
        outbound_max: int = 10_000,
        connect_timeout: float = 5.0,
        publish_timeout: float = 5.0,
        max_batch: int = 256,
        history_size: int = 0,
        history_ttl: int = 300,
    ) -> None:
        self.target = target
        self.channel = channel
        self.replica_id = replica_id
        self.on_remote = on_remote
        self._signer = signer
        self.metrics = metrics if metrics is not None else Metrics()
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.probe_interval = probe_interval
        self.probe_timeout = probe_timeout if probe_timeout is not None else max(2 * probe_interval, 1.0)
        self.max_event_bytes = max_event_bytes
        self.outbound_max = outbound_max
        self.connect_timeout = connect_timeout
        self.publish_timeout = publish_timeout
        self.max_batch = max_batch

        # every record carries `replica` (this bridge's id), so in-process replicas can be told apart
        self._log = logging.LoggerAdapter(log, {"replica": replica_id})
        self._state = "connecting"
        self._stopping = False
        self._own_event_prefix = own_event_prefix(replica_id)
        self._redis = RedisConnections(target, replica_id, self._log, connect_timeout=connect_timeout)
        self._seq = 0
        self.history = (
            StreamHistory(channel, history_size, history_ttl, signer.verify) if history_size else None
        )
        self._last_drop: tuple[int, float] | None = None  # (own seq, wall-clock ms) of the newest drop
        self._own_echoed = 0  # the newest own seq seen back on the subscription
        self._out = Publisher(
            self._redis,
            channel,
            self.metrics,
            self._log,
            outbound_max=outbound_max,
            max_batch=max_batch,
            publish_timeout=publish_timeout,
            is_connected=lambda: self._state == "connected",
            is_stopping=lambda: self._stopping,
            on_probe_lost=self._forget_probe,
            on_dropped=self._note_drop,
            history=self.history,
        )
        self._connected_event = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._sequences = OriginSequences()
        self._last_rx = 0.0
        self._probe_nonce = 0
        self._probe_pending: int | None = None
        self._probe_sent_at = 0.0
        self._log_oversize = ThrottledLog(self._log, logging.WARNING)
        self._log_bad = ThrottledLog(self._log, logging.WARNING)
        self._log_remote_error = ThrottledLog(self._log, logging.ERROR)
        m = self.metrics
        self._m_oversize = m.oversize
        self._m_received = m.received
        self._m_drop = m.drop
        self._m_bad = m.bad

    # ------------------------------------------------------------------ public API
    @property
    def state(self) -> str:
        """disabled (stopped) | connecting (never connected yet) | connected | reconnecting."""
        return self._state

    async def start(self) -> None:
        """Start the background tasks and return at once (Redis being down is not fatal)."""
        if self._tasks:
            return
        self._tasks = [
            asyncio.create_task(self._subscriber_loop(), name="aifactory-bridge-subscriber"),
            asyncio.create_task(self._out.run(), name="aifactory-bridge-publisher"),
            asyncio.create_task(self._probe_loop(), name="aifactory-bridge-probe"),
        ]

    async def flush(self, timeout: float) -> bool:
        """Wait (at most `timeout` s) until every own event so far is published or dropped (shutdown)."""
        deadline = time.monotonic() + timeout
        target = self._seq
        while self._out.settled(self._seq) < target:
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.005)
        return True

    async def keyed_client(self) -> Any:
        """A client of its own for keyed commands (the task store); the caller closes it."""
        return await self._redis.command_client()

    async def stop(self) -> None:
        """Stop the tasks and close the connections (own events still queued get one short
        chance to go out). The loops also watch `_stopping`, because a
        cancellation racing a read timeout can be swallowed inside redis-py (Python 3.11 timeouts)."""
        if self._tasks and self._state == "connected":
            await self.flush(min(2.0, self.publish_timeout))
        self._stopping = True
        pending = set(self._tasks)
        while pending:
            for task in pending:
                task.cancel()
            _, pending = await asyncio.wait(pending, timeout=1.0)
        for task in self._tasks:
            error = None if task.cancelled() else task.exception()
            if error is not None:
                self._log.debug("bridge task ended with %s", self._scrub(error))
        self._tasks = []
        await self._redis.drop_publisher()
        self._set_state("disabled")

    async def wait_connected(self, timeout: float) -> bool:
        """True once the subscriber is live (tests, demo); False after `timeout` seconds."""
        try:
            await asyncio.wait_for(self._connected_event.wait(), timeout)
        except TimeoutError:
            return False
        return True

    @property
    def seq(self) -> int:
        """The last sequence number this replica gave one of its events."""
        return self._seq

    def next_seq(self) -> int:
        """Number the next own event before local delivery (its frame's `_offset` names it)."""
        self._seq += 1
        return self._seq

    @property
    def epoch(self) -> str:
        return self.history.epoch if self.history is not None else NO_EPOCH

    @property
    def last_sid(self) -> tuple[int, int]:
        return self.history.last_sid if self.history is not None else (0, 0)

    def publish(self, scope: str, target: str | None, frame: str, *, seq: int | None = None) -> bool:
        """Queue one envelope for Redis without blocking; False (counted) when it will not be published.

        `seq` is the number `next_seq()` gave this event; without it the next one is taken here."""
        if seq is None:
            seq = self.next_seq()  # consumed even when dropped: receivers see the gap and resync
        published = self._publish(scope, target, frame, seq)
        if not published:
            self._note_drop(seq)
        return published

    def _note_drop(self, seq: int) -> None:
        self._last_drop = (seq, time.time() * 1000)

    def _publish(self, scope: str, target: str | None, frame: str, seq: int) -> bool:
        if len(frame) > self.max_event_bytes:
            self._m_oversize.inc()
            self._log_oversize(
                "event of %d bytes exceeds the %d-byte publish limit: delivered to this replica's "
                "clients only, not published",
                len(frame),
                self.max_event_bytes,
            )
            return False
        if self._state != "connected" and self.history is None:
            # (with a history, try anyway: the publisher's own connection may be fine, and an event that
            # reaches the stream can still be replayed to the other replicas' clients)
            self._m_drop["disconnected"].inc()
            return False
        if self._out.full():
            self._m_drop["outbound_full"].inc()
            return False
        envelope = encode_with_frame(self.replica_id, seq, scope, target, frame)
        self._out.put(seq, self._signer.sign(envelope))
        return True

    def own_events_kept(self, offset: Offset, self_seq: int) -> bool:
        """False when one of our events a client resuming from `offset` may lack never reached the
        stream (dropped while Redis was down, oversize, queue full)."""
        if self._last_drop is None:
            return True
        seq, wall_ms = self._last_drop
        if offset.origin == self.replica_id:
            return seq <= offset.seq
        # dropped after the client's last stream entry (2 s margin for clock skew against Redis' clock)
        return wall_ms < offset.sid[0] - 2000

    async def history_after(self, sid: tuple[int, int], self_seq: int, limit: int) -> Replayable | None:
        """The stream after `sid`, once our own events up to `self_seq` are in it; None if unreadable."""
        if self.history is None or self._state != "connected":
            return None
        deadline = time.monotonic() + self.publish_timeout
        while self._out.settled(self._seq) < self_seq:
            if time.monotonic() > deadline:
                return None
            await asyncio.sleep(0.002)
        try:
            client = await self._redis.keyed()
            return await asyncio.wait_for(self.history.after(client, sid, limit), self.publish_timeout)
        except Exception as exc:
            self._log.debug("reading the history failed: %s", self._scrub(exc))
            return None

    # ------------------------------------------------------------------ helpers
    def _set_state(self, state: str) -> None:
        self._state = state
        self.metrics.connected.set(1 if state == "connected" else 0)
        if state == "connected":
            self._connected_event.set()
        else:
            self._connected_event.clear()

    def _scrub(self, exc: BaseException) -> str:
        return self._redis.scrub(exc)

    # ------------------------------------------------------------------ subscriber
    async def _subscriber_loop(self) -> None:
        attempt = 0
        ever_connected = False
        startup_error_logged = False
        while not self._stopping:
            client = pubsub = None
            try:
                client, pubsub, where = await self._redis.open_subscription(self.channel)
                if ever_connected:
                    self.metrics.reconnects.inc()
                    self._log.info("Redis pub/sub reconnected (%s); cross-replica fan-out resumed", where)
                else:
                    self._log.info("Redis pub/sub connected (%s)", where)
                ever_connected, attempt = True, 0
                if self.history is not None:
                    await self._catch_up()
                self._last_rx = time.monotonic()
                self._probe_pending = None
                self._set_state("connected")
                await self._listen(pubsub)
            except asyncio.CancelledError:
                await self._redis.close_subscription(client, pubsub)
                raise
            except _Deaf as exc:
                self._set_state("reconnecting")  # before any await: publish() stops queueing at once
                self.metrics.deaf.inc()
                self._log.warning(
                    "Redis subscriber is connected but deaf (%s); reconnecting — "
                    "own-replica delivery continues",
                    exc,
                )
                # after a failover the publisher may be talking to the wrong node: rebuild it too
                await self._redis.drop_publisher()
            except Exception as exc:
                if self._state == "connected":
                    self._log.warning(
                        "Redis connection lost (%s); reconnecting with backoff %gs → %gs — "
                        "own-replica delivery continues, other replicas miss events until it is back",
                        self._scrub(exc),
                        self.backoff_initial,
                        self.backoff_max,
                    )
                elif not ever_connected and not startup_error_logged:
                    startup_error_logged = True
                    self._log.error(
                        "Redis unreachable at startup (%s): %s — serving anyway with in-process delivery, "
                        "retrying with backoff %gs → %gs",
                        self.target.redacted(),
                        self._scrub(exc),
                        self.backoff_initial,
                        self.backoff_max,
                    )
                else:
                    self._log.debug("Redis connect attempt %d failed: %s", attempt + 1, self._scrub(exc))
                self._set_state("reconnecting" if ever_connected else "connecting")
                self._redis.rotate_subscriber()  # cluster: try the next node
            await self._redis.close_subscription(client, pubsub)
            if self._stopping:
                return
            self._set_state("reconnecting" if ever_connected else "connecting")
            delay = backoff_delay(attempt, self.backoff_initial, self.backoff_max)
            attempt += 1
            self._log.debug("next Redis connect attempt in %.2fs", delay)
            await asyncio.sleep(delay)

    async def _listen(self, pubsub: Any) -> None:
        tick = max(0.01, min(0.5, self.probe_interval / 2, self.probe_timeout / 2))
        while not self._stopping:
            msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=tick)
            now = time.monotonic()
            if msg is not None and msg.get("type") == "message":
                self._last_rx = now
                self._handle(msg["data"])
            elif (
                self._probe_pending is not None
                and now - self._probe_sent_at > self.probe_timeout
                and self._last_rx < self._probe_sent_at
            ):
                raise _Deaf(f"own probe not seen for {now - self._probe_sent_at:.1f}s")

    async def _catch_up(self) -> None:
        """After (re)subscribing: deliver the stream entries published while we were not listening.

        The subscription is already open, so nothing published from now on is missed; messages it
        buffered meanwhile are skipped by stream id in `_handle`."""
        h = self.history
        assert h is not None
        client = await self._redis.keyed()
        if h.epoch == NO_EPOCH:  # first contact: start from the stream's end
            page = await read_page(client, h.keys, (0, 0), 1, h._candidate, h.ttl)
            h.epoch, h.last_sid = page.epoch, page.last
            return
        snap = await asyncio.wait_for(h.after(client, h.last_sid, h.size), self.publish_timeout)
        if snap.epoch != h.epoch or not snap.complete:
            self._history_lost(snap.epoch, snap.last)
            return
        for entry in snap.entries:
            self._handle_entry(entry)
        if snap.entries:
            self._log.info("caught up %d event(s) from the history after reconnecting", len(snap.entries))

    def _history_lost(self, epoch: str, last: tuple[int, int]) -> None:
        """The stream we followed is gone (flushed, replaced, trimmed past us): every local client resyncs."""
        h = self.history
        assert h is not None
        h.epoch, h.last_sid = epoch, last
        n = self._deliver("broadcast", None, HISTORY_RESYNC_FRAME)
        self.metrics.resync_history.inc(n)
        # INFO: after an outage the operator already has the one WARNING; a restarted Redis without
        # persistence always comes back with a new history
        self._log.info(
            "the Redis event history was lost (flushed, replaced or trimmed); sent resync to %d local "
            "client(s)",
            n,
        )

    def _handle_entry(self, entry: Entry) -> None:
        h = self.history
        assert h is not None
        if entry.sid <= h.last_sid:
            return
        h.last_sid = entry.sid
        if entry.origin == self.replica_id:
            self._own_echoed = max(self._own_echoed, entry.seq)
            return
        if not self._advance(entry.origin, entry.seq, settled=False):
            self._m_drop["duplicate"].inc()
            return
        self._m_received.inc()
        self._deliver(entry.scope, entry.target, entry.frame, (entry.sid, entry.origin, entry.seq))

    def _handle(self, data: bytes | str) -> None:
        sid: tuple[int, int] | None = None
        epoch: str | None = None
        if self.history is not None and isinstance(data, bytes):
            sid, epoch, data = split_published(data)  # the stream id header is outside the signature
        if isinstance(data, bytes) and data.startswith(self._own_event_prefix, SIGNED_PREFIX_LEN):
            if sid is not None:
                self._own_echo(sid, epoch, data)
            return  # our own event coming back: already delivered locally
        try:
            body = self._signer.verify(data)  # before any parsing: unsigned bytes never reach the decoder
            env, frame = decode_with_frame(body)  # frame: the publisher's own event text, not re-encoded
        except EnvelopeError as exc:
            self._m_bad[exc.reason].inc()
            self._log_bad("ignored an envelope on channel '%s' (%s): %s", self.channel, exc.reason, exc)
            return
        if env.kind == KIND_PROBE:
            if env.origin != self.replica_id:
                self._advance(env.origin, env.seq, settled=True)  # another replica's periodic heartbeat
            elif self._probe_pending is not None and env.nonce >= self._probe_pending:
                self._probe_pending = None
            return
        if env.origin == self.replica_id:
            return  # our own event: already delivered locally, never twice
        # only a verified, new event may move the stream cursor: a replayed message with a forged id
        # header is a duplicate by seq and changes nothing
        if sid is not None and not self._follow(sid, epoch):
            self._m_drop["duplicate"].inc()
            return
        if not self._advance(env.origin, env.seq, settled=False):
            self._m_drop["duplicate"].inc()
            return
        if sid is not None:
            self.history.last_sid = sid  # type: ignore[union-attr]
        self._m_received.inc()
        key = (sid, env.origin, env.seq) if sid is not None else None
        self._deliver(env.scope, env.target, frame or "{}", key)

    def _follow(self, sid: tuple[int, int], epoch: str | None) -> bool:
        """Epoch bookkeeping for a live message; False when the catch-up already delivered it."""
        h = self.history
        assert h is not None
        if epoch != h.epoch:
            if h.epoch != NO_EPOCH:
                self._history_lost(epoch or NO_EPOCH, (0, 0))
            h.epoch = epoch or NO_EPOCH
            return True
        return sid > h.last_sid

    def _own_echo(self, sid: tuple[int, int], epoch: str | None, data: bytes) -> None:
        """Our own event in stream order: it moves the cursor (offsets stay fresh on a replica with no
        remote traffic), once verified and only for a seq we have not seen come back yet."""
        try:
            seq = int(data[SIGNED_PREFIX_LEN + len(self._own_event_prefix) :].partition(b",")[0])
            self._signer.verify(data)
        except (ValueError, EnvelopeError):
            return
        if seq <= self._own_echoed or not self._follow(sid, epoch):
            return
        self._own_echoed = seq
        self.history.last_sid = sid  # type: ignore[union-attr]

    def _advance(self, origin: str, seq: int, *, settled: bool) -> bool:
        """Track `origin`'s sequence; resync local clients on a gap. False if `seq` is not new."""
        missed = self._sequences.advance(origin, seq, settled=settled)
        if missed is None:
            return False
        if missed:
            self._resync(origin, missed)
        return True

    def _resync(self, origin: str, missed: int) -> None:
        # The sequence is per origin, not per audience: any local client may have missed something.
        n = self._deliver("broadcast", None, resync_frame(origin, missed))
        self.metrics.resync_gap.inc(n)
        self._log.info(
            "missed %d event(s) from replica %s; sent resync to %d local client(s)", missed, origin, n
        )

    def _deliver(
        self, scope: str, target: str | None, frame: str, key: tuple[tuple[int, int], str, int] | None = None
    ) -> int:
        try:
            if key is None:
                return self.on_remote(scope, target, frame)
            return self.on_remote(scope, target, frame, key)  # type: ignore[call-arg]
        except Exception:
            self._log_remote_error("local delivery of a remote event failed", exc_info=True)
            return 0

    # ------------------------------------------------------------------ probe
    async def _probe_loop(self) -> None:
        while not self._stopping:
            await asyncio.sleep(self.probe_interval)
            now = time.monotonic()
            if self._state != "connected" or self._probe_pending is not None:
                continue
            self._probe_nonce += 1
            self._probe_pending = self._probe_nonce
            self._probe_sent_at = now
            settled = self._out.settled(self._seq)
            self._out.put_probe(self._signer.sign(encode_probe(self.replica_id, self._probe_nonce, settled)))

    def _forget_probe(self) -> None:
        self._probe_pending = None
