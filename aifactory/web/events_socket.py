"""`/ws/events`: live events for the token's user (their own, their org's and broadcasts, every replica).

`?since=<_offset>` resumes (docs/recovery.md): the socket is registered *held*, the bus replays what the
client missed, and `hello` says `"recovered"` and `"replayed": N`; the next N frames are the replay, then
live frames, or, when the history cannot cover the gap, `{"type":"resync","reason":"history"}`.
On shutdown (`ServerState.draining`), each socket writes what it has queued, then closes with 1012 so the
client resumes on another replica.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect

from aifactory.constants import (
    WS_MESSAGE_TOO_BIG,
    WS_POLICY_VIOLATION,
    WS_SERVICE_RESTART,
    WS_TRY_AGAIN_LATER,
)
from aifactory.registry import Subscriber, SubscriberClosed
from aifactory.web.state import ServerState, server_state, ws_principal

WRITER_BATCH = 64
# The socket is one-way: a client has nothing to say beyond an app-level keepalive. (uvicorn's ws_max_size,
# the terminal input cap, already bounds every message; this is the far smaller cap for this socket.)
CLIENT_FRAME_MAX_BYTES = 4096


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


async def _write_frames(websocket: WebSocket, sub: Subscriber) -> None:
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
    principal = await ws_principal(websocket)
    if principal is None:
        return
    state = server_state(websocket)
    assert state.bus is not None
    since = websocket.query_params.get("since")
    resuming = since is not None and state.bus.recovery
    sub = Subscriber(
        principal.user_id,
        principal.org_id,
        max(2, state.settings.ws_queue),
        policy=state.settings.ws_overflow,
        hold=resuming,
    )
    state.bus.registry.add(sub)
    tasks: list[asyncio.Task[Any]] = []
    try:
        hello: dict[str, object] = {
            "type": "hello",
            "replica": state.replica_id,
            "user": principal.user_id,
            "org": principal.org_id,
        }
        if resuming:
            replayed = await state.bus.resume(sub, since or "")  # releases sub either way
            hello["recovered"] = replayed is not None
            hello["replayed"] = replayed or 0
        await websocket.send_text(json.dumps(hello))
        tasks = [
            asyncio.create_task(_write_frames(websocket, sub)),
            asyncio.create_task(_until_disconnect(websocket)),
            asyncio.create_task(asyncio.sleep(max(0.0, principal.exp - time.time()))),
            asyncio.create_task(_draining(state)),
        ]
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        writer, reader, expiry, draining = tasks
        if draining in done:
            state.bus.registry.remove(sub)  # later events: the client resumes them elsewhere
            await _flush(sub, state.settings.shutdown_grace / 4)
            await websocket.close(code=WS_SERVICE_RESTART, reason="server restarting; resume elsewhere")
        elif expiry in done:
            await websocket.close(code=WS_POLICY_VIOLATION, reason="token expired")
        elif reader in done and reader.exception() is None and reader.result():
            reason = f"client frames are limited to {CLIENT_FRAME_MAX_BYTES} bytes: this socket is one-way"
            await websocket.close(code=WS_MESSAGE_TOO_BIG, reason=reason)
        elif writer in done and isinstance(writer.exception(), SubscriberClosed):
            await websocket.close(code=WS_TRY_AGAIN_LATER, reason="client too slow; reconnect")
    except (WebSocketDisconnect, RuntimeError, OSError):
        pass  # the client went away mid-send
    finally:
        state.bus.registry.remove(sub)
        sub.close()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task
