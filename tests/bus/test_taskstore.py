"""Task records for GET /api/tasks: merged updates, per-user isolation, shared through a real Redis."""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis

from aifactory.taskstore import MemoryTaskStore, RedisTaskStore
from harness.redis_servers import RedisServer


async def test_memory_store_merges_updates_per_user() -> None:
    store = MemoryTaskStore()
    store.update("ann", "t1", {"name": "a", "status": "running"})
    store.update("ann", "t1", {"percent": 50})
    store.update("bob", "t2", {"name": "b", "status": "running"})
    [ann] = await store.list("ann")
    assert ann["task_id"] == "t1" and ann["status"] == "running" and ann["percent"] == 50
    assert [r["task_id"] for r in await store.list("bob")] == ["t2"]
    assert await store.list("eve") == []


async def test_a_record_written_on_one_replica_is_read_on_another(redis_server: RedisServer) -> None:
    a = RedisTaskStore(Redis(port=redis_server.port, socket_connect_timeout=0.5), "aif:test")
    b = RedisTaskStore(Redis(port=redis_server.port, socket_connect_timeout=0.5), "aif:test")
    a.update("ann", "t1", {"status": "running", "percent": 10})
    a.update("ann", "t1", {"status": "succeeded", "percent": 100})
    await a.aclose()
    [got] = await b.list("ann")
    assert got["status"] == "succeeded" and got["percent"] == 100
    assert await b.list("bob") == []
    redis_server.stop()  # Redis down: a replica still answers for its own tasks, b for none
    assert (await asyncio.wait_for(a.list("ann"), 10))[0]["status"] == "succeeded"
    assert await asyncio.wait_for(b.list("ann"), 10) == []
