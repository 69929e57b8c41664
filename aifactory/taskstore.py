"""Last known status and progress of each user's tasks, for `GET /api/tasks` (the portal's refetch).

A client that got `{"type":"resync"}` rebuilds its view from here. With Redis, records live in one hash
per user, `<channel>:tasks:<user>`, so any replica answers; without Redis, in this process.
Writes are fire-and-forget (a task never waits for, or fails because of, Redis); a record expires
`ttl` seconds after its last update.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

__all__ = ["MemoryTaskStore", "RedisTaskStore", "TaskStore"]

log = logging.getLogger("aifactory.tasks")
DEFAULT_TTL = 86_400
MAX_TASKS_PER_USER = 200


class TaskStore:
    """Interface: `update(user, task_id, fields)` merges; `list(user)` returns newest first."""

    def update(self, user: str, task_id: str, fields: dict[str, Any]) -> None:
        raise NotImplementedError

    async def list(self, user: str) -> list[dict[str, Any]]:
        raise NotImplementedError

    async def aclose(self) -> None:
        return None


class MemoryTaskStore(TaskStore):
    def __init__(self, ttl: float = DEFAULT_TTL) -> None:
        self.ttl = ttl
        self._by_user: dict[str, dict[str, dict[str, Any]]] = {}

    def update(self, user: str, task_id: str, fields: dict[str, Any]) -> None:
        tasks = self._by_user.setdefault(user, {})
        record = tasks.setdefault(task_id, {"task_id": task_id})
        record.update(fields, updated=time.time())
        if len(tasks) > MAX_TASKS_PER_USER:
            oldest = min(tasks.values(), key=lambda r: r["updated"])
            tasks.pop(oldest["task_id"], None)

    async def list(self, user: str) -> list[dict[str, Any]]:
        now = time.time()
        tasks = self._by_user.get(user, {})
        for task_id in [t for t, r in tasks.items() if now - r["updated"] > self.ttl]:
            del tasks[task_id]
        return sorted((dict(r) for r in tasks.values()), key=lambda r: r["updated"], reverse=True)


class RedisTaskStore(TaskStore):
    """Records in Redis; the in-process copy answers for this replica's own tasks when Redis is down."""

    def __init__(self, client: Any, prefix: str, ttl: int = DEFAULT_TTL) -> None:
        self.client, self.prefix, self.ttl = client, prefix, ttl
        self.local = MemoryTaskStore(ttl)
        self._pending: set[asyncio.Task[None]] = set()
        self._order = asyncio.Lock()  # FIFO: a newer record never lands before an older one

    def _key(self, user: str) -> str:
        return f"{self.prefix}:tasks:{user}"

    def update(self, user: str, task_id: str, fields: dict[str, Any]) -> None:
        self.local.update(user, task_id, fields)
        record = self.local._by_user[user][task_id]
        task = asyncio.get_running_loop().create_task(self._write(user, task_id, json.dumps(record)))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _write(self, user: str, task_id: str, record: str) -> None:
        try:
            async with self._order:
                pipe = self.client.pipeline(transaction=False)
                pipe.hset(self._key(user), task_id, record)
                pipe.expire(self._key(user), self.ttl)
                await asyncio.wait_for(pipe.execute(), 5.0)
        except Exception as exc:  # Redis down: the local copy still answers for this replica
            log.debug("task record not stored in Redis: %s", type(exc).__name__)

    async def list(self, user: str) -> list[dict[str, Any]]:
        merged = {r["task_id"]: r for r in await self.local.list(user)}
        try:
            raw = await asyncio.wait_for(self.client.hgetall(self._key(user)), 5.0)
        except Exception as exc:
            log.debug("task records not read from Redis: %s", type(exc).__name__)
            raw = {}
        for value in raw.values():
            try:
                record = json.loads(value)
            except ValueError:
                continue
            if isinstance(record, dict) and isinstance(record.get("task_id"), str):
                mine = merged.get(record["task_id"])
                if mine is None or record.get("updated", 0) > mine.get("updated", 0):
                    merged[record["task_id"]] = record
        return sorted(merged.values(), key=lambda r: r.get("updated", 0), reverse=True)

    async def aclose(self) -> None:
        if self._pending:
            await asyncio.wait(self._pending, timeout=2.0)
        try:
            await self.client.aclose()
        except Exception as exc:
            log.debug("closing the task store's Redis client failed: %s", type(exc).__name__)
