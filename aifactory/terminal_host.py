"""`aifactory-server terminal-host`: the process that owns the shells when `AIFACTORY_TERMINALS=host`.

Web replicas own no shells then: each `/ws/terminal/{id}` is relayed (`aifactory.web.terminal_relay`) over
a WebSocket to the host that owns the id, which speaks the same framed protocol (`terminal_pump`). The host
trusts only requests the web tier signed (`host_auth`), never a user token. It keeps its directory entries
in Redis alive (`terminal_directory`) and drops them when a shell ends. Its shells die with it: on
shutdown every socket is closed with WS_TERMINAL_LOST (4410) so browsers know to open a new terminal.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import socket
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from aifactory import terminal_protocol as proto
from aifactory.bridge.connections import RedisConnections
from aifactory.config import Settings
from aifactory.constants import WS_POLICY_VIOLATION, WS_TERMINAL_LOST, WS_TRY_AGAIN_LATER
from aifactory.host_auth import HEADER, HostAuthError, HostRequestSigner
from aifactory.terminal import TERMINAL_ID, TerminalManager, TerminalRefused
from aifactory.terminal_directory import REFRESH_SECONDS, Directory
from aifactory.terminal_pump import pump

log = logging.getLogger("aifactory.terminal_host")
ATTACH_PATH = "/attach"


def internal_id(term_id: str, user: str) -> str:
    """The manager's key for (user, id): ids are unique per user, so two users may share a name."""
    return "u" + hashlib.sha256(f"{user}\0{term_id}".encode()).hexdigest()[:40]


def default_address(settings: Settings) -> str:
    if settings.terminal_host_address:
        return settings.terminal_host_address
    host = settings.host
    if host in ("0.0.0.0", "::", ""):
        host = socket.gethostbyname(socket.gethostname())
    return f"{host}:{settings.port}"


@dataclass
class HostState:
    settings: Settings
    host_id: str
    address: str
    signer: HostRequestSigner
    manager: TerminalManager
    directory: Directory | None = None
    names: dict[str, tuple[str, str]] = field(default_factory=dict)  # internal id → (term id, user)
    opening: set[str] = field(default_factory=set)  # internal ids whose shell is being spawned
    ready: bool = False


async def _heartbeat(state: HostState) -> None:
    """Refresh this host's entry and its terminals'; drop entries of shells that have ended."""
    assert state.directory is not None
    while True:
        with contextlib.suppress(Exception):  # Redis down: entries expire; the next beat restores them
            live = state.manager.terminals
            for key in [k for k in state.names if k not in live and k not in state.opening]:
                term_id, user = state.names.pop(key)
                await state.directory.release(term_id, user, state.host_id)
            await state.directory.refresh(
                [state.names[k] for k in live if k in state.names],
                state.host_id,
                {"address": state.address, "terminals": len(live), "max": state.manager.max_terminals},
            )
        await asyncio.sleep(REFRESH_SECONDS)


async def attach(websocket: WebSocket) -> None:
    state: HostState = websocket.app.state.host
    term_id = websocket.path_params["term_id"]
    user = websocket.query_params.get("user", "")
    try:
        request = state.signer.verify(websocket.headers.get(HEADER), user=user, terminal=term_id)
        offset = proto.parse_offset(websocket.query_params.get("offset"))
    except (HostAuthError, proto.ControlError) as exc:
        log.warning("terminal host refused an attach: %s", exc)
        await websocket.close(code=WS_POLICY_VIOLATION)  # before accept: an HTTP 403, nothing more
        return
    await websocket.accept()
    if request.host != state.host_id:
        await websocket.close(code=WS_TERMINAL_LOST, reason="terminal host restarted: the shell is lost")
        return
    if not TERMINAL_ID.match(term_id):
        await websocket.close(
            code=WS_POLICY_VIOLATION, reason="terminal id must be 1-64 of A-Z a-z 0-9 _ . -"
        )
        return
    key = internal_id(term_id, user)
    if key not in state.manager.terminals:
        assert state.directory is not None
        try:
            owner = await state.directory.claim(term_id, user, state.host_id)
        except Exception:
            await websocket.close(code=WS_TRY_AGAIN_LATER, reason="terminal directory unavailable; retry")
            return
        if owner != state.host_id:
            await websocket.close(code=WS_TRY_AGAIN_LATER, reason="terminal is owned by another host; retry")
            return
        state.names[key] = (term_id, user)
    state.opening.add(key)
    try:
        term, att = await state.manager.attach(key, user, offset=offset)
    except TerminalRefused as exc:
        await websocket.close(code=exc.code, reason=exc.reason)
        return
    except OSError as exc:
        log.error("terminal %s for %s could not start: %s", term_id, user, exc)
        await websocket.close(code=1011, reason="could not start a shell on this terminal host")
        return
    finally:
        state.opening.discard(key)
    await pump(websocket, state.manager, term, att, expires_at=request.token_exp, replica=state.host_id)


async def readyz(request: Request) -> JSONResponse:
    state: HostState = request.app.state.host
    body: dict[str, object] = {"status": "ok" if state.ready else "starting", "host": state.host_id}
    body["terminals"] = len(state.manager.terminals)
    return JSONResponse(body, status_code=200 if state.ready else 503)


async def healthz(_request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


def create_host_app(settings: Settings) -> Starlette:
    host_id = str(uuid.uuid4())
    manager = TerminalManager(
        shell=settings.terminal_shell,
        replica_id=host_id,
        idle_seconds=settings.terminal_idle_seconds,
        grace_seconds=settings.terminal_grace_seconds,
        max_terminals=settings.terminal_max,
        sandbox_mode=settings.terminal_sandbox,  # the same bubblewrap sandbox, probe and refusal as local
    )
    state = HostState(
        settings, host_id, default_address(settings), HostRequestSigner(settings.auth_secret), manager
    )

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        assert settings.redis_target is not None
        conns = RedisConnections(settings.redis_target, host_id, logging.LoggerAdapter(log, {}))
        state.directory = Directory(await conns.publisher())
        manager.start()
        # Listed in the directory before /readyz says ready: a ready host can be picked at once.
        await state.directory.refresh(
            [], host_id, {"address": state.address, "terminals": 0, "max": manager.max_terminals}
        )
        beat = asyncio.create_task(_heartbeat(state), name="terminal-host-heartbeat")
        state.ready = True
        log.info("terminal host %s ready on %s (advertised as %s)", host_id, settings.port, state.address)
        try:
            yield
        finally:
            state.ready = False
            beat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beat
            reason = "terminal host shutting down: the shell is lost"
            await asyncio.gather(
                *(manager.close(t, reason, WS_TERMINAL_LOST) for t in list(manager.terminals.values()))
            )
            await manager.stop()
            with contextlib.suppress(Exception):
                for term_id, user in state.names.values():
                    await state.directory.release(term_id, user, host_id)
                await state.directory.drop_host(host_id)
            await conns.drop_publisher()

    app = Starlette(
        routes=[
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            WebSocketRoute(ATTACH_PATH + "/{term_id}", attach),
        ],
        lifespan=lifespan,
    )
    app.state.host = state
    return app
