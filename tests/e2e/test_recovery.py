"""Recovery under faults, with real processes, a real Redis and real clients that resume with `since`.

A steady 100 events/s is fired at replica A to a mix of broadcast / user / org audiences; resuming clients
on every replica record what arrives. Through each fault every client loses nothing and sees no duplicate
(or, for the Redis outage, gets a `resync` instead of silence).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator

import aiohttp
import pytest

from harness.app_servers import ServerProc, ServerSet, start_servers
from harness.recovery import Firer, ResumingClient, Verdict, verdict
from harness.redis_servers import RedisServer, redis_cli

pytestmark = pytest.mark.slow

ENV = {"AIFACTORY_REDIS_BACKOFF_MAX": "1", "AIFACTORY_SHUTDOWN_GRACE_SECONDS": "4"}
USERS = [("u1", "org1"), ("u2", "org2"), ("u3", "org1")]
AUDIENCES: list[tuple[str, str | None]] = [
    ("broadcast", None),
    ("user", "u1"),
    ("user", "u2"),
    ("user", "u3"),
    ("org", "org1"),
    ("org", "org2"),
]


@pytest.fixture(scope="module")
def stack() -> Iterator[tuple[RedisServer, ServerSet]]:
    redis = RedisServer().start()
    servers = start_servers(3, redis_url=redis.url, extra_env=ENV)
    try:
        servers.wait_bridge("connected")
        yield redis, servers
    finally:
        servers.stop()
        redis.stop()


def restart(server: ServerProc, sig: str) -> None:
    """Stop a replica (SIGTERM: graceful; SIGKILL), then bring it back on its port."""
    assert server.proc is not None
    if sig == "TERM":
        server.proc.terminate()
        server.proc.wait(timeout=30)
    else:
        server.proc.kill()
        server.proc.wait()
    server.start()
    server.wait_ready()
    server.wait_bridge("connected")


async def run(
    servers: ServerSet, fault: Callable[[list[ResumingClient]], object], *, seconds: float = 6.0
) -> list[Verdict]:
    """Clients on every replica; fire for `seconds`, run `fault` (in a thread) after 1.5 s."""
    bases = [f"ws://127.0.0.1:{s.port}" for s in servers]
    clients = [
        ResumingClient(f"{user}@{i}", user, org, servers.token(user, org), bases, index=i)
        for i in range(3)
        for user, org in USERS
    ]
    firer = Firer(servers[0].http, servers.token("firer", "ops", role="service"), AUDIENCES)
    async with aiohttp.ClientSession() as session:
        for c in clients:
            await c.start(session)
        fire = asyncio.create_task(firer.run(session, seconds))
        await asyncio.sleep(1.5)
        loop = asyncio.get_running_loop()
        if asyncio.iscoroutinefunction(fault):
            await fault(clients)
        else:
            await loop.run_in_executor(None, fault, clients)
        await fire
        # settle: every client has what it should (or said resync), within a generous bound
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if all(verdict(c, firer).lost == 0 or c.resyncs for c in clients):
                break
            await asyncio.sleep(0.2)
        await asyncio.sleep(0.5)  # late duplicates would show here
        for c in clients:
            await c.stop()
    longest = {}
    for c in clients:
        if len(c.got) > len(longest.get(c.user, [])):
            longest[c.user] = c.got
    results = [verdict(c, firer, longest[c.user]) for c in clients]
    print(f"fired: {len(firer.accepted)} accepted, {firer.refused} refused")
    for r in results:
        print(r)
    run.clients = clients  # type: ignore[attr-defined]  # for the close-code checks
    assert len(firer.accepted) > 300, f"the firer got too few events accepted ({firer.refused} refused)"
    return results


def assert_exact(results: list[Verdict]) -> None:
    for r in results:
        assert r.duplicates == 0 and r.out_of_order == 0, r
        assert r.lost == 0 and r.resyncs == 0, r


async def test_sigterm_of_the_clients_replica_reconnects_elsewhere_losing_nothing(
    stack: tuple[RedisServer, ServerSet],
) -> None:
    _redis, servers = stack
    results = await run(servers, lambda _c: restart(servers[1], "TERM"))
    assert_exact(results)
    assert sum(r.recovered for r in results) >= 3, "B's clients resumed elsewhere with recovered: true"
    on_b = [c for c in run.clients if c.name.endswith("@1")]  # type: ignore[attr-defined]
    assert all(c.closes[:1] == [1012] for c in on_b), [c.closes for c in on_b]


async def test_sigkill_of_the_clients_replica_reconnects_elsewhere_losing_nothing(
    stack: tuple[RedisServer, ServerSet],
) -> None:
    _redis, servers = stack
    results = await run(servers, lambda _c: restart(servers[2], "KILL"))
    assert_exact(results)
    assert sum(r.recovered for r in results) >= 3


async def test_a_five_second_client_network_drop_is_replayed(stack: tuple[RedisServer, ServerSet]) -> None:
    _redis, servers = stack

    async def drop(clients: list[ResumingClient]) -> None:
        for c in clients:
            await c.drop(5.0)
        await asyncio.sleep(5.5)

    results = await run(servers, drop, seconds=8.0)
    assert_exact(results)
    assert all(r.recovered >= 1 for r in results)


async def test_client_kill_of_a_replicas_subscriber_costs_its_clients_nothing(
    stack: tuple[RedisServer, ServerSet],
) -> None:
    redis, servers = stack

    def kill(_c: object) -> None:
        redis_cli(redis.port, "CLIENT", "KILL", "TYPE", "pubsub")

    results = await run(servers, kill)
    assert_exact(results)
    assert all(r.reconnects == 0 for r in results), "nobody had to reconnect"


async def test_a_ten_second_redis_outage_is_recovered_or_announced_never_silent(
    stack: tuple[RedisServer, ServerSet],
) -> None:
    redis, servers = stack

    def outage(_c: object) -> None:
        redis.stop()
        time.sleep(10)
        redis.start()

    results = await run(servers, outage, seconds=14.0)
    for r in results:
        assert r.duplicates == 0 and r.out_of_order == 0, r
        assert r.lost == 0 or r.resyncs > 0, f"silent loss: {r}"
    on_a = [r for r in results if r.name.endswith("@0")]
    assert all(r.lost == 0 for r in on_a), "A's own clients never depend on Redis"
    servers.wait_bridge("connected")


async def test_a_rolling_restart_of_all_three_replicas_loses_nothing(
    stack: tuple[RedisServer, ServerSet],
) -> None:
    _redis, servers = stack

    def rolling(_c: object) -> None:
        for i in (1, 2, 0):
            restart(servers[i], "TERM")

    results = await run(servers, rolling, seconds=12.0)
    assert_exact(results)
