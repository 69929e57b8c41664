"""The Redis pub/sub bridge: publish this replica's events, route the other replicas' events locally.

It knows nothing of WebSockets: it takes already-encoded frames from the bus (`publish`) and hands remote
frames to `on_remote(scope, target, frame)`. Three background tasks, all started by `start()`:

- subscriber: connects (single / Sentinel master / one Cluster node), SUBSCRIBEs, routes envelopes. On a
  lost connection it logs ONE WARNING, then reconnects with exponential backoff (1 s doubling to a 30 s cap,
  reset after a success; retries log at DEBUG). If Redis is down at startup, the first failure is an ERROR
  and later retries DEBUG. Serving never waits for any of this.
- publisher: drains a bounded outbound queue (pipelined). `publish()` itself only appends a str, so a slow
  or dead Redis never delays a request; when the queue is full, the link is down, or PUBLISH fails, the event
  is dropped and counted (at-most-once, no replay — the spec's semantics).
- probe: every `probe_interval`, publish a probe envelope; if our own probe does not come back within
  `probe_timeout` while nothing else arrived, the subscriber is connected but deaf: count it, log a WARNING,
  and rebuild both connections. The probe also carries our last settled seq, so the other replicas notice
  a gap even when we go quiet afterwards. (Cost: one tiny PUBLISH per replica per interval.)

Every event consumes a per-origin sequence number even when it is not published (oversize, queue full, link
down), so receivers see the gap and send their clients `{"type":"resync","reason":"gap","origin":<uuid>,
"missed":<n>}`. Malformed, foreign and future-version envelopes are counted and ignored. The password only
ever reaches redis-py; logs use `RedisTarget.redacted()` and scrub exception texts.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.maint_notifications import MaintNotificationsConfig

from aifactory.envelope import (
    KIND_PROBE,
    EnvelopeError,
    decode_with_frame,
    encode_event,
    encode_probe,
    encode_with_frame,
)
from aifactory.metrics import Metrics
from aifactory.redis_url import RedisTarget

__all__ = ["DEFAULT_MAX_EVENT_BYTES", "RedisBridge", "backoff_delay", "resync_frame"]

log = logging.getLogger("aifactory.bridge")

DEFAULT_MAX_EVENT_BYTES = 512 * 1024  # far below Redis' pubsub output-buffer limits (8 MB soft / 32 MB hard)
_MAX_ORIGINS = 4096  # remembered per-origin sequence numbers (origins are per-process uuids)
_SSL_OPTIONS = (
    "ssl_cert_reqs",
    "ssl_ca_certs",
    "ssl_ca_path",
    "ssl_certfile",
    "ssl_keyfile",
    "ssl_check_hostname",
)
_BAD_NODE_FLAGS = {"fail", "fail?", "noaddr", "handshake"}
_PASSTHROUGH = ("health_check_interval", "client_name", "protocol", "max_connections")


def backoff_delay(attempt: int, initial: float = 1.0, cap: float = 30.0) -> float:
    """Seconds to wait before reconnect attempt `attempt` (0-based): initial, 2×, 4×, … capped at `cap`."""
    return min(cap, initial * (2 ** min(attempt, 62)))


def resync_frame(origin: str, missed: int) -> str:
    """The frame a client gets when events from `origin` were missed: the UI should refetch its state."""
    return encode_event({"type": "resync", "reason": "gap", "origin": origin, "missed": missed})


class _Deaf(Exception):
    """The subscription is open but our own probe never came back."""


class _Everyso:
    """Log the first occurrence at once, then at most one summary per `interval` seconds."""

    def __init__(
        self, logger: logging.LoggerAdapter[logging.Logger], level: int, interval: float = 60.0
    ) -> None:
        self.logger, self.level, self.interval = logger, level, interval
        self._last = float("-inf")
        self._suppressed = 0

    def __call__(self, msg: str, *args: object, **kwargs: Any) -> None:
        now = time.monotonic()
        if now - self._last < self.interval:
            self._suppressed += 1
            return
        suffix = f" ({self._suppressed} more since last report)" if self._suppressed else ""
        self._last, self._suppressed = now, 0
        self.logger.log(self.level, msg + suffix, *args, **kwargs)


class RedisBridge:
    """Cross-replica fan-out over one Redis pub/sub channel."""

    def __init__(
        self,
        target: RedisTarget,
        channel: str,
        replica_id: str,
        on_remote: Callable[[str, str | None, str], int],
        *,
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
    ) -> None:
        self.target = target
        self.channel = channel
        self.replica_id = replica_id
        self.on_remote = on_remote
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
        self._own_event_prefix = (
            encode_with_frame(replica_id, 0, "broadcast", None, "{}").partition(',"seq"')[0].encode()
            + b',"seq":'
        )
        self._seq = 0
        self._outbound: deque[tuple[int, str]] = deque()  # (seq, envelope); probes carry seq -1
        self._wake = asyncio.Event()
        self._connected_event = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._pub: Redis | None = None
        self._known_nodes: list[tuple[str, int]] = list(target.hosts)
        self._pub_cursor = 0
        self._last_seq: OrderedDict[str, int] = OrderedDict()
        self._last_rx = 0.0
        self._probe_nonce = 0
        self._probe_pending: int | None = None
        self._probe_sent_at = 0.0
        self._node_cursor = 0
        self._publish_failures = 0
        self._publish_warned = False
        self._log_oversize = _Everyso(self._log, logging.WARNING)
        self._log_bad = _Everyso(self._log, logging.WARNING)
        self._log_remote_error = _Everyso(self._log, logging.ERROR)
        m = self.metrics
        self._m_published = m.published
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
            asyncio.create_task(self._publisher_loop(), name="aifactory-bridge-publisher"),
            asyncio.create_task(self._probe_loop(), name="aifactory-bridge-probe"),
        ]

    async def stop(self) -> None:
        """Stop the tasks and close the connections. The loops also watch `_stopping`, because a
        cancellation racing a read timeout can be swallowed inside redis-py (Python 3.11 timeouts)."""
        self._stopping = True
        pending = set(self._tasks)
        while pending:
            for task in pending:
                task.cancel()
            _, pending = await asyncio.wait(pending, timeout=1.0)
        for task in self._tasks:
            if not task.cancelled() and task.exception() is not None:
                self._log.debug("bridge task ended with %s", self._scrub(task.exception()))  # type: ignore[arg-type]
        self._tasks = []
        await self._drop_publisher()
        self._set_state("disabled")

    async def wait_connected(self, timeout: float) -> bool:
        """True once the subscriber is live (tests, demo); False after `timeout` seconds."""
        try:
            await asyncio.wait_for(self._connected_event.wait(), timeout)
        except TimeoutError:
            return False
        return True

    def publish(self, scope: str, target: str | None, frame: str) -> bool:
        """Queue one envelope for Redis without blocking; False (counted) when it will not be published."""
        self._seq += 1  # consumed even when dropped, so receivers see the gap and resync their clients
        if len(frame) > self.max_event_bytes:
            self._m_oversize.inc()
            self._log_oversize(
                "event of %d bytes exceeds the %d-byte publish limit: delivered to this replica's "
                "clients only, not published",
                len(frame),
                self.max_event_bytes,
            )
            return False
        if self._state != "connected":
            self._m_drop["disconnected"].inc()
            return False
        if len(self._outbound) >= self.outbound_max:
            self._m_drop["outbound_full"].inc()
            return False
        self._outbound.append(
            (self._seq, encode_with_frame(self.replica_id, self._seq, scope, target, frame))
        )
        self._wake.set()
        return True

    # ------------------------------------------------------------------ helpers
    def _set_state(self, state: str) -> None:
        self._state = state
        self.metrics.connected.set(1 if state == "connected" else 0)
        if state == "connected":
            self._connected_event.set()
        else:
            self._connected_event.clear()

    def _scrub(self, exc: BaseException) -> str:
        """Exception text safe to log: no password, and short (pipeline errors quote the payload)."""
        text = f"{type(exc).__name__}: {exc}"
        for secret in (self.target.password, self.target.sentinel_password):
            if secret:
                text = text.replace(secret, "***")
        return text if len(text) <= 200 else text[:200] + "…"

    def _common_kwargs(self) -> dict[str, Any]:
        t = self.target
        kw: dict[str, Any] = {
            "username": t.username,
            "password": t.password,
            "socket_connect_timeout": t.options.get("socket_connect_timeout", self.connect_timeout),
            "socket_keepalive": t.options.get("socket_keepalive", True),
            # hosted-Redis maintenance notifications: not needed; probing them logs noise on OSS Redis
            "maint_notifications_config": MaintNotificationsConfig(enabled=False),
        }
        for name in _PASSTHROUGH:
            if name in t.options:
                kw[name] = t.options[name]
        if t.tls:
            kw["ssl"] = True
            for name in _SSL_OPTIONS:
                if name in t.options:
                    kw[name] = t.options[name]
        return kw

    def _node_kwargs(self, *, publisher: bool) -> dict[str, Any]:
        kw = self._common_kwargs()
        # No socket timeout on either connection: the subscriber's reads are timed by get_message(), and
        # `_send` bounds each publish round trip itself. (With a socket_timeout, redis-py 8 on Python 3.11
        # writes every command through asyncio.wait_for, i.e. a new task: an extra event-loop pass before
        # the bytes leave, on every publish.)
        kw["socket_timeout"] = None
        kw["retry"] = Retry(NoBackoff(), 1 if publisher else 0)
        kw.setdefault("client_name", f"aifactory-{self.replica_id[:8]}-{'pub' if publisher else 'sub'}")
        return kw

    def _sentinel(self) -> Sentinel:
        t = self.target
        skw: dict[str, Any] = {
            "socket_connect_timeout": self.connect_timeout,
            "socket_timeout": self.connect_timeout,
        }
        if t.sentinel_password:
            skw["password"] = t.sentinel_password
        if t.sentinel_username:
            skw["username"] = t.sentinel_username
        if t.tls:
            skw["ssl"] = True
        return Sentinel(list(t.hosts), sentinel_kwargs=skw)

    def _single_client(self, *, publisher: bool, host: tuple[str, int] | None = None) -> Redis:
        t = self.target
        kw = self._node_kwargs(publisher=publisher)
        if t.unix_path is not None:
            return Redis(unix_socket_path=t.unix_path, db=t.db, **kw)
        h, p = host or t.hosts[0]
        return Redis(host=h, port=p, db=t.db, **kw)

    async def _publisher(self) -> Redis:
        if self._pub is None:
            t = self.target
            if t.kind == "sentinel":
                kw = self._node_kwargs(publisher=True)
                self._pub = self._sentinel().master_for(t.service_name or "", db=t.db, **kw)
            elif t.kind == "cluster":
                # Classic PUBLISH is keyless and Redis Cluster broadcasts it to every node, so any live node
                # will do. A plain node connection that rotates on failure recovers at once; RedisCluster
                # would keep routing keyless commands to its default node after that node died.
                nodes = await self._cluster_nodes()
                self._pub = self._single_client(publisher=True, host=nodes[self._pub_cursor % len(nodes)])
            else:
                self._pub = self._single_client(publisher=True)
        return self._pub

    async def _drop_publisher(self) -> None:
        pub, self._pub = self._pub, None
        if pub is not None:
            try:
                await pub.aclose()
            except Exception as exc:  # closing a broken client must not break the loop
                self._log.debug("closing the Redis publisher failed: %s", self._scrub(exc))

    async def _cluster_nodes(self) -> list[tuple[str, int]]:
        """Cluster nodes worth talking to: the connected, non-failed ones per CLUSTER NODES of the first
        reachable known node; the URL's seed hosts when no node answers."""
        known = list(dict.fromkeys([*self._known_nodes, *self.target.hosts]))
        for host in known:
            client = self._single_client(publisher=True, host=host)
            try:
                nodes = await asyncio.wait_for(client.cluster("NODES"), self.connect_timeout)
            except Exception as exc:
                self._log.debug("CLUSTER NODES via %s:%d failed: %s", host[0], host[1], self._scrub(exc))
                continue
            finally:
                await self._close_quietly(client)
            live = sorted(
                (addr.rpartition(":")[0].strip("[]"), int(addr.rpartition(":")[2]))
                for addr, info in nodes.items()
                if info.get("connected") and not _BAD_NODE_FLAGS & set(str(info.get("flags", "")).split(","))
            )
            if live:
                self._known_nodes = live
                return live
        return known

    async def _close_quietly(self, client: Redis) -> None:
        try:
            await client.aclose()
        except Exception as exc:
            self._log.debug("closing a Redis connection failed: %s", self._scrub(exc))

    async def _open_subscription(self) -> tuple[Redis, Any, str]:
        t = self.target
        where = t.redacted()
        if t.kind == "sentinel":
            kw = self._node_kwargs(publisher=False)
            client = self._sentinel().master_for(t.service_name or "", db=t.db, **kw)
        elif t.kind == "cluster":
            nodes = await self._cluster_nodes()
            host = nodes[self._node_cursor % len(nodes)]
            where = f"cluster node {host[0]}:{host[1]}"
            client = self._single_client(publisher=False, host=host)
        else:
            client = self._single_client(publisher=False)
        pubsub = client.pubsub()
        try:
            await asyncio.wait_for(pubsub.subscribe(self.channel), self.connect_timeout)
            reply = await pubsub.get_message(timeout=self.connect_timeout)
            if not reply or reply.get("type") != "subscribe":
                raise ConnectionError("Redis did not confirm SUBSCRIBE")
        except BaseException:
            await self._close_subscription(client, pubsub)
            raise
        return client, pubsub, where

    async def _close_subscription(self, client: Redis | None, pubsub: Any) -> None:
        for closer in (pubsub, client):
            if closer is None:
                continue
            try:
                await closer.aclose()
            except Exception as exc:
                self._log.debug("closing the Redis subscriber failed: %s", self._scrub(exc))

    # ------------------------------------------------------------------ subscriber
    async def _subscriber_loop(self) -> None:
        attempt = 0
        ever_connected = False
        startup_error_logged = False
        while not self._stopping:
            client = pubsub = None
            try:
                client, pubsub, where = await self._open_subscription()
                if ever_connected:
                    self.metrics.reconnects.inc()
                    self._log.info("Redis pub/sub reconnected (%s); cross-replica fan-out resumed", where)
                else:
                    self._log.info("Redis pub/sub connected (%s)", where)
                ever_connected, attempt = True, 0
                self._last_rx = time.monotonic()
                self._probe_pending = None
                self._set_state("connected")
                await self._listen(pubsub)
            except asyncio.CancelledError:
                await self._close_subscription(client, pubsub)
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
                await self._drop_publisher()
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
                if self.target.kind == "cluster":
                    self._node_cursor += 1  # try the next node
            await self._close_subscription(client, pubsub)
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

    def _handle(self, data: bytes | str) -> None:
        if isinstance(data, bytes) and data.startswith(self._own_event_prefix):
            return  # our own event coming back: already delivered locally; skip even the JSON parse
        try:
            env, frame = decode_with_frame(data)  # frame: the publisher's own event text, not re-encoded
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
        if not self._advance(env.origin, env.seq, settled=False):
            self._m_drop["duplicate"].inc()
            return
        self._m_received.inc()
        self._deliver(env.scope, env.target, frame or "{}")

    def _advance(self, origin: str, seq: int, *, settled: bool) -> bool:
        """Track `origin`'s sequence; resync local clients on a gap. False if `seq` is not new.

        An event carries its own seq; a probe carries the last seq the origin already published or dropped
        (`settled`). The first envelope seen from an origin only sets the baseline.
        """
        last = self._last_seq.get(origin)
        if last is not None:
            if seq <= last:
                return False
            missed = seq - last - (0 if settled else 1)
            if missed > 0:
                self._resync(origin, missed)
            self._last_seq.move_to_end(origin)
        elif len(self._last_seq) >= _MAX_ORIGINS:
            self._last_seq.popitem(last=False)
        self._last_seq[origin] = seq
        return True

    def _resync(self, origin: str, missed: int) -> None:
        # The sequence is per origin, not per audience: any local client may have missed something.
        n = self._deliver("broadcast", None, resync_frame(origin, missed))
        self.metrics.resync_gap.inc(n)
        self._log.info(
            "missed %d event(s) from replica %s; sent resync to %d local client(s)", missed, origin, n
        )

    def _deliver(self, scope: str, target: str | None, frame: str) -> int:
        try:
            return self.on_remote(scope, target, frame)
        except Exception:
            self._log_remote_error("local delivery of a remote event failed", exc_info=True)
            return 0

    # ------------------------------------------------------------------ publisher
    async def _publisher_loop(self) -> None:
        while not self._stopping:
            if not self._outbound:
                self._wake.clear()
                await self._wake.wait()
                continue
            batch = [self._outbound.popleft() for _ in range(min(self.max_batch, len(self._outbound)))]
            self.metrics.outbound_depth.set(len(self._outbound))
            probes = sum(1 for seq, _ in batch if seq < 0)
            try:
                await self._send([envelope for _, envelope in batch])
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._publish_failures += 1
                self._pub_cursor += 1  # cluster: publish through the next node
                self._m_drop["publish_failed"].inc(len(batch) - probes)
                if probes:
                    self._probe_pending = None  # that probe never left: not the subscriber's fault
                self._log_publish_failure(exc, len(batch))
                await self._drop_publisher()
                continue
            self._publish_failures = 0
            self._publish_warned = False
            if len(batch) > probes:
                self._m_published.inc(len(batch) - probes)

    def _log_publish_failure(self, exc: Exception, dropped: int) -> None:
        """One WARNING per streak of failed publishes while the subscriber is fine. A refusal by Redis
        (ACL, READONLY, ...) warns at once; connection-type errors only when they persist, because during
        an outage the subscriber has already logged the one WARNING the operator needs."""
        outage_like = isinstance(exc, (RedisConnectionError, RedisTimeoutError, OSError))
        if (
            not self._publish_warned
            and self._state == "connected"
            and (not outage_like or self._publish_failures >= 3)
        ):
            self._publish_warned = True
            self._log.warning(
                "publishing to Redis keeps failing (%s); events reach only this replica's clients",
                self._scrub(exc),
            )
        else:
            self._log.debug("PUBLISH failed (%s); dropped %d envelope(s)", self._scrub(exc), dropped)

    async def _send(self, batch: list[str]) -> None:
        """PUBLISH the batch (pipelined), bounded by the URL's socket_timeout or `publish_timeout`."""
        pub = await self._publisher()
        async with asyncio.timeout(self.target.options.get("socket_timeout") or self.publish_timeout):
            if len(batch) == 1:
                await pub.publish(self.channel, batch[0])
                return
            pipe = pub.pipeline(transaction=False)
            for item in batch:
                pipe.publish(self.channel, item)
            await pipe.execute()

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
            # everything before the first still-queued event is settled (published or dropped)
            settled = self._outbound[0][0] - 1 if self._outbound else self._seq
            self._outbound.appendleft((-1, encode_probe(self.replica_id, self._probe_nonce, settled)))
            self._wake.set()
