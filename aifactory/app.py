"""The Starlette application: routes, sockets and the lifespan that starts the bus and its bridge.

Flow of an emitting route: authenticate → parse → audit record → bus. The web layer knows nothing of
Redis (the bus owns the bridge) and the bus knows nothing of Starlette.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.websockets import WebSocket, WebSocketDisconnect

from aifactory import bus as bus_module
from aifactory.audit import AuditError, AuditLog
from aifactory.auth import AuthError, Principal, bearer_token, verify_token
from aifactory.bus import EventBus, start_bus
from aifactory.config import Settings
from aifactory.envelope import SCOPES
from aifactory.registry import Subscriber, SubscriberClosed
from aifactory.tasks import TaskRunner, TaskSpec
from aifactory.terminal import TerminalManager, TerminalRefused

log = logging.getLogger("aifactory.server")

STATIC_DIR = Path(__file__).resolve().parent / "static"
MAX_BODY_BYTES = 256 * 1024
MAX_ID_LEN = 256
WS_POLICY_VIOLATION = 1008
WS_TRY_AGAIN_LATER = 1013
WRITER_BATCH = 64


def error(status: int, code: str, detail: str) -> JSONResponse:
    """Every 4xx/5xx body: {"error": <stable code>, "detail": <one human line>}."""
    return JSONResponse({"error": code, "detail": detail}, status_code=status)


class BadRequest(Exception):
    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.response = error(status, code, detail)


@dataclass
class ServerState:
    """What the routes share; built at startup by the lifespan."""

    settings: Settings
    replica_id: str
    audit: AuditLog
    bridge_options: dict[str, Any] = field(default_factory=dict)
    bus: EventBus | None = None
    terminals: TerminalManager | None = None
    tasks: TaskRunner | None = None
    ready: bool = False

    def principal(self, token: str | None) -> Principal:
        return verify_token(self.settings.auth_secret, token)


# ---- helpers ----------------------------------------------------------------------------------------
def _state(conn: Request | WebSocket) -> ServerState:
    return conn.app.state.server


def _http_principal(request: Request) -> Principal:
    try:
        return _state(request).principal(bearer_token(request.headers.get("authorization")))
    except AuthError as exc:
        raise BadRequest(401, "unauthorized", f"{exc}; send Authorization: Bearer <token>") from None


async def _json_body(request: Request, *, optional: bool = False) -> Any:
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > MAX_BODY_BYTES:
        raise BadRequest(413, "body_too_large", f"request body is larger than {MAX_BODY_BYTES} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():  # chunked bodies have no Content-Length: count as they arrive
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise BadRequest(413, "body_too_large", f"request body is larger than {MAX_BODY_BYTES} bytes")
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw.strip():
        if optional:
            return {}
        raise BadRequest(400, "invalid_json", "request body is empty; send a JSON object")
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        raise BadRequest(400, "invalid_json", "request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise BadRequest(422, "invalid_body", "request body must be a JSON object")
    return body


def _audit(state: ServerState, action: str, actor: Principal, **details: Any) -> None:
    try:
        state.audit.record(action, actor, **details)
    except AuditError as exc:
        log.error("%s; refusing %s", exc, action)
        raise BadRequest(
            503, "audit_unavailable", "the audit log cannot be written; nothing was emitted"
        ) from None


# ---- HTTP routes ------------------------------------------------------------------------------------
async def healthz(_request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    state = _state(request)
    body: dict[str, Any] = {
        "status": "ready" if state.ready else "not-ready",
        "replica": state.replica_id,
        "bridge": state.bus.state if state.bus else "starting",
        "channel": state.settings.channel if state.settings.redis_url else None,
        "clients": len(state.bus.registry) if state.bus else 0,
        "terminals": len(state.terminals.terminals) if state.terminals else 0,
    }
    return JSONResponse(body, status_code=200 if state.ready else 503)


async def metrics(request: Request) -> Response:
    state = _state(request)
    if state.bus is None:
        return PlainTextResponse("# starting\n", status_code=503)
    body, content_type = state.bus.metrics.render()
    return Response(body, media_type=content_type)


async def index(_request: Request) -> Response:
    return FileResponse(STATIC_DIR / "index.html")


async def post_event(request: Request) -> Response:
    """Emit one event: role service/admin; audit first, then the bus."""
    state = _state(request)
    try:
        principal = _http_principal(request)
        if not principal.can_emit:
            return error(
                403, "forbidden", f"role {principal.role!r} may not emit events; use a service or admin token"
            )
        body = await _json_body(request)
        scope, target, event = _parse_event_body(body)
        _audit(
            state,
            "event.emit",
            principal,
            scope=scope,
            target=target,
            event_type=event.get("type"),
            event_bytes=len(json.dumps(event)),
        )
    except BadRequest as exc:
        return exc.response
    assert state.bus is not None
    if scope == "broadcast":
        local = state.bus.broadcast_event(event)
    elif scope == "user":
        local = state.bus.send_to_user(target, event)  # type: ignore[arg-type]
    else:
        local = state.bus.send_to_org(target, event)  # type: ignore[arg-type]
    return JSONResponse(
        {
            "status": "accepted",
            "scope": scope,
            "target": target,
            "replica": state.replica_id,
            "local_clients": local,
        },
        status_code=202,
    )


def _parse_event_body(body: dict[str, Any]) -> tuple[str, str | None, dict[str, Any]]:
    unknown = sorted(set(body) - {"scope", "target", "event"})
    if unknown:
        raise BadRequest(
            422, "invalid_body", f"unknown field(s) {', '.join(unknown)}; allowed: scope, target, event"
        )
    scope = body.get("scope")
    if scope not in SCOPES:
        raise BadRequest(422, "invalid_scope", "field 'scope' must be one of broadcast, user, org")
    target = body.get("target")
    if scope == "broadcast":
        if target is not None:
            raise BadRequest(422, "invalid_target", "field 'target' must be omitted when scope is broadcast")
    elif not (isinstance(target, str) and 0 < len(target) <= MAX_ID_LEN):
        raise BadRequest(
            422,
            "invalid_target",
            f"field 'target' must be a non-empty {scope} id (string, at most {MAX_ID_LEN} chars)",
        )
    event = body.get("event")
    if not isinstance(event, dict):
        raise BadRequest(422, "invalid_event", "field 'event' must be a JSON object")
    return scope, target, event


async def post_task(request: Request) -> Response:
    """Start a simulated agent task owned by the caller; its events reach them on every replica."""
    state = _state(request)
    try:
        principal = _http_principal(request)
        body = await _json_body(request, optional=True)
        spec = _parse_task_body(body, state.settings.task_max_steps)
        task_id = uuid.uuid4().hex
        _audit(state, "task.start", principal, task_id=task_id, name=spec.name, steps=spec.steps)
    except BadRequest as exc:
        return exc.response
    assert state.tasks is not None
    state.tasks.start(task_id, principal, spec)
    return JSONResponse({"task_id": task_id, "name": spec.name, "replica": state.replica_id}, status_code=202)


def _parse_task_body(body: dict[str, Any], max_steps: int) -> TaskSpec:
    unknown = sorted(set(body) - {"name", "steps", "interval"})
    if unknown:
        raise BadRequest(
            422, "invalid_body", f"unknown field(s) {', '.join(unknown)}; allowed: name, steps, interval"
        )
    name = body.get("name", "task")
    if not (isinstance(name, str) and 0 < len(name) <= 100):
        raise BadRequest(422, "invalid_name", "field 'name' must be a string of 1-100 characters")
    steps = body.get("steps", 5)
    if not (isinstance(steps, int) and not isinstance(steps, bool) and 1 <= steps <= max_steps):
        raise BadRequest(422, "invalid_steps", f"field 'steps' must be an integer from 1 to {max_steps}")
    interval = body.get("interval", 0.5)
    if not (isinstance(interval, int | float) and not isinstance(interval, bool) and 0 <= interval <= 10):
        raise BadRequest(422, "invalid_interval", "field 'interval' must be a number of seconds from 0 to 10")
    return TaskSpec(name=name, steps=steps, interval=float(interval))


# ---- WebSockets -------------------------------------------------------------------------------------
async def _ws_principal(websocket: WebSocket) -> Principal | None:
    """Accept, then verify; on failure close with 1008 and the reason (browsers can read close reasons)."""
    token = websocket.query_params.get("token") or bearer_token(websocket.headers.get("authorization"))
    await websocket.accept()
    try:
        return _state(websocket).principal(token)
    except AuthError as exc:
        await websocket.close(code=WS_POLICY_VIOLATION, reason=str(exc))
        return None


async def _until_disconnect(websocket: WebSocket) -> None:
    """Read and discard client frames (the events socket is one-way) until the client goes away."""
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return


async def _write_frames(websocket: WebSocket, sub: Subscriber) -> None:
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
    principal = await _ws_principal(websocket)
    if principal is None:
        return
    state = _state(websocket)
    assert state.bus is not None
    sub = Subscriber(
        principal.user_id,
        principal.org_id,
        max(2, state.settings.ws_queue),
        policy=state.settings.ws_overflow,
    )
    state.bus.registry.add(sub)
    tasks: list[asyncio.Task[None]] = []
    try:
        hello = {
            "type": "hello",
            "replica": state.replica_id,
            "user": principal.user_id,
            "org": principal.org_id,
        }
        await websocket.send_text(json.dumps(hello))
        tasks = [
            asyncio.create_task(_write_frames(websocket, sub)),
            asyncio.create_task(_until_disconnect(websocket)),
            asyncio.create_task(asyncio.sleep(max(0.0, principal.exp - time.time()))),
        ]
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        writer, _reader, expiry = tasks
        if expiry in done:
            await websocket.close(code=WS_POLICY_VIOLATION, reason="token expired")
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


async def ws_terminal(websocket: WebSocket) -> None:
    """A PTY shell owned by the caller: text/binary frames in are keystrokes, text frames out are output."""
    principal = await _ws_principal(websocket)
    if principal is None:
        return
    state = _state(websocket)
    assert state.terminals is not None
    term_id = websocket.path_params["term_id"]
    is_new = term_id not in state.terminals.terminals
    if is_new:
        try:
            _audit(state, "terminal.open", principal, terminal=term_id)
        except BadRequest:
            await websocket.close(code=1011, reason="audit log unavailable")
            return
    try:
        term, att = await state.terminals.attach(term_id, principal.user_id)
    except TerminalRefused as exc:
        log.info("terminal %s refused for %s: %s", term_id, principal.user_id, exc.reason)
        await websocket.close(code=exc.code, reason=exc.reason)
        return
    except OSError as exc:  # no PTYs left, shell missing, fork failed
        log.error("terminal %s for %s could not start: %s", term_id, principal.user_id, exc)
        await websocket.close(code=1011, reason="could not start a shell on this replica")
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
            state.terminals.output_consumed(term)  # type: ignore[union-attr]

    async def pump_in() -> None:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            text = message.get("text")
            if text is not None and text.startswith('{"type":"resize"'):
                with contextlib.suppress(ValueError, TypeError, KeyError):
                    size = json.loads(text)
                    state.terminals.resize(term, int(size["rows"]), int(size["cols"]))  # type: ignore[union-attr]
                    continue
            data = text.encode() if text is not None else message.get("bytes") or b""
            if data:
                await state.terminals.write(term, data)  # type: ignore[union-attr]

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
        state.terminals.detach(term, att)


# ---- application --------------------------------------------------------------------------------------
def create_app(settings: Settings, *, bridge_options: dict[str, Any] | None = None) -> Starlette:
    """Build the app; the lifespan starts the bus (and the Redis bridge when REDIS_URL is set)."""
    replica_id = bus_module.REPLICA_ID
    state = ServerState(
        settings=settings,
        replica_id=replica_id,
        audit=AuditLog(settings.audit_log, replica_id),
        bridge_options={
            "backoff_initial": min(1.0, settings.redis_backoff_max),
            "backoff_max": settings.redis_backoff_max,
            **(bridge_options or {}),
        },
    )

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        state.bus = await start_bus(
            settings.redis_target, settings.channel, replica_id=replica_id, **state.bridge_options
        )
        state.terminals = TerminalManager(
            shell=settings.terminal_shell,
            replica_id=replica_id,
            idle_seconds=settings.terminal_idle_seconds,
            grace_seconds=settings.terminal_grace_seconds,
            max_terminals=settings.terminal_max,
        )
        state.terminals.start()
        state.tasks = TaskRunner(replica_id)
        state.ready = True
        log.info("aifactory-server ready on %s:%d (replica %s)", settings.host, settings.port, replica_id)
        try:
            yield
        finally:
            state.ready = False
            await state.tasks.stop()
            await state.terminals.stop()
            await state.bus.aclose()

    routes = [
        Route("/", index),
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/metrics", metrics),
        Route("/api/events", post_event, methods=["POST"]),
        Route("/api/tasks", post_task, methods=["POST"]),
        WebSocketRoute("/ws/events", ws_events),
        WebSocketRoute("/ws/terminal/{term_id}", ws_terminal),
        Mount("/static", app=StaticFiles(directory=STATIC_DIR, check_dir=False), name="static"),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.server = state
    return app
