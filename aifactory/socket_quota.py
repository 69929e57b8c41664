"""Per-user cap on open WebSockets (`/ws/events` and `/ws/terminal/*` together) on one replica.

Why: one token could otherwise open sockets until the replica runs out of file descriptors or memory, and
every other user of the replica pays. Counting is synchronous (no await between check and increment), so
the cap holds under any number of concurrent upgrades.
"""

from __future__ import annotations


class SocketQuota:
    """How many sockets each user holds; `acquire` refuses the one beyond `limit`."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._open: dict[str, int] = {}

    def acquire(self, user_id: str) -> bool:
        held = self._open.get(user_id, 0)
        if held >= self.limit:
            return False
        self._open[user_id] = held + 1
        return True

    def release(self, user_id: str) -> None:
        held = self._open.get(user_id, 0) - 1
        if held > 0:
            self._open[user_id] = held
        else:
            self._open.pop(user_id, None)

    def held(self, user_id: str) -> int:
        return self._open.get(user_id, 0)

    @property
    def reason(self) -> str:
        return f"too many connections for this user on this replica (limit {self.limit})"
