"""The bridge's redis-py clients for each REDIS_URL topology: single node, Sentinel master, Cluster node.

Builds the publisher and the subscription from a parsed `RedisTarget` and finds live Cluster nodes; it
knows nothing of envelopes, sequence numbers or the loops that use it. The password only ever reaches
redis-py: log texts go through `scrub`.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff
from redis.maint_notifications import MaintNotificationsConfig

from aifactory.redis_url import RedisTarget

__all__ = ["RedisConnections"]

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


class RedisConnections:
    """One publisher client (kept until dropped) and fresh subscriptions, for one Redis target.

    On a Cluster, classic PUBLISH is keyless and Redis broadcasts it to every node, so any live node will
    do: `rotate_publisher` / `rotate_subscriber` move to the next node after a failure.
    """

    def __init__(
        self,
        target: RedisTarget,
        replica_id: str,
        log: logging.LoggerAdapter[logging.Logger],
        *,
        connect_timeout: float = 5.0,
    ) -> None:
        self.target = target
        self.replica_id = replica_id
        self.connect_timeout = connect_timeout
        self._log = log
        self._pub: Redis | None = None
        self._keyed: Any = None  # Cluster only: a RedisCluster for the history's keyed commands
        self._known_nodes: list[tuple[str, int]] = list(target.hosts)
        self._pub_cursor = 0
        self._node_cursor = 0

    def scrub(self, exc: BaseException) -> str:
        """Exception text safe to log: no password, and short (pipeline errors quote the payload)."""
        text = f"{type(exc).__name__}: {exc}"
        for secret in (self.target.password, self.target.sentinel_password):
            if secret:
                text = text.replace(secret, "***")
        return text if len(text) <= 200 else text[:200] + "…"

    def rotate_publisher(self) -> None:
        """Cluster: publish through the next node after a failure."""
        self._pub_cursor += 1

    def rotate_subscriber(self) -> None:
        """Cluster: subscribe on the next node after a failure."""
        if self.target.kind == "cluster":
            self._node_cursor += 1

    # ------------------------------------------------------------------ client construction
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
        # the bridge bounds each publish round trip itself. (With a socket_timeout, redis-py 8 on Python
        # 3.11 writes every command through asyncio.wait_for, i.e. a new task: an extra event-loop pass
        # before the bytes leave, on every publish.)
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
        return Sentinel(list(t.hosts), sentinel_kwargs=skw)  # type: ignore[no-untyped-call]  # redis-py

    def _single_client(self, *, publisher: bool, host: tuple[str, int] | None = None) -> Redis:
        t = self.target
        kw = self._node_kwargs(publisher=publisher)
        if t.unix_path is not None:
            return Redis(unix_socket_path=t.unix_path, db=t.db, **kw)
        h, p = host or t.hosts[0]
        return Redis(host=h, port=p, db=t.db, **kw)

    # ------------------------------------------------------------------ publisher
    async def publisher(self) -> Redis:
        """The publishing client, built on first use and kept until `drop_publisher`."""
        if self._pub is None:
            t = self.target
            if t.kind == "sentinel":
                kw = self._node_kwargs(publisher=True)
                self._pub = self._sentinel().master_for(t.service_name or "", db=t.db, **kw)
            elif t.kind == "cluster":
                # A plain node connection that rotates on failure recovers at once; RedisCluster would
                # keep routing keyless commands to its default node after that node died.
                nodes = await self.cluster_nodes()
                self._pub = self._single_client(publisher=True, host=nodes[self._pub_cursor % len(nodes)])
            else:
                self._pub = self._single_client(publisher=True)
        return self._pub

    async def keyed(self) -> Any:
        """The client for the history's keyed commands (scripts, reads): the publisher, except on a
        Cluster, where the stream's slot owner must run them (a RedisCluster follows MOVED)."""
        if self.target.kind != "cluster":
            return await self.publisher()
        if self._keyed is None:
            self._keyed = await self.command_client()
        return self._keyed

    async def command_client(self) -> Any:
        """A new client for keyed commands on this target (Cluster: a RedisCluster, following MOVED);
        the caller owns and closes it."""
        t = self.target
        kw = self._node_kwargs(publisher=True)
        if t.kind == "sentinel":
            return self._sentinel().master_for(t.service_name or "", db=t.db, **kw)
        if t.kind != "cluster":
            return self._single_client(publisher=True)
        from redis.asyncio.cluster import ClusterNode, RedisCluster

        for name in ("retry", "maint_notifications_config", "client_name", "socket_keepalive"):
            kw.pop(name, None)
        nodes = [ClusterNode(h, p) for h, p in await self.cluster_nodes()]
        return RedisCluster(startup_nodes=nodes, **kw)

    async def drop_publisher(self) -> None:
        """Close the publisher (if any); the next `publisher()` builds a fresh one."""
        pub, self._pub = self._pub, None
        keyed, self._keyed = self._keyed, None
        for client in (pub, keyed):
            if client is None:
                continue
            try:
                await client.aclose()
            except Exception as exc:  # closing a broken client must not break the loop
                self._log.debug("closing the Redis publisher failed: %s", self.scrub(exc))

    # ------------------------------------------------------------------ cluster discovery
    async def cluster_nodes(self) -> list[tuple[str, int]]:
        """Cluster nodes worth talking to: the connected, non-failed ones per CLUSTER NODES of the first
        reachable known node; the URL's seed hosts when no node answers."""
        known = list(dict.fromkeys([*self._known_nodes, *self.target.hosts]))
        for host in known:
            client = self._single_client(publisher=True, host=host)
            try:
                nodes = await asyncio.wait_for(client.cluster("NODES"), self.connect_timeout)
            except Exception as exc:
                self._log.debug("CLUSTER NODES via %s:%d failed: %s", host[0], host[1], self.scrub(exc))
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
            self._log.debug("closing a Redis connection failed: %s", self.scrub(exc))

    # ------------------------------------------------------------------ subscriber
    async def open_subscription(self, channel: str) -> tuple[Redis, Any, str]:
        """(client, pubsub, where) with SUBSCRIBE confirmed; `where` is a password-free description."""
        t = self.target
        where = t.redacted()
        if t.kind == "sentinel":
            kw = self._node_kwargs(publisher=False)
            client = self._sentinel().master_for(t.service_name or "", db=t.db, **kw)
        elif t.kind == "cluster":
            nodes = await self.cluster_nodes()
            host = nodes[self._node_cursor % len(nodes)]
            where = f"cluster node {host[0]}:{host[1]}"
            client = self._single_client(publisher=False, host=host)
        else:
            client = self._single_client(publisher=False)
        pubsub = client.pubsub()
        try:
            await asyncio.wait_for(pubsub.subscribe(channel), self.connect_timeout)
            reply = await pubsub.get_message(timeout=self.connect_timeout)
            if not reply or reply.get("type") != "subscribe":
                raise ConnectionError("Redis did not confirm SUBSCRIBE")
        except BaseException:
            await self.close_subscription(client, pubsub)
            raise
        return client, pubsub, where

    async def close_subscription(self, client: Redis | None, pubsub: Any) -> None:
        """Close a subscription's pubsub and client, logging (never raising) failures."""
        for closer in (pubsub, client):
            if closer is None:
                continue
            try:
                await closer.aclose()
            except Exception as exc:
                self._log.debug("closing the Redis subscriber failed: %s", self.scrub(exc))
