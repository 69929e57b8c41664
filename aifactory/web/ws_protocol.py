"""uvicorn's websockets-sansio protocol plus one ASGI extension: the socket's transport as a frame sink.

`/ws/events` sends every socket of an audience the very same frame bytes (built once per event by the
registry). Going through ASGI would cost, per frame and per socket, a writer-task wakeup, a `send`
message, uvicorn's protocol and a fresh WebSocket framing. With this protocol the events socket finds
`scope["extensions"][SINK_EXTENSION]`, a `TransportSink`, after the handshake and hands it to its
`Subscriber`, which then writes the shared bytes straight to the transport. Everything else (handshake,
auth in the app, client frames and their size limit `ws_max_size`, pings, close) stays uvicorn's.
Without the extension (another server) the events socket falls back to `send_text`.
"""

from __future__ import annotations

from collections.abc import Callable

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.protocol import State

__all__ = ["SINK_EXTENSION", "EventsWSProtocol", "TransportSink"]

SINK_EXTENSION = "aifactory.frame_sink"


class TransportSink:
    """Writes complete frames to one socket's transport; backed up = the transport paused writing (its
    buffer passed the high-water mark), until it drains below the low-water mark."""

    __slots__ = ("_proto", "on_drain")

    def __init__(self, proto: WebSocketsSansIOProtocol) -> None:
        self._proto = proto
        self.on_drain: Callable[[], object] | None = None  # called when the transport takes writes again

    def write(self, data: bytes) -> None:
        """Write unless the socket is closing (after a close frame no data frame may follow)."""
        proto = self._proto
        if proto.conn.state is State.OPEN and not proto.close_sent and not proto.transport.is_closing():
            proto.transport.write(data)

    def backed_up(self) -> bool:
        return not self._proto.writable.is_set()

    def buffered(self) -> int:
        return self._proto.transport.get_write_buffer_size()


class EventsWSProtocol(WebSocketsSansIOProtocol):
    """uvicorn's protocol, with the transport sink in the WebSocket scope's extensions."""

    sink: TransportSink | None = None

    def resume_writing(self) -> None:
        """The transport's buffer fell below its low-water mark: let the sink's owner write its backlog."""
        super().resume_writing()
        if self.sink is not None and self.sink.on_drain is not None:
            self.sink.on_drain()

    def handle_connect(self, event) -> None:  # type: ignore[no-untyped-def]  # websockets Request
        super().handle_connect(event)
        scope = getattr(self, "scope", None)
        if scope is not None and self.handshake_initiated and not self.close_sent:
            self.sink = TransportSink(self)
            scope["extensions"][SINK_EXTENSION] = self.sink
