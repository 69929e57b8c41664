"""Redis as the terminal directory: which host owns which (user, terminal id), and which hosts are alive.

Keys (all under `aifactory:th:` so a Redis ACL can confine a host to them, docs/terminals.md):
- `aifactory:th:term:{id}:{user}` → host id, TTL `TERM_TTL`, refreshed by the owning host while the
  shell lives, deleted when it closes. Ids never contain ':' so the key is unambiguous; the id is unique
  per user (two users may both have "main").
- `aifactory:th:host:{host id}` → JSON {address, terminals, max}, TTL `HOST_TTL`, refreshed by the host.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

PREFIX = "aifactory:th:"
TERM_TTL = 30
HOST_TTL = 10
REFRESH_SECONDS = 3.0

# Delete the entry only if it still names this host (a newer owner may have claimed it meanwhile).
_DELETE_IF_MINE = (
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"
)


def term_key(term_id: str, user: str) -> str:
    return f"{PREFIX}term:{term_id}:{user}"


def host_key(host_id: str) -> str:
    return f"{PREFIX}host:{host_id}"


@dataclass(frozen=True)
class HostInfo:
    host_id: str
    address: str
    terminals: int
    max: int


class Directory:
    """Thin async wrapper over a redis-py client; every method is one or two round trips."""

    def __init__(self, redis: Any) -> None:
        self.redis = redis

    async def owner(self, term_id: str, user: str) -> str | None:
        raw = await self.redis.get(term_key(term_id, user))
        return raw.decode() if isinstance(raw, bytes) else raw

    async def claim(self, term_id: str, user: str, host_id: str) -> str:
        """Claim the id for `host_id` unless another host has it; returns the owner after the call."""
        if await self.redis.set(term_key(term_id, user), host_id, nx=True, ex=TERM_TTL):
            return host_id
        return await self.owner(term_id, user) or host_id

    async def refresh(self, entries: list[tuple[str, str]], host_id: str, info: dict[str, Any]) -> None:
        pipe = self.redis.pipeline(transaction=False)
        pipe.set(host_key(host_id), json.dumps(info), ex=HOST_TTL)
        for term_id, user in entries:
            pipe.set(term_key(term_id, user), host_id, ex=TERM_TTL)
        await pipe.execute()

    async def release(self, term_id: str, user: str, host_id: str) -> None:
        await self.redis.eval(_DELETE_IF_MINE, 1, term_key(term_id, user), host_id)

    async def forget(self, term_id: str, user: str, host_id: str) -> None:
        """A web replica found the owner dead: drop the stale entry (only if it still names that host)."""
        await self.release(term_id, user, host_id)

    async def drop_host(self, host_id: str) -> None:
        await self.redis.delete(host_key(host_id))

    async def host(self, host_id: str) -> HostInfo | None:
        raw = await self.redis.get(host_key(host_id))
        return _host_info(host_id, raw) if raw else None

    async def hosts(self) -> list[HostInfo]:
        found = []
        async for key in self.redis.scan_iter(match=f"{PREFIX}host:*", count=100):
            name = key.decode() if isinstance(key, bytes) else key
            raw = await self.redis.get(name)
            if raw:
                found.append(_host_info(name.removeprefix(f"{PREFIX}host:"), raw))
        return found

    async def pick_host(self) -> HostInfo | None:
        """The live host with the most free slots (None: no host alive or all full)."""
        live = [h for h in await self.hosts() if h.terminals < h.max]
        return max(live, key=lambda h: (h.max - h.terminals, h.host_id), default=None)


def _host_info(host_id: str, raw: bytes | str) -> HostInfo:
    data = json.loads(raw)
    return HostInfo(host_id, str(data["address"]), int(data["terminals"]), int(data["max"]))
