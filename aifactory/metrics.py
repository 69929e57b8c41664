"""Prometheus counters and gauges for the event bus and the Redis bridge.

Each `Metrics` owns its own CollectorRegistry, so several in-process replicas (tests, benchmarks) never
collide on the global registry. The web layer serves `metrics.render()` at /metrics. Hot-path children
(label values known up front) are bound once here so an increment is a plain method call.
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, generate_latest

__all__ = ["DROP_REASONS", "MALFORMED_REASONS", "Metrics"]

# Why an event (or a client's backlog) was dropped; every value is pre-bound so /metrics always lists it.
DROP_REASONS = (
    "outbound_full",  # the bounded publish queue was full
    "disconnected",  # Redis link down: not published (at-most-once, no replay)
    "publish_failed",  # PUBLISH raised
    "client_overflow",  # a slow client's queue overflowed; its backlog was dropped
    "client_closed",  # a client was disconnected for being too slow
    "duplicate",  # a remote envelope with a seq we already delivered
)
# Why a received envelope was ignored: unsigned / bad_signature = not from a replica holding the auth secret.
MALFORMED_REASONS = ("malformed", "foreign", "version", "unsigned", "bad_signature")


class Metrics:
    """All bus/bridge metrics; names are prefixed `aifactory_bus_`."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        r = self.registry
        self.published = Counter("aifactory_bus_published_total", "Envelopes published to Redis", registry=r)
        self.delivered = Counter(
            "aifactory_bus_delivered_total",
            "Frames queued to local WebSocket clients, by where the event came from",
            ["source"],
            registry=r,
        )
        self.dropped = Counter(
            "aifactory_bus_dropped_total", "Events or frames dropped", ["reason"], registry=r
        )
        self.oversize = Counter(
            "aifactory_bus_oversize_total", "Events too large to publish (delivered locally only)", registry=r
        )
        self.malformed = Counter(
            "aifactory_bus_malformed_total", "Envelopes received and ignored", ["reason"], registry=r
        )
        self.received = Counter(
            "aifactory_bus_received_total",
            "Envelopes from other replicas routed to local clients",
            registry=r,
        )
        self.reconnects = Counter(
            "aifactory_bus_reconnects_total",
            "Successful Redis subscriber reconnects after a loss",
            registry=r,
        )
        self.deaf = Counter(
            "aifactory_bus_deaf_subscriber_total",
            "Times the self-probe found the subscriber connected but deaf",
            registry=r,
        )
        self.resyncs = Counter(
            "aifactory_bus_resync_total", "Resync notices sent to local clients", ["reason"], registry=r
        )
        self.connected = Gauge(
            "aifactory_bus_redis_connected", "1 while the Redis subscriber is live", registry=r
        )
        self.outbound_depth = Gauge(
            "aifactory_bus_outbound_queue_depth", "Envelopes waiting to be published", registry=r
        )
        self.clients = Gauge(
            "aifactory_bus_local_clients", "Local subscribers (WebSocket clients)", registry=r
        )

        self.delivered_local = self.delivered.labels(source="local")
        self.delivered_remote = self.delivered.labels(source="remote")
        self.drop = {reason: self.dropped.labels(reason=reason) for reason in DROP_REASONS}
        self.bad = {reason: self.malformed.labels(reason=reason) for reason in MALFORMED_REASONS}
        self.resync_gap = self.resyncs.labels(reason="gap")
        self.resync_overflow = self.resyncs.labels(reason="overflow")
        self.resync_history = self.resyncs.labels(reason="history")

    def value(self, name: str, **labels: str) -> float:
        """Current value of a sample, 0.0 if absent (for tests and the demo)."""
        got = self.registry.get_sample_value(name, labels or None)
        return 0.0 if got is None else got

    def render(self) -> tuple[bytes, str]:
        """(body, content type) for the /metrics endpoint."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
