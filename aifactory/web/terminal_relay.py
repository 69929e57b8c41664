"""`/ws/terminal/{id}` when `AIFACTORY_TERMINALS=host`: relay the socket to the terminal host that owns it.

The web replica checks the user's token, finds the owner in the Redis directory (or picks the least
loaded live host for a new id), dials it directly (`ws://{address}/attach/{id}`) with a request signed by
the web tier, and copies frames both ways unchanged. It holds no shell and no state: when it dies the host
keeps the shell for the grace period and the browser reattaches through any other replica.

Why a direct connection rather than Redis for the bytes: one extra hop instead of two, WebSocket flow
control end to end (a slow browser pushes back on the shell), no pub/sub message loss on a busy Redis, and
the events channel keeps Redis to itself (docs/terminals.md has the numbers).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from urllib.parse import quote

from starlette.websockets import WebSocket
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from aifactory import terminal_protocol as proto
from aifactory.auth import Principal
from aifactory.constants import WS_POLICY_VIOLATION, WS_TERMINAL_LOST, WS_TRY_AGAIN_LATER
from aifactory.host_auth import HEADER, HostRequestSigner
from aifactory.terminal import TERMINAL_ID
from aifactory.terminal_directory import Directory

log = logging.getLogger("aifactory.server")
CONNECT_TIMEOUT = 5.0
MAX_FRAME = 1024 * 1024
SERVICE_RESTART = 1012  # RFC 6455 code uvicorn sends on every open socket when it shuts down


class TerminalRelay:
    """Everything a web replica needs in host mode: the directory and the request signer."""

    def __init__(self, directory: Directory, signer: HostRequestSigner) -> None:
        self.directory = directory
        self.signer = signer
        self.active = 0  # terminal sockets relayed right now (/readyz "terminals")

    async def serve(
        self, websocket: WebSocket, principal: Principal, on_new: Callable[[], None] | None = None
    ) -> None:
        term_id = websocket.path_params["term_id"]
        user = principal.user_id
        if not TERMINAL_ID.match(term_id):
            await websocket.close(WS_POLICY_VIOLATION, "terminal id must be 1-64 of A-Z a-z 0-9 _ . -")
            return
        try:
            offset = proto.parse_offset(websocket.query_params.get("offset"))
        except proto.ControlError as exc:
            await websocket.close(WS_POLICY_VIOLATION, str(exc))
            return
        try:
            owner = await self.directory.owner(term_id, user)
            host = await (self.directory.host(owner) if owner else self.directory.pick_host())
        except Exception as exc:  # Redis unreachable: the browser retries
            log.warning("terminal directory unavailable: %s", type(exc).__name__)
            await websocket.close(WS_TRY_AGAIN_LATER, "terminal directory unavailable; retrying")
            return
        if owner and host is None:  # its host stopped heartbeating: the shell is gone with it
            with contextlib.suppress(Exception):
                await self.directory.forget(term_id, user, owner)
            await websocket.close(WS_TERMINAL_LOST, "terminal host restarted: the shell is lost")
            return
        if host is None:
            await websocket.close(WS_TRY_AGAIN_LATER, "no terminal host has room; try again later")
            return
        if not owner and on_new is not None:
            on_new()  # the audit record, before the shell exists (raising refuses the open)
        url = f"ws://{host.address}/attach/{term_id}?user={quote(user, safe='')}"
        if offset is not None:
            url += f"&offset={offset}"
        signed = self.signer.sign(
            user=user, terminal=term_id, host=host.host_id, token_exp=int(principal.exp)
        )
        try:
            upstream = await connect(
                url,
                additional_headers={HEADER: signed},
                open_timeout=CONNECT_TIMEOUT,
                max_size=MAX_FRAME,
                compression=None,
                ping_interval=20,
            )
        except (OSError, InvalidHandshake, TimeoutError) as exc:
            log.warning("terminal host %s unreachable: %s", host.host_id, type(exc).__name__)
            await websocket.close(WS_TRY_AGAIN_LATER, "terminal host unreachable; retrying")
            return
        self.active += 1
        try:
            await _copy_both_ways(websocket, upstream)
        finally:
            self.active -= 1


async def _copy_both_ways(websocket: WebSocket, upstream: ClientConnection) -> None:
    async def down() -> None:  # host → browser, then the host's close code (or 1013 if it vanished)
        with contextlib.suppress(ConnectionClosed):
            async for frame in upstream:
                if isinstance(frame, bytes):
                    await websocket.send_bytes(frame)
                else:
                    await websocket.send_text(frame)
        code, reason = upstream.close_code, upstream.close_reason or ""
        if code is None or code == 1006:
            code, reason = WS_TRY_AGAIN_LATER, "terminal host connection lost; retrying"
        elif code == SERVICE_RESTART:  # uvicorn's goodbye: the host is stopping and its shells die with it
            code, reason = WS_TERMINAL_LOST, "terminal host restarted: the shell is lost"
        with contextlib.suppress(RuntimeError, OSError):
            await websocket.close(code, reason[:120])

    async def up() -> None:  # browser → host, frame for frame (the host parses and enforces)
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            if message.get("bytes") is not None:
                await upstream.send(message["bytes"])
            elif message.get("text") is not None:
                await upstream.send(message["text"])

    tasks = [asyncio.create_task(down()), asyncio.create_task(up())]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task
        await upstream.close()
