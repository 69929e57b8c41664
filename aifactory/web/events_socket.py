"""`/ws/events`: live events for the token's user (their own, their org's and broadcasts, every replica).

`?since=<_offset>` resumes (docs/recovery.md): the socket is registered *held*, the bus reads what the
client missed, and `hello` says `"recovered"` and `"replayed": N`; the next N frames are the replay, then
live frames, or, when the history cannot cover the gap, `{"type":"resync","reason":"history"}`.
On shutdown (`ServerState.draining`), each socket writes what it has queued, then closes with 1012 so the
client resumes on another replica (detached sockets through their sink, see aifactory.web.ws_protocol).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect

from aifactory.constants import (
    WS_MESSAGE_TOO_BIG,
    WS_POLICY_VIOLATION,
    WS_SERVICE_RESTART,
    WS_TRY_AGAIN_LATER,
)
from aifactory.history import HISTORY_RESYNC_FRAME
from aifactory.registry import LocalRegistry, Subscriber, SubscriberClosed
from aifactory.web.state import ServerState, SocketSlot, server_state, user_socket
from aifactory.web.ws_protocol import SINK_EXTENSION, TransportSink

WRITER_BATCH = 64
# The socket is one-way: a client has nothing to say beyond an app-level keepalive. (uvicorn's ws_max_size,
# the terminal input cap, already bounds every message; this is the far smaller cap for this socket.)
CLIENT_FRAME_MAX_BYTES = 4096
TOO_BIG_REASON = f"client frames are limited to {CLIENT_FRAME_MAX_BYTES} bytes: this socket is one-way"
RESTART_REASON = "server restarting; resume elsewhere"


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
    state: ServerState,
    registry: LocalRegistry,
    sub: Subscriber,
    sink: TransportSink,
    ttl: float,
    release: Callable[[], None],
) -> None:
    """Fast path: hand the socket to the transport sink and leave ASGI. From here the registry writes
    frames straight to the transport; a backlog (transport backed up) is written by `sub.flush` when the
    transport drains; token expiry and the "disconnect" overflow policy start the close handshake from
    callbacks, and so does a client message over CLIENT_FRAME_MAX_BYTES (1009); SIGTERM writes the backlog
    and closes with 1012 (a drain hook in `state.detached`); the end of the connection unregisters the
    subscriber and gives the user's socket slot back (`release`)."""
    timer = asyncio.get_running_loop().call_later(ttl, sink.close, WS_POLICY_VIOLATION, "token expired")
    sub.on_close = lambda: sink.close(WS_TRY_AGAIN_LATER, "client too slow; reconnect")
    sink.on_drain = sub.flush

    def backlog() -> bool:
        sub.uncork()  # frames batched this turn go out before the close frame
        sub.flush()
        return sub.pending() > 0

    def drain(timeout: float) -> None:
        registry.remove(sub)  # later events: the client resumes them elsewhere
        sink.close_when_written(backlog, WS_SERVICE_RESTART, RESTART_REASON, timeout)

    def lost() -> None:
        timer.cancel()
        state.detached.discard(drain)
        sub.on_close = None
        registry.remove(sub)
        sub.close()
        release()

    def message(size: int) -> None:
        if size > CLIENT_FRAME_MAX_BYTES:
            sink.close(WS_MESSAGE_TOO_BIG, TOO_BIG_REASON)

    state.detached.add(drain)
    sink.detach(lost, message)
    if state.draining.is_set():  # SIGTERM came while this socket was still connecting
        drain(state.settings.shutdown_grace / 4)


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


async def _draining(state: ServerState) -> None:
    await state.draining.wait()


async def _flush(sub: Subscriber, timeout: float) -> None:
    """Give the writer up to `timeout` seconds to send what is queued (shutdown: last frames out)."""
    deadline = time.monotonic() + timeout
    while sub.pending() and time.monotonic() < deadline:
        await asyncio.sleep(0.01)


async def ws_events(websocket: WebSocket) -> None:
    """Live events for the token's user: their own, their org's and broadcasts, from every replica."""
    async with user_socket(websocket) as slot:
        if slot is not None:
            await _serve_events(websocket, slot)


async def _serve_events(websocket: WebSocket, slot: SocketSlot) -> None:
    principal = slot.principal
    state = server_state(websocket)
    assert state.bus is not None
    since = websocket.query_params.get("since")
    resuming = since is not None and state.bus.recovery
    sub = Subscriber(
        principal.user_id,
        principal.org_id,
        max(2, state.settings.ws_queue),
        policy=state.settings.ws_overflow,
    )
    sink = websocket.scope.get("extensions", {}).get(SINK_EXTENSION)
    sub.hold()  # live frames queue until the hello (and the replay) are out (see aifactory.registry)
    state.bus.registry.add(sub)
    tasks: list[asyncio.Task[Any]] = []
    detached = False
    try:
        hello: dict[str, object] = {
            "type": "hello",
            "replica": state.replica_id,
            "user": principal.user_id,
            "org": principal.org_id,
        }
        first: list[str] = []
        if resuming:
            replayed = await state.bus.resume(sub, since or "")  # no await between add() and here
            hello["recovered"] = replayed is not None
            hello["replayed"] = len(replayed) if replayed is not None else 0
            first = replayed if replayed is not None else [HISTORY_RESYNC_FRAME]
            if sub.closed:  # overflowed with policy "disconnect" while held during the replay read
                await websocket.close(code=WS_TRY_AGAIN_LATER, reason="client too slow; reconnect")
                return
        ttl = max(0.0, principal.exp - time.time())
        if sink is not None:
            sub.attach(sink)
        sub.send_now(json.dumps(hello))
        for frame in first:
            sub.send_now(frame)
        sub.release()
        if sink is not None:
            _detach(state, state.bus.registry, sub, sink, ttl, slot.keep())
            detached = True  # the sink owns the subscriber now: unregistered when the connection ends
            return
        tasks = [
            asyncio.create_task(_write_frames(websocket, sub)),
            asyncio.create_task(_until_disconnect(websocket)),
            asyncio.create_task(asyncio.sleep(ttl)),
            asyncio.create_task(_draining(state)),
        ]
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        writer, reader, expiry, draining = tasks
        if draining in done:
            state.bus.registry.remove(sub)  # later events: the client resumes them elsewhere
            await _flush(sub, state.settings.shutdown_grace / 4)
            await websocket.close(code=WS_SERVICE_RESTART, reason=RESTART_REASON)
        elif expiry in done:
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
