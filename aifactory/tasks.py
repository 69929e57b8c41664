"""Simulated agent tasks: the stand-in for real agent work that reports progress over the event bus.

A task runs on the replica that accepted `POST /api/tasks` and uses only the bus's module-level
functions, exactly as agent code would; the Redis bridge carries its events to the other replicas.
Every status and progress change is also recorded in the task store, so `GET /api/tasks` (the portal's
refetch after a `resync`) answers with the last known state from any replica.
Routing: `task.status` and `task.progress` go to the owner's org (the owner is in it, so they see them
once, and so do colleagues); `task.log` lines go to the owner only. No frame reaches the owner twice.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

from aifactory import bus
from aifactory.auth import Principal
from aifactory.taskstore import MemoryTaskStore, TaskStore

log = logging.getLogger("aifactory.tasks")


@dataclass
class TaskSpec:
    """What the caller asked for (validated by the route)."""

    name: str = "task"
    steps: int = 5
    interval: float = 0.2


@dataclass
class TaskRunner:
    """Owns the asyncio tasks of this replica so shutdown can cancel them."""

    replica_id: str
    running: dict[str, asyncio.Task[None]] = field(default_factory=dict)
    store: TaskStore = field(default_factory=MemoryTaskStore)

    def start(self, task_id: str, owner: Principal, spec: TaskSpec) -> str:
        """Run the task in the background on this replica's loop; the route has already audited it."""
        task = asyncio.get_running_loop().create_task(self._run(task_id, owner, spec), name=f"task-{task_id}")
        self.running[task_id] = task
        task.add_done_callback(lambda _t: self.running.pop(task_id, None))
        return task_id

    async def stop(self) -> None:
        for task in list(self.running.values()):
            task.cancel()
        await asyncio.gather(*self.running.values(), return_exceptions=True)

    async def _run(self, task_id: str, owner: Principal, spec: TaskSpec) -> None:
        base: dict[str, Any] = {
            "task_id": task_id,
            "name": spec.name,
            "owner": owner.user_id,
            "replica": self.replica_id,
        }

        store = self.store
        if store is None:  # the lifespan always sets one; direct constructions may pass None
            store = self.store = MemoryTaskStore()
        record = {k: v for k, v in base.items() if k != "owner"}

        def status(value: str) -> None:
            store.update(owner.user_id, task_id, {**record, "status": value})
            bus.send_to_org(owner.org_id, {"type": "task.status", **base, "status": value})

        def progress(step: int) -> None:
            percent = round(100 * step / spec.steps)
            store.update(owner.user_id, task_id, {"step": step, "steps": spec.steps, "percent": percent})
            bus.send_to_org(
                owner.org_id,
                {"type": "task.progress", **base, "step": step, "steps": spec.steps, "percent": percent},
            )

        def line(text: str) -> None:
            bus.send_to_user(owner.user_id, {"type": "task.log", **base, "line": text})

        try:
            status("running")
            line(f"task {spec.name!r} started on replica {self.replica_id}")
            progress(0)
            for step in range(1, spec.steps + 1):
                await asyncio.sleep(spec.interval)
                line(f"step {step}/{spec.steps} done")
                progress(step)
            status("succeeded")
        except asyncio.CancelledError:
            status("cancelled")
            raise
        except Exception:  # a task bug must not kill the server; report it like an agent failure
            log.exception("task %s failed", task_id)
            status("failed")
