"""The HTTP routes: health, readiness, metrics, the portal page, the two emitting API calls, and the
caller's task list (`GET /api/tasks`, what the portal refetches after a `resync`).

Flow of an emitting route: authenticate → parse → audit record → bus. Any refusal is an `HttpError`
raised before the audit record, so a refused request has no side effect.
"""

from __future__ import annotations

import json
import math
import uuid
from pathlib import Path
from typing import Any

from starlette.requests import ClientDisconnect, Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, Response

from aifactory.constants import MAX_ID_LEN
from aifactory.envelope import SCOPES
from aifactory.tasks import TaskSpec
from aifactory.web.errors import HttpError
from aifactory.web.state import audit, http_principal, server_state

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
MAX_BODY_BYTES = 256 * 1024


async def healthz(_request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    state = server_state(request)
    body: dict[str, Any] = {
        "status": "ready" if state.ready else "not-ready",
        "replica": state.replica_id,
        "bridge": state.bus.state if state.bus else "starting",
        "channel": state.settings.channel if state.settings.redis_url else None,
        "clients": len(state.bus.registry) if state.bus else 0,
        "terminals": (  # host mode: the terminal sockets this replica relays right now
            len(state.terminals.terminals) if state.terminals else state.relay.active if state.relay else 0
        ),
    }
    return JSONResponse(body, status_code=200 if state.ready else 503)


async def metrics(request: Request) -> Response:
    state = server_state(request)
    if state.bus is None:
        return PlainTextResponse("# starting\n", status_code=503)
    body, content_type = state.bus.metrics.render()
    return Response(body, media_type=content_type)


async def index(_request: Request) -> Response:
    return FileResponse(STATIC_DIR / "index.html")


async def post_event(request: Request) -> Response:
    """Emit one event: role service/admin; audit first, then the bus."""
    state = server_state(request)
    principal = http_principal(request)
    if not principal.can_emit:
        raise HttpError(
            403, "forbidden", f"role {principal.role!r} may not emit events; use a service or admin token"
        )
    body = await json_body(request)
    scope, target, event = parse_event_body(body)
    audit(
        state,
        "event.emit",
        principal,
        scope=scope,
        target=target,
        event_type=event.get("type"),
        event_bytes=len(json.dumps(event)),
    )
    assert state.bus is not None
    if target is None:  # parse_event_body: only a broadcast has no target
        local = state.bus.broadcast_event(event)
    elif scope == "user":
        local = state.bus.send_to_user(target, event)
    else:
        local = state.bus.send_to_org(target, event)
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


async def post_task(request: Request) -> Response:
    """Start a simulated agent task owned by the caller; its events reach them on every replica."""
    state = server_state(request)
    principal = http_principal(request)
    body = await json_body(request, optional=True)
    spec = parse_task_body(body, state.settings.task_max_steps)
    task_id = uuid.uuid4().hex
    audit(state, "task.start", principal, task_id=task_id, name=spec.name, steps=spec.steps)
    assert state.tasks is not None
    state.tasks.start(task_id, principal, spec)
    return JSONResponse({"task_id": task_id, "name": spec.name, "replica": state.replica_id}, status_code=202)


async def list_tasks(request: Request) -> Response:
    """The caller's tasks with their last known status and progress, newest first (from any replica)."""
    state = server_state(request)
    principal = http_principal(request)
    assert state.task_store is not None
    return JSONResponse({"tasks": await state.task_store.list(principal.user_id)})


# ---- request bodies ---------------------------------------------------------------------------------
async def json_body(request: Request, *, optional: bool = False) -> Any:
    """The request's JSON object, read with a size cap (also for chunked bodies without Content-Length)."""
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > MAX_BODY_BYTES:
        raise HttpError(413, "body_too_large", f"request body is larger than {MAX_BODY_BYTES} bytes")
    chunks, size = [], 0
    try:
        async for chunk in request.stream():  # chunked bodies have no Content-Length: count as they arrive
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                raise HttpError(413, "body_too_large", f"request body is larger than {MAX_BODY_BYTES} bytes")
            chunks.append(chunk)
    except ClientDisconnect:  # gone mid-body, e.g. cut by the read timeout (http_guard): nothing happened
        raise HttpError(408, "request_timeout", "the request body did not arrive in time") from None
    raw = b"".join(chunks)
    if not raw.strip():
        if optional:
            return {}
        raise HttpError(400, "invalid_json", "request body is empty; send a JSON object")
    try:
        body = json.loads(raw, parse_constant=_not_json, parse_float=_finite_float)
    except (ValueError, RecursionError):
        raise HttpError(400, "invalid_json", "request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise HttpError(422, "invalid_body", "request body must be a JSON object")
    try:  # Python's JSON accepts "\ud800"; it cannot be written as UTF-8 (audit log, frames): refuse it here
        json.dumps(body, ensure_ascii=False).encode()
    except UnicodeEncodeError:
        raise HttpError(
            400, "invalid_json", "request body contains a lone UTF-16 surrogate (\\ud800-\\udfff)"
        ) from None
    return body


def _not_json(name: str) -> Any:
    """NaN, Infinity and -Infinity are not JSON: every frame a client gets must parse in a browser."""
    raise HttpError(400, "invalid_json", f"request body contains {name}, which is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e400 parses as inf
        raise HttpError(400, "invalid_json", f"number {text[:40]} is out of range for a JSON double")
    return value


def parse_event_body(body: dict[str, Any]) -> tuple[str, str | None, dict[str, Any]]:
    unknown = sorted(set(body) - {"scope", "target", "event"})
    if unknown:
        raise HttpError(
            422, "invalid_body", f"unknown field(s) {', '.join(unknown)}; allowed: scope, target, event"
        )
    scope = body.get("scope")
    if scope not in SCOPES:
        raise HttpError(422, "invalid_scope", "field 'scope' must be one of broadcast, user, org")
    target = body.get("target")
    if scope == "broadcast":
        if target is not None:
            raise HttpError(422, "invalid_target", "field 'target' must be omitted when scope is broadcast")
    elif not (isinstance(target, str) and 0 < len(target) <= MAX_ID_LEN):
        raise HttpError(
            422,
            "invalid_target",
            f"field 'target' must be a non-empty {scope} id (string, at most {MAX_ID_LEN} chars)",
        )
    event = body.get("event")
    if not isinstance(event, dict):
        raise HttpError(422, "invalid_event", "field 'event' must be a JSON object")
    return scope, target, event


def parse_task_body(body: dict[str, Any], max_steps: int) -> TaskSpec:
    unknown = sorted(set(body) - {"name", "steps", "interval"})
    if unknown:
        raise HttpError(
            422, "invalid_body", f"unknown field(s) {', '.join(unknown)}; allowed: name, steps, interval"
        )
    name = body.get("name", "task")
    if not (isinstance(name, str) and 0 < len(name) <= 100):
        raise HttpError(422, "invalid_name", "field 'name' must be a string of 1-100 characters")
    steps = body.get("steps", 5)
    if not (isinstance(steps, int) and not isinstance(steps, bool) and 1 <= steps <= max_steps):
        raise HttpError(422, "invalid_steps", f"field 'steps' must be an integer from 1 to {max_steps}")
    interval = body.get("interval", 0.5)
    if not (isinstance(interval, int | float) and not isinstance(interval, bool) and 0 <= interval <= 10):
        raise HttpError(422, "invalid_interval", "field 'interval' must be a number of seconds from 0 to 10")
    return TaskSpec(name=name, steps=steps, interval=float(interval))
