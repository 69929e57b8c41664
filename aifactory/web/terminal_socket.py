"""`/ws/terminal/{id}`: a PTY shell owned by the caller, pumped between the socket and `TerminalManager`."""

from __future__ import annotations

import logging

from starlette.websockets import WebSocket

from aifactory import terminal_protocol as proto
from aifactory.auth import Principal
from aifactory.constants import WS_INTERNAL_ERROR, WS_POLICY_VIOLATION
from aifactory.terminal import TerminalRefused
from aifactory.terminal_pump import pump
from aifactory.web.errors import HttpError
from aifactory.web.state import audit, server_state, user_socket

log = logging.getLogger("aifactory.server")


async def ws_terminal(websocket: WebSocket) -> None:
    """A PTY shell owned by the caller: binary frames carry bytes, text frames control (docs/terminals.md)."""
    async with user_socket(websocket) as slot:
        if slot is not None:
            await _serve_terminal(websocket, slot.principal)


async def _serve_terminal(websocket: WebSocket, principal: Principal) -> None:
    state = server_state(websocket)
    if state.relay is not None:  # AIFACTORY_TERMINALS=host
        try:
            await state.relay.serve(
                websocket,
                principal,
                on_new=lambda: audit(
                    state, "terminal.open", principal, terminal=websocket.path_params["term_id"]
                ),
            )
        except HttpError:
            await websocket.close(code=WS_INTERNAL_ERROR, reason="audit log unavailable")
        return
    assert state.terminals is not None
    terminals = state.terminals
    term_id = websocket.path_params["term_id"]
    try:
        offset = proto.parse_offset(websocket.query_params.get("offset"))
    except proto.ControlError as exc:
        await websocket.close(code=WS_POLICY_VIOLATION, reason=str(exc))
        return
    try:  # the audit record is written once the open is sure to happen (id valid, slot reserved)
        term, att = await terminals.attach(
            term_id,
            principal.user_id,
            on_open=lambda: audit(state, "terminal.open", principal, terminal=term_id),
            offset=offset,
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
    await pump(websocket, terminals, term, att, expires_at=principal.exp, replica=state.replica_id)
