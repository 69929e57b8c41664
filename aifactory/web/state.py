"""What the routes and sockets share: the server state built by the lifespan, and who is calling."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.websockets import WebSocket

from aifactory.audit import AuditError, AuditLog
from aifactory.auth import AuthError, Principal, bearer_token, verify_token
from aifactory.bus import EventBus
from aifactory.config import Settings
from aifactory.constants import WS_POLICY_VIOLATION, WS_TRY_AGAIN_LATER
from aifactory.socket_quota import SocketQuota
from aifactory.tasks import TaskRunner
from aifactory.taskstore import TaskStore
from aifactory.terminal import TerminalManager
from aifactory.web.errors import HttpError
from aifactory.web.terminal_relay import TerminalRelay

log = logging.getLogger("aifactory.server")


@dataclass
class ServerState:
    """What the routes share; built at startup by the lifespan."""

    settings: Settings
    replica_id: str
    audit: AuditLog
    sockets: SocketQuota
    bridge_options: dict[str, Any] = field(default_factory=dict)
    bus: EventBus | None = None
    terminals: TerminalManager | None = None
    relay: TerminalRelay | None = None  # AIFACTORY_TERMINALS=host: shells live on terminal hosts
    tasks: TaskRunner | None = None
    task_store: TaskStore | None = None
    ready: bool = False
    draining: asyncio.Event = field(default_factory=asyncio.Event)  # set on SIGTERM: sockets close 1012
    # drain hooks of event sockets detached from ASGI (no task to see `draining`): called with the timeout
    detached: set[Callable[[float], None]] = field(default_factory=set)

    def principal(self, token: str | None) -> Principal:
        return verify_token(self.settings.auth_secret, token)


def server_state(conn: Request | WebSocket) -> ServerState:
    state: ServerState = conn.app.state.server
    return state


def http_principal(request: Request) -> Principal:
    """The caller of an HTTP route, from `Authorization: Bearer`; 401 otherwise."""
    try:
        return server_state(request).principal(bearer_token(request.headers.get("authorization")))
    except AuthError as exc:
        raise HttpError(401, "unauthorized", f"{exc}; send Authorization: Bearer <token>") from None


async def ws_principal(websocket: WebSocket) -> Principal | None:
    """Accept, then verify; on failure close with 1008 and the reason (browsers can read close reasons)."""
    token = websocket.query_params.get("token") or bearer_token(websocket.headers.get("authorization"))
    await websocket.accept()
    try:
        return server_state(websocket).principal(token)
    except AuthError as exc:
        await websocket.close(code=WS_POLICY_VIOLATION, reason=str(exc))
        return None


class SocketSlot:
    """One of a user's AIFACTORY_MAX_SOCKETS_PER_USER slots, held by one socket of `principal`."""

    def __init__(self, quota: SocketQuota, principal: Principal) -> None:
        self.principal = principal
        self._quota: SocketQuota | None = quota
        self.kept = False

    def release(self) -> None:
        """Give the slot back (once, however often it is called)."""
        if self._quota is not None:
            self._quota.release(self.principal.user_id)
            self._quota = None

    def keep(self) -> Callable[[], None]:
        """The socket outlives its handler (the events fast path): call the result when it ends."""
        self.kept = True
        return self.release


@contextlib.asynccontextmanager
async def user_socket(websocket: WebSocket) -> AsyncIterator[SocketSlot | None]:
    """The socket's caller, holding one of their AIFACTORY_MAX_SOCKETS_PER_USER slots until the handler
    returns (or, after `slot.keep()`, until the socket ends).

    None (the socket is already closed: 1008 bad token, 1013 too many sockets of this user) otherwise.
    """
    principal = await ws_principal(websocket)
    if principal is None:
        yield None
        return
    sockets = server_state(websocket).sockets
    if not sockets.acquire(principal.user_id):
        await websocket.close(code=WS_TRY_AGAIN_LATER, reason=sockets.reason)
        yield None
        return
    slot = SocketSlot(sockets, principal)
    try:
        yield slot
    finally:
        if not slot.kept:
            slot.release()


def audit(state: ServerState, action: str, actor: Principal, **details: Any) -> None:
    """Record `action` before doing it; 503 (nothing done) when the audit log cannot be written."""
    try:
        state.audit.record(action, actor, **details)
    except AuditError as exc:
        log.error("%s; refusing %s", exc, action)
        raise HttpError(
            503, "audit_unavailable", "the audit log cannot be written; nothing was emitted"
        ) from None
