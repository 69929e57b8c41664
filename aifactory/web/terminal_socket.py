"""`/ws/terminal/{id}`: a PTY shell owned by the caller, pumped between the socket and `TerminalManager`."""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import json
import logging
import time

from starlette.websockets import WebSocket

from aifactory.auth import Principal
from aifactory.constants import WS_INTERNAL_ERROR, WS_POLICY_VIOLATION
from aifactory.terminal import TerminalRefused
from aifactory.web.errors import HttpError
from aifactory.web.state import audit, server_state, user_socket

log = logging.getLogger("aifactory.server")


async def ws_terminal(websocket: WebSocket) -> None:
    """A PTY shell owned by the caller: text/binary frames in are keystrokes, text frames out are output."""
    async with user_socket(websocket) as slot:
        if slot is not None:
            await _serve_terminal(websocket, slot.principal)


async def _serve_terminal(websocket: WebSocket, principal: Principal) -> None:
    state = server_state(websocket)
    assert state.terminals is not None
    terminals = state.terminals
    term_id = websocket.path_params["term_id"]
    try:  # the audit record is written once the open is sure to happen (id valid, slot reserved)
        term, att = await terminals.attach(
            term_id,
            principal.user_id,
            on_open=lambda: audit(state, "terminal.open", principal, terminal=term_id),
        )
    except TerminalRefused as exc:  # TerminalManager logs refusals, rate-limited
        await websocket.close(code=exc.code, reason=exc.reason)
        return
    except HttpError:
        await websocket.close(code=WS_INTERNAL_ERROR, reason="audit log unavailable")
        return
    except OSError as exc:  # no PTYs left, shell missing, fork failed
        log.error("terminal %s for %s could not start: %s", term_id, principal.user_id, exc)
        await websocket.close(code=WS_INTERNAL_ERROR, reason="could not start a shell on this replica")
        return
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    async def pump_out() -> None:
        while True:
            chunk = await att.queue.get()
            if chunk is None:
                await websocket.close(code=att.close_code, reason=att.close_reason[:120])
                return
            text = decoder.decode(chunk)
            if text:
                await websocket.send_text(text)
            terminals.output_consumed(term)

    async def pump_in() -> None:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            text = message.get("text")
            if text is not None and text.startswith('{"type":"resize"'):
                with contextlib.suppress(ValueError, TypeError, KeyError):
                    size = json.loads(text)
                    terminals.resize(term, int(size["rows"]), int(size["cols"]))
                    continue
            data = text.encode() if text is not None else message.get("bytes") or b""
            if data:
                await terminals.write(term, data)

    expiry = asyncio.create_task(asyncio.sleep(max(0.0, principal.exp - time.time())))
    tasks = [asyncio.create_task(pump_out()), asyncio.create_task(pump_in()), expiry]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        if expiry in done:  # a shell outlives no token: reattach (within grace) with a fresh one
            with contextlib.suppress(RuntimeError, OSError):
                await websocket.close(code=WS_POLICY_VIOLATION, reason="token expired")
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task
        terminals.detach(term, att)
