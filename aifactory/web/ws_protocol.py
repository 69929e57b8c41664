"""uvicorn's websockets-sansio protocol plus one ASGI extension: the socket's transport as a frame sink.

`/ws/events` sends every socket of an audience the very same frame bytes (built once per event by the
registry). Going through ASGI would cost, per frame and per socket, a writer-task wakeup, a `send`
message, uvicorn's protocol and a fresh WebSocket framing. With this protocol the events socket finds
`scope["extensions"][SINK_EXTENSION]`, a `TransportSink`, and after the handshake and the hello it
*detaches*: the ASGI coroutine returns while the connection stays open, the registry writes the shared
bytes straight to the transport, and the protocol itself answers pings, discards the client's data frames
(the events socket is one-way; uvicorn's `ws_max_size` still closes oversized ones with 1009, and the
socket's own smaller cap is checked through `on_message`), runs the
close handshake and reports the end of the connection (`on_lost`); on SIGTERM it writes the socket's
backlog, then closes with 1012 (`close_when_written`). So an idle socket costs no task, no
coroutine chain and no ASGI scope. Handshake, auth and every other route stay Starlette's. Without the
extension (another server) the events socket stays on ASGI `send_text`.
"""

from __future__ import annotations

from collections.abc import Callable

from uvicorn.protocols.utils import ClientDisconnected
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.protocol import State

__all__ = ["SINK_EXTENSION", "EventsWSProtocol", "TransportSink"]

SINK_EXTENSION = "aifactory.frame_sink"


class _NoReader:
    """Stands in for uvicorn's receive queue once detached: nobody reads it, so nothing is kept."""

    __slots__ = ()

    def put_nowait(self, _message: object) -> None:
        pass

    def empty(self) -> bool:
        return True


class TransportSink:
    """Writes complete frames to one socket's transport; backed up = the transport paused writing (its
    buffer passed the high-water mark), until it drains below the low-water mark (then `on_drain`)."""

    __slots__ = ("_proto", "on_drain", "on_lost", "on_message")

    def __init__(self, proto: EventsWSProtocol) -> None:
        self._proto = proto
        self.on_drain: Callable[[], object] | None = None
        self.on_lost: Callable[[], None] | None = None
        self.on_message: Callable[[int], None] | None = None

    def write(self, data: bytes) -> None:
        """Write unless the socket is closing (after a close frame no data frame may follow)."""
        proto = self._proto
        if proto.conn.state is State.OPEN and not proto.close_sent and not proto.transport.is_closing():
            proto.transport.write(data)

    def backed_up(self) -> bool:
        return not self._proto.writable.is_set()

    def buffered(self) -> int:
        return self._proto.transport.get_write_buffer_size()

    def detach(self, on_lost: Callable[[], None], on_message: Callable[[int], None] | None = None) -> None:
        """Leave ASGI: the app returns, the connection stays; `on_lost` runs once when it ends, and
        `on_message(size)` for each client message (its bytes are discarded), e.g. to enforce a cap."""
        proto = self._proto
        self.on_lost, self.on_message = on_lost, on_message
        proto.detached = True
        proto.request = proto.response = None  # type: ignore[assignment]  # handshake objects, not needed
        early = proto.queue  # client messages that came before the detach: checked like later ones
        proto.queue = _NoReader()  # type: ignore[assignment]
        while on_message is not None and not early.empty():
            msg = early.get_nowait()
            if msg["type"] == "websocket.receive":
                text, data = msg.get("text"), msg.get("bytes")
                on_message(len(text.encode()) if text is not None else len(data or b""))
        if proto.read_paused:  # uvicorn pauses reading while a client message waits for the app
            proto.read_paused = False
            proto.transport.resume_reading()
        if proto.disconnected:
            self._lost()

    def close(self, code: int, reason: str) -> None:
        """Start the close handshake (detached sockets; the same steps as uvicorn's `websocket.close`)."""
        proto = self._proto
        if proto.close_sent or proto.transport.is_closing() or proto.conn.state is not State.OPEN:
            return
        proto.conn.send_close(code, reason)
        proto.transport.write(b"".join(proto.conn.data_to_send()))
        proto.close_sent = True
        proto.close_timer = proto.loop.call_later(proto.close_timeout, proto.transport.close)

    def close_when_written(self, backlog: Callable[[], bool], code: int, reason: str, timeout: float) -> None:
        """Drain (SIGTERM): write what is queued, then close with `code`; `backlog()` writes what the
        transport takes and says whether frames are left (retried each time the transport drains). After
        `timeout` s the close goes out anyway."""
        proto = self._proto

        def step() -> None:
            if not backlog():
                self.close(code, reason)

        self.on_drain = step
        proto.loop.call_later(timeout, self.close, code, reason)
        step()

    def _lost(self) -> None:
        on_lost, self.on_lost, self.on_drain, self.on_message = self.on_lost, None, None, None
        if on_lost is not None:
            on_lost()


class EventsWSProtocol(WebSocketsSansIOProtocol):
    """uvicorn's protocol, with the transport sink in the WebSocket scope's extensions and a detached
    mode for sockets whose app has handed them over (`TransportSink.detach`)."""

    sink: TransportSink | None = None
    detached = False

    def handle_connect(self, event) -> None:  # type: ignore[no-untyped-def]  # websockets Request
        super().handle_connect(event)
        scope = getattr(self, "scope", None)
        if scope is not None and self.handshake_initiated and not self.close_sent:
            self.sink = TransportSink(self)
            scope["extensions"][SINK_EXTENSION] = self.sink

    def resume_writing(self) -> None:
        """The transport's buffer fell below its low-water mark: let the sink's owner write its backlog."""
        super().resume_writing()
        if self.sink is not None and self.sink.on_drain is not None:
            self.sink.on_drain()

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if self.sink is not None:
            self.sink._lost()

    def send_receive_event_to_app(self) -> None:
        if self.detached:  # nobody reads: drop the client's message (and never pause reading for it)
            size = sum(len(f) for f in self.frames)
            self.frames = []
            if self.sink is not None and self.sink.on_message is not None:
                self.sink.on_message(size)
            return
        super().send_receive_event_to_app()

    async def run_asgi(self) -> None:
        """uvicorn's run_asgi (0.55), except that a detached socket stays open when the app returns."""
        try:
            result = await self.app(self.scope, self.receive, self.send)
        except ClientDisconnected:
            pass
        except BaseException:
            self.logger.exception("Exception in ASGI application\n")
            self.send_500_response()
        else:
            if not self.handshake_complete:
                self.logger.error("ASGI callable returned without completing handshake.")
                self.send_500_response()
            elif result is not None:
                self.logger.error("ASGI callable should return None, but returned '%s'.", result)
        if self.detached and not self.disconnected:
            self.scope = None  # type: ignore[assignment]  # headers and all: not needed once detached
            return
        if self.close_timer is None:
            self.transport.close()
