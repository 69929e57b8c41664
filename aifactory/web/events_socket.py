"""`/ws/events`: live events for the token's user (their own, their org's and broadcasts, every replica)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect

from aifactory.constants import WS_MESSAGE_TOO_BIG, WS_POLICY_VIOLATION, WS_TRY_AGAIN_LATER
from aifactory.registry import LocalRegistry, Subscriber, SubscriberClosed
from aifactory.web.state import SocketSlot, server_state, user_socket
from aifactory.web.ws_protocol import SINK_EXTENSION, TransportSink

WRITER_BATCH = 64
# The socket is one-way: a client has nothing to say beyond an app-level keepalive. (uvicorn's ws_max_size,
# the terminal input cap, already bounds every message; this is the far smaller cap for this socket.)
CLIENT_FRAME_MAX_BYTES = 4096
TOO_BIG_REASON = f"client frames are limited to {CLIENT_FRAME_MAX_BYTES} bytes: this socket is one-way"


async def _until_disconnect(websocket: WebSocket) -> bool:
    """Read and discard client frames until the client goes away (False) or sends one too big (True)."""
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return False
        text = message.get("text")
        size = len(text.encode()) if text is not None else len(message.get("bytes") or b"")
        if size > CLIENT_FRAME_MAX_BYTES:
            return True


def _detach(
    registry: LocalRegistry, sub: Subscriber, sink: TransportSink, ttl: float, release: Callable[[], None]
) -> None:
    """Fast path: hand the socket to the transport sink and leave ASGI. From here the registry writes
    frames straight to the transport; a backlog (transport backed up) is written by `sub.flush` when the
    transport drains; token expiry and the "disconnect" overflow policy start the close handshake from
    callbacks, and so does a client message over CLIENT_FRAME_MAX_BYTES (1009); the end of the connection
    unregisters the subscriber and gives the user's socket slot back (`release`)."""
    timer = asyncio.get_running_loop().call_later(ttl, sink.close, WS_POLICY_VIOLATION, "token expired")
    sub.on_close = lambda: sink.close(WS_TRY_AGAIN_LATER, "client too slow; reconnect")
    sink.on_drain = sub.flush

    def lost() -> None:
        timer.cancel()
        sub.on_close = None
        registry.remove(sub)
        sub.close()
        release()

    def message(size: int) -> None:
        if size > CLIENT_FRAME_MAX_BYTES:
            sink.close(WS_MESSAGE_TOO_BIG, TOO_BIG_REASON)

    sink.detach(lost, message)


async def _write_frames(websocket: WebSocket, sub: Subscriber) -> None:
    """Fallback (no transport sink from the server): every frame through the ASGI `send`."""
    while True:
        frame = await sub.get()
        await websocket.send_text(frame)
        for _ in range(WRITER_BATCH):  # drain what piled up without another wakeup
            more = sub.get_nowait()
            if more is None:
                break
            await websocket.send_text(more)


async def ws_events(websocket: WebSocket) -> None:
    """Live events for the token's user: their own, their org's and broadcasts, from every replica."""
    async with user_socket(websocket) as slot:
        if slot is not None:
            await _serve_events(websocket, slot)


async def _serve_events(websocket: WebSocket, slot: SocketSlot) -> None:
    principal = slot.principal
    state = server_state(websocket)
    assert state.bus is not None
    sub = Subscriber(
        principal.user_id,
        principal.org_id,
        max(2, state.settings.ws_queue),
        policy=state.settings.ws_overflow,
    )
    sink = websocket.scope.get("extensions", {}).get(SINK_EXTENSION)
    sub.hold()  # live frames queue until the hello is out (see aifactory.registry)
    state.bus.registry.add(sub)
    tasks: list[asyncio.Task[Any]] = []
    detached = False
    try:
        hello = {
            "type": "hello",
            "replica": state.replica_id,
            "user": principal.user_id,
            "org": principal.org_id,
        }
        ttl = max(0.0, principal.exp - time.time())
        if sink is not None:
            sub.attach(sink)
            sub.send_now(json.dumps(hello))
            sub.release()
            _detach(state.bus.registry, sub, sink, ttl, slot.keep())
            detached = True  # the sink owns the subscriber now: unregistered when the connection ends
            return
        sub.send_now(json.dumps(hello))
        sub.release()
        tasks = [
            asyncio.create_task(_write_frames(websocket, sub)),
            asyncio.create_task(_until_disconnect(websocket)),
            asyncio.create_task(asyncio.sleep(ttl)),
        ]
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        writer, reader, expiry = tasks
        if expiry in done:
            await websocket.close(code=WS_POLICY_VIOLATION, reason="token expired")
        elif reader in done and reader.exception() is None and reader.result():
            await websocket.close(code=WS_MESSAGE_TOO_BIG, reason=TOO_BIG_REASON)
        elif writer in done and isinstance(writer.exception(), SubscriberClosed):
            await websocket.close(code=WS_TRY_AGAIN_LATER, reason="client too slow; reconnect")
    except (WebSocketDisconnect, RuntimeError, OSError):
        pass  # the client went away mid-send
    finally:
        if not detached:
            state.bus.registry.remove(sub)
            sub.close()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task
