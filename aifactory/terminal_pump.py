"""Pump one attached terminal over a Starlette WebSocket, speaking `aifactory.terminal_protocol`.

Shared by the web replica's in-process terminals (`AIFACTORY_TERMINALS=local`) and the terminal host, so
both ends of the protocol live in one place whichever process owns the shell.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

from starlette.websockets import WebSocket

from aifactory import terminal_protocol as proto
from aifactory.constants import WS_BAD_CONTROL, WS_POLICY_VIOLATION
from aifactory.terminal import Attachment, Terminal, TerminalManager


async def pump(
    websocket: WebSocket,
    terminals: TerminalManager,
    term: Terminal,
    att: Attachment,
    *,
    expires_at: float,
    replica: str,
) -> None:
    """Send `ready`, then bytes both ways until either side ends; always detaches (grace starts)."""

    async def pump_out() -> None:
        while True:
            chunk = await att.queue.get()
            if chunk is None:
                await websocket.close(code=att.close_code, reason=att.close_reason[:120])
                return
            await websocket.send_bytes(chunk)
            terminals.output_consumed(term)

    async def pump_in() -> None:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            data = message.get("bytes")
            text = message.get("text")
            if text is not None:
                try:
                    control = proto.parse_control(text)
                except proto.ControlError as exc:
                    await websocket.close(code=WS_BAD_CONTROL, reason=str(exc)[:120])
                    return
                if isinstance(control, proto.Resize):
                    terminals.resize(term, control.rows, control.cols)
                    continue
                data = control.data
            if data:
                await terminals.write(term, data)

    try:
        await websocket.send_text(
            proto.ready(
                terminal=term.id,
                pid=term.pid,
                new=att.new,
                offset=att.offset,
                input_offset=term.input_total,
                replica=replica,
            )
        )
    except (RuntimeError, OSError):
        terminals.detach(term, att)
        return
    expiry = asyncio.create_task(asyncio.sleep(max(0.0, expires_at - time.time())))
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
