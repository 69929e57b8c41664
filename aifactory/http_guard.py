"""uvicorn's h11 protocol with the two limits it lacks: a request read timeout and a connection ceiling.

h11 has no timeout of its own and uvicorn only times the idle gap *between* keep-alive requests, so a
client that connects and sends nothing, or trickles a header byte every few seconds (slowloris), holds a
connection forever. uvicorn's `limit_concurrency` answers 503 only once a request head is complete and
never for WebSocket upgrades, so it does not bound connections either. This subclass adds, per connection:

- **read timeout**: from the moment a connection opens (or the first byte of the next keep-alive request
  arrives), the client has `read_timeout` seconds to send the whole request, head and body. Then it gets
  `408 Request Timeout` and is closed. One timer per request, never re-armed by a trickle of bytes; it is
  cancelled once h11 has the complete request (or the connection upgrades to a WebSocket).
- **connection ceiling**: a connection that would exceed `max_connections` open ones (HTTP and
  WebSocket alike: uvicorn's shared connection set) gets `503` and is closed at once, with at most one
  WARNING a minute. (uvicorn's `limit_concurrency` is left unset: it ignores upgrades and logs a WARNING
  for every request it refuses.)

Why a protocol subclass rather than an ASGI middleware: the app only sees a request after its head is
parsed, which is exactly the phase slowloris attacks; and the transport is the one place that sees a
silent connection at all. The hooks used (`connection_made`, `data_received`, `connection_lost`,
`handle_websocket_upgrade`, `conn.their_state`) are uvicorn's and h11's documented protocol surface.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

__all__ = ["GuardedH11Protocol", "guarded_h11"]

log = logging.getLogger("aifactory.http")

_TIMEOUT_RESPONSE = b"HTTP/1.1 408 Request Timeout\r\nconnection: close\r\ncontent-length: 0\r\n\r\n"
_FULL_RESPONSE = b"HTTP/1.1 503 Service Unavailable\r\nconnection: close\r\ncontent-length: 0\r\n\r\n"
_WAITING = (h11.IDLE, h11.SEND_BODY)  # the client's side of the request is not complete yet
_WARN_EVERY = 60.0
_last_full_warning = float("-inf")


class GuardedH11Protocol(H11Protocol):
    """H11Protocol plus a per-request read timeout and a connection ceiling (see the module docstring).

    The limits are class attributes because uvicorn builds protocols itself: `guarded_h11()` makes the
    configured subclass."""

    read_timeout: float = 10.0
    max_connections: int = 4096

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._read_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.max_connections:
            _warn_full(self.max_connections)
            transport.write(_FULL_RESPONSE)
            transport.close()
            return
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self._read_timer is None and self.conn.their_state is h11.IDLE:
            self._arm()  # the first bytes of the next keep-alive request: its own full timeout starts now
        super().data_received(data)
        if self.conn.their_state not in _WAITING:
            self._disarm()

    def handle_websocket_upgrade(self, event: h11.Request) -> None:
        self._disarm()  # the transport is about to belong to the WebSocket protocol
        super().handle_websocket_upgrade(event)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        self._read_timer = self.loop.call_later(self.read_timeout, self._on_read_timeout)

    def _disarm(self) -> None:
        if self._read_timer is not None:
            self._read_timer.cancel()
            self._read_timer = None

    def _on_read_timeout(self) -> None:
        self._read_timer = None
        if self.transport.is_closing() or self.conn.their_state not in _WAITING:
            return
        log.debug("closed a connection that sent no complete request within %gs", self.read_timeout)
        answered = self.conn.their_state is h11.SEND_BODY and self.cycle and self.cycle.response_started
        if not answered:  # a route that answered without reading the body gets no 408 after its response
            self.transport.write(_TIMEOUT_RESPONSE)
        self.transport.close()


def _warn_full(limit: int) -> None:
    """One WARNING per minute at most: under a flood this line must not become the flood."""
    global _last_full_warning
    now = time.monotonic()
    if now - _last_full_warning >= _WARN_EVERY:
        _last_full_warning = now
        log.warning(
            "connection ceiling reached (%d open, AIFACTORY_MAX_CONNECTIONS): refusing new connections "
            "with 503 (logged at most once a minute)",
            limit,
        )


def guarded_h11(read_timeout: float, max_connections: int) -> type[GuardedH11Protocol]:
    """The `http=` value for uvicorn.Config: a GuardedH11Protocol subclass with these limits."""
    limits = {"read_timeout": read_timeout, "max_connections": max_connections}
    return type("ConfiguredGuardedH11Protocol", (GuardedH11Protocol,), limits)
