"""A real WebSocket client (the `websockets` library) that records every frame a server sends it.

Negative checks never sleep: fire the event that must NOT arrive, then a marker event that must; once the
marker is in, everything sent before it on the same path has arrived too (one origin, one ordered channel).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

WAIT = 20.0


class EventClient:
    """One /ws/events socket; `frames` holds every JSON frame received after the hello."""

    def __init__(self, ws: ClientConnection, hello: dict[str, Any], label: str) -> None:
        self.ws = ws
        self.hello = hello
        self.label = label
        self.frames: list[dict[str, Any]] = []  # without `_offset` (the event's own keys, as posted)
        self.offsets: list[str | None] = []  # each frame's `_offset` (recovery on) or None
        self._changed = asyncio.Condition()
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def connect(cls, url: str, label: str = "", **kwargs: Any) -> EventClient:
        ws = await connect(url, open_timeout=WAIT, **kwargs)
        hello = json.loads(await asyncio.wait_for(ws.recv(), WAIT))
        assert hello["type"] == "hello", hello
        return cls(ws, hello, label)

    async def _read(self) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for message in self.ws:
                async with self._changed:
                    frame = json.loads(message)
                    self.offsets.append(frame.pop("_offset", None))
                    self.frames.append(frame)
                    self._changed.notify_all()
        async with self._changed:
            self._changed.notify_all()

    def matching(self, predicate: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
        return [f for f in self.frames if predicate(f)]

    async def wait_for(
        self, predicate: Callable[[dict[str, Any]], bool], count: int = 1, timeout: float = WAIT
    ) -> list[dict[str, Any]]:
        """Block until `count` frames match; fail with what was received instead."""

        async def check() -> list[dict[str, Any]]:
            async with self._changed:
                while len(self.matching(predicate)) < count:
                    if self._reader.done():
                        raise AssertionError(
                            f"{self.label}: socket closed ({self.ws.close_code}) "
                            f"before the frame arrived; got {self.frames}"
                        )
                    await self._changed.wait()
                return self.matching(predicate)

        try:
            return await asyncio.wait_for(check(), timeout)
        except TimeoutError:
            raise AssertionError(
                f"{self.label}: no matching frame after {timeout}s; got {self.frames}"
            ) from None

    async def wait_marker(self, marker: str, timeout: float = WAIT) -> None:
        await self.wait_for(lambda f: f.get("marker") == marker, timeout=timeout)

    def count(self, key: str, value: Any) -> int:
        return len(self.matching(lambda f: f.get(key) == value))

    async def close(self) -> None:
        await self.ws.close()
        with contextlib.suppress(BaseException):
            await self._reader


async def refused(url: str, **kwargs: Any) -> tuple[int | None, str]:
    """Connect and return (close code, reason) of a socket the server refuses; fail if it is accepted."""
    async with connect(url, open_timeout=WAIT, **kwargs) as ws:
        try:
            message = await asyncio.wait_for(ws.recv(), WAIT)
        except ConnectionClosed as exc:
            assert exc.rcvd is not None, "closed without a close frame"
            return exc.rcvd.code, exc.rcvd.reason
    raise AssertionError(f"socket was accepted and sent {message!r}")
