"""The bridge's outbound side: a bounded queue of envelopes drained to Redis in pipelined batches.

`put()` only appends a str, so a slow or dead Redis never delays a request; the bridge refuses events
(and counts them) before they get here when the link is down or the queue is full. A batch that fails is
dropped and counted. With a history (`aifactory.bridge.stream`), events go through its publish script
(XADD + PUBLISH in one call), so the other replicas can replay what they missed.

A probe in a failed batch is the subscriber's business, not the publisher's: when Redis *answered* with a
refusal (ACL, READONLY) the link is alive, so the probe is forgotten (`on_probe_lost`); when the PUBLISH
timed out or the connection broke, the probe stays pending and is retried once on a fresh connection.
A hung Redis (SIGSTOP, a stalled proxy) then leaves it unanswered and the subscriber reports itself
deaf, instead of every timed-out probe quietly clearing itself so that an idle replica never noticed.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from aifactory.bridge.connections import RedisConnections
from aifactory.bridge.stream import StreamHistory
from aifactory.metrics import Metrics

__all__ = ["PROBE_SEQ", "Publisher"]

PROBE_SEQ = -1  # queue entries with this seq are probes: not counted as published or dropped events


class Publisher:
    """Owns the outbound queue and the loop that PUBLISHes it through `redis`'s publisher client."""

    def __init__(
        self,
        redis: RedisConnections,
        channel: str,
        metrics: Metrics,
        log: logging.LoggerAdapter[logging.Logger],
        *,
        outbound_max: int,
        max_batch: int,
        publish_timeout: float,
        is_connected: Callable[[], bool],
        is_stopping: Callable[[], bool],
        on_probe_lost: Callable[[], None],
        on_dropped: Callable[[int], None] = lambda _seq: None,
        history: StreamHistory | None = None,
    ) -> None:
        self.redis = redis
        self.channel = channel
        self.metrics = metrics
        self.outbound_max = outbound_max
        self.max_batch = max_batch
        self.publish_timeout = publish_timeout
        self._log = log
        self._is_connected = is_connected
        self._is_stopping = is_stopping
        self._on_probe_lost = on_probe_lost
        self._on_dropped = on_dropped
        self.history = history
        self._inflight: int | None = None  # first event seq of the batch being sent
        self._queue: deque[tuple[int, str]] = deque()  # (seq, envelope)
        self._retried_probe: str | None = None  # a probe is retried once after a broken PUBLISH
        self._wake = asyncio.Event()
        self._failures = 0
        self._warned = False
        self._m_published = metrics.published
        self._m_drop = metrics.drop

    def full(self) -> bool:
        return len(self._queue) >= self.outbound_max

    def put(self, seq: int, envelope: str) -> None:
        """Queue one event envelope (never blocks)."""
        self._queue.append((seq, envelope))
        self._wake.set()

    def put_probe(self, envelope: str) -> None:
        """Queue a probe ahead of every event, so a long queue cannot make it look lost."""
        self._queue.appendleft((PROBE_SEQ, envelope))
        self._wake.set()

    def settled(self, last_seq: int) -> int:
        """The last seq already published or dropped: everything before the first queued or in-flight
        event."""
        first = next((seq for seq, _ in self._queue if seq != PROBE_SEQ), None)
        if self._inflight is not None:
            first = self._inflight
        return first - 1 if first is not None else last_seq

    async def run(self) -> None:
        """Drain the queue until the bridge stops; failures are counted, logged and never raised."""
        while not self._is_stopping():
            if not self._queue:
                self._wake.clear()
                await self._wake.wait()
                continue
            batch = [self._queue.popleft() for _ in range(min(self.max_batch, len(self._queue)))]
            self.metrics.outbound_depth.set(len(self._queue))
            probes = sum(1 for seq, _ in batch if seq < 0)
            self._inflight = next((seq for seq, _ in batch if seq != PROBE_SEQ), None)
            try:
                await self._send(batch)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if len(batch) > probes:
                    self._on_dropped(max(seq for seq, _ in batch))
                self._failures += 1
                self.redis.rotate_publisher()  # cluster: publish through the next node
                self._m_drop["publish_failed"].inc(len(batch) - probes)
                if probes:
                    self._probe_failed(batch, exc)
                self._log_failure(exc, len(batch))
                await self.redis.drop_publisher()
                continue
            finally:
                self._inflight = None
            self._failures = 0
            self._warned = False
            if len(batch) > probes:
                self._m_published.inc(len(batch) - probes)

    def _probe_failed(self, batch: list[tuple[int, str]], exc: Exception) -> None:
        """Redis refused (it is alive): forget the probe. Timed out / broke: keep it pending, retry once."""
        if isinstance(exc, ResponseError):
            self._on_probe_lost()
            return
        for seq, envelope in batch:
            if seq != PROBE_SEQ:
                continue
            if envelope == self._retried_probe or not self._is_connected():
                self._retried_probe = None  # failed twice: let the subscriber's deaf check decide
            else:
                self._retried_probe = envelope
                self._queue.appendleft((PROBE_SEQ, envelope))
                self._wake.set()

    def _log_failure(self, exc: Exception, dropped: int) -> None:
        """One WARNING per streak of failed publishes while the subscriber is fine. A refusal by Redis
        (ACL, READONLY, ...) warns at once; connection-type errors only when they persist, because during
        an outage the subscriber has already logged the one WARNING the operator needs."""
        outage_like = isinstance(exc, (RedisConnectionError, RedisTimeoutError, OSError))
        if not self._warned and self._is_connected() and (not outage_like or self._failures >= 3):
            self._warned = True
            self._log.warning(
                "publishing to Redis keeps failing (%s); events reach only this replica's clients",
                self.redis.scrub(exc),
            )
        else:
            self._log.debug("PUBLISH failed (%s); dropped %d envelope(s)", self.redis.scrub(exc), dropped)

    async def _send(self, entries: list[tuple[int, str]]) -> None:
        """PUBLISH the batch (pipelined), bounded by the URL's socket_timeout or `publish_timeout`."""
        pub = await self.redis.publisher()
        url_timeout = self.redis.target.options.get("socket_timeout")  # a float, parsed from REDIS_URL
        timeout = url_timeout if isinstance(url_timeout, float) and url_timeout else self.publish_timeout
        async with asyncio.timeout(timeout):
            if self.history is not None:
                for seq, probe in entries:
                    if seq == PROBE_SEQ:
                        await pub.publish(self.channel, probe)
                events = [envelope for seq, envelope in entries if seq != PROBE_SEQ]
                if events:
                    await self.history.append(await self.redis.keyed(), events)
                return
            batch = [envelope for _, envelope in entries]
            if len(batch) == 1:
                await pub.publish(self.channel, batch[0])
                return
            pipe = pub.pipeline(transaction=False)
            for item in batch:
                pipe.publish(self.channel, item)
            await pipe.execute()
