"""Cross-replica fan-out over Redis pub/sub: `RedisBridge` and its parts (see `relay`)."""

from aifactory.bridge.relay import DEFAULT_MAX_EVENT_BYTES, RedisBridge, backoff_delay, resync_frame

__all__ = ["DEFAULT_MAX_EVENT_BYTES", "RedisBridge", "backoff_delay", "resync_frame"]
