"""The Starlette application: its routes, and the lifespan that starts the bus, terminals and tasks.

The web layer knows nothing of Redis (the bus owns the bridge) and the bus knows nothing of Starlette.
Routes live in `routes`, the sockets in `events_socket` and `terminal_socket`; what they share (state,
caller, audit) in `state`; refusals are `errors.HttpError`, turned into responses by one handler.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles

from aifactory import bus as bus_module
from aifactory.audit import AuditLog
from aifactory.bus import EventBus, start_bus
from aifactory.config import Settings
from aifactory.constants import EVENTS_PATH, TERMINAL_PATH
from aifactory.host_auth import HostRequestSigner
from aifactory.socket_quota import SocketQuota
from aifactory.tasks import TaskRunner
from aifactory.taskstore import MemoryTaskStore, RedisTaskStore, TaskStore
from aifactory.terminal import TerminalManager
from aifactory.terminal_directory import Directory
from aifactory.web import routes
from aifactory.web.errors import EXCEPTION_HANDLERS
from aifactory.web.events_socket import ws_events
from aifactory.web.state import ServerState
from aifactory.web.terminal_relay import TerminalRelay
from aifactory.web.terminal_socket import ws_terminal

__all__ = ["create_app"]

log = logging.getLogger("aifactory.server")


def create_app(settings: Settings, *, bridge_options: dict[str, Any] | None = None) -> Starlette:
    """Build the app; the lifespan starts the bus (and the Redis bridge when REDIS_URL is set)."""
    replica_id = bus_module.REPLICA_ID
    state = ServerState(
        settings=settings,
        replica_id=replica_id,
        audit=AuditLog(settings.audit_log, replica_id),
        sockets=SocketQuota(settings.max_sockets_per_user),
        bridge_options={
            "backoff_initial": min(1.0, settings.redis_backoff_max),
            "backoff_max": settings.redis_backoff_max,
            **(bridge_options or {}),
        },
    )

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        state.bus = await start_bus(
            settings.redis_target,
            settings.channel,
            replica_id=replica_id,
            secret=settings.auth_secret,
            history_size=settings.history_size,
            history_ttl=settings.history_ttl,
            **state.bridge_options,
        )
        state.task_store = await task_store(state.bus, settings.channel)
        conns = None
        if settings.terminals_mode == "host":  # this replica owns no shell: it relays to terminal hosts
            from aifactory.bridge.connections import RedisConnections  # redis-py only when needed

            assert settings.redis_target is not None
            conns = RedisConnections(settings.redis_target, replica_id, logging.LoggerAdapter(log, {}))
            state.relay = TerminalRelay(
                Directory(await conns.publisher()), HostRequestSigner(settings.auth_secret)
            )
        else:
            state.terminals = TerminalManager(
                shell=settings.terminal_shell,
                replica_id=replica_id,
                idle_seconds=settings.terminal_idle_seconds,
                grace_seconds=settings.terminal_grace_seconds,
                max_terminals=settings.terminal_max,
                sandbox_mode=settings.terminal_sandbox,
            )
            state.terminals.start()
        state.tasks = TaskRunner(replica_id, store=state.task_store)
        state.ready = True
        log.info("aifactory-server ready on %s:%d (replica %s)", settings.host, settings.port, replica_id)
        try:
            yield
        finally:
            state.ready = False
            await state.tasks.stop()
            if state.terminals is not None:
                await state.terminals.stop()
            if conns is not None:
                await conns.drop_publisher()
            await state.task_store.aclose()
            await state.bus.aclose()

    app = Starlette(
        routes=[
            Route("/", routes.index),
            Route("/healthz", routes.healthz),
            Route("/readyz", routes.readyz),
            Route("/metrics", routes.metrics),
            Route("/api/events", routes.post_event, methods=["POST"]),
            Route("/api/tasks", routes.post_task, methods=["POST"]),
            Route("/api/tasks", routes.list_tasks, methods=["GET"]),
            WebSocketRoute(EVENTS_PATH, ws_events),
            WebSocketRoute(TERMINAL_PATH + "/{term_id}", ws_terminal),
            Mount("/static", app=StaticFiles(directory=routes.STATIC_DIR, check_dir=False), name="static"),
        ],
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=lifespan,
    )
    app.state.server = state

    async def drain() -> None:
        """SIGTERM, before uvicorn closes anything: not ready, own events published, sockets 1012."""
        state.ready = False
        if state.bus is not None:
            await state.bus.flush(settings.shutdown_grace / 4)
        state.draining.set()
        grace = settings.shutdown_grace / 4
        for hook in list(state.detached):
            hook(grace)
        deadline = time.monotonic() + grace
        while state.detached and time.monotonic() < deadline:  # each leaves once its socket has closed
            await asyncio.sleep(0.01)

    app.state.drain = drain
    return app


async def task_store(bus: EventBus, channel: str) -> TaskStore:
    """Task records in Redis when the bus has a bridge (any replica answers), else in this process."""
    if bus.bridge is None:
        return MemoryTaskStore()
    return RedisTaskStore(await bus.bridge.keyed_client(), channel)
