"""`/ws/terminal/{id}`: a PTY shell owned by the caller, pumped between the socket and `TerminalManager`."""

from __future__ import annotations

import logging

from starlette.websockets import WebSocket

from aifactory import terminal_protocol as proto
from aifactory.constants import WS_INTERNAL_ERROR, WS_POLICY_VIOLATION
from aifactory.terminal import TerminalRefused
from aifactory.terminal_pump import pump
from aifactory.web.errors import HttpError
from aifactory.web.state import audit, server_state, ws_principal

log = logging.getLogger("aifactory.server")


async def ws_terminal(websocket: WebSocket) -> None:
    """A PTY shell owned by the caller: binary frames carry bytes, text frames control (docs/terminals.md)."""
    principal = await ws_principal(websocket)
    if principal is None:
        return
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
    is_new = term_id not in terminals.terminals
    if is_new:
        try:
            audit(state, "terminal.open", principal, terminal=term_id)
        except HttpError:
            await websocket.close(code=WS_INTERNAL_ERROR, reason="audit log unavailable")
            return
    try:
        offset = proto.parse_offset(websocket.query_params.get("offset"))
    except proto.ControlError as exc:
        await websocket.close(code=WS_POLICY_VIOLATION, reason=str(exc))
        return
    try:
        term, att = await terminals.attach(term_id, principal.user_id, offset=offset)
    except TerminalRefused as exc:
        log.info("terminal %s refused for %s: %s", term_id, principal.user_id, exc.reason)
        await websocket.close(code=exc.code, reason=exc.reason)
        return
    except OSError as exc:  # no PTYs left, shell missing, fork failed
        log.error("terminal %s for %s could not start: %s", term_id, principal.user_id, exc)
        await websocket.close(code=WS_INTERNAL_ERROR, reason="could not start a shell on this replica")
        return
    await pump(websocket, terminals, term, att, expires_at=principal.exp, replica=state.replica_id)
