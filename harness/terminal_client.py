"""A real `/ws/terminal/{id}` client speaking the framed protocol (docs/terminals.md), for tests and bench.

`TerminalClient` keeps every output byte it received (from `ready.offset` on) and can reconnect with
`?offset=` and resend the input the shell has not acknowledged, exactly as the portal does.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

WAIT = 20.0


async def recv_output(ws: ClientConnection) -> str:
    """The next output frame as text (control frames such as `ready` are skipped)."""
    while True:
        frame = await ws.recv()
        if isinstance(frame, bytes):
            return frame.decode(errors="replace")


class TerminalClient:
    """One terminal across reconnects: `output` is the byte stream from offset `base` on, without gaps."""

    def __init__(self, url: str, **connect_kwargs: Any) -> None:
        self.url = url
        self.connect_kwargs = connect_kwargs
        self.output = bytearray()
        self.base = 0
        self.sent = bytearray()  # every input byte ever sent (tests are short)
        self.ready: dict[str, Any] = {}
        self.readies: list[dict[str, Any]] = []
        self.ws: ClientConnection | None = None
        self.close_code: int | None = None
        self.close_reason = ""
        self._reader: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()

    @property
    def offset(self) -> int:
        return self.base + len(self.output)

    async def connect(self, url: str | None = None) -> dict[str, Any]:
        """(Re)attach, resuming at our offset; resend input the shell has not seen. Returns `ready`."""
        target = url or self.url
        if self.readies:
            target += ("&" if "?" in target else "?") + f"offset={self.offset}"
        self.ws = await connect(target, open_timeout=WAIT, max_size=None, **self.connect_kwargs)
        first = await asyncio.wait_for(self.ws.recv(), WAIT)
        assert isinstance(first, str), "the first frame must be the ready control message"
        ready: dict[str, Any] = json.loads(first)
        assert ready["type"] == "ready", ready
        if not self.readies or ready["new"]:
            self.output.clear()
            self.base = ready["offset"]
        else:
            assert ready["offset"] == self.offset, f"output gap: have {self.offset}, replay from {ready}"
        if not ready["new"] and ready["input_offset"] < len(self.sent):
            await self.ws.send(bytes(self.sent[ready["input_offset"] :]))
        self.ready = ready
        self.readies.append(ready)
        self.close_code = None
        self._reader = asyncio.create_task(self._read(self.ws))
        return ready

    async def _read(self, ws: ClientConnection) -> None:
        try:
            async for frame in ws:
                if isinstance(frame, bytes):
                    self.output += frame
                    self._changed.set()
        except ConnectionClosed:
            pass
        self.close_code = ws.close_code if ws.close_code is not None else 1006
        self.close_reason = ws.close_reason or ""
        self._changed.set()

    async def send(self, data: str | bytes) -> None:
        raw = data.encode() if isinstance(data, str) else data
        self.sent += raw
        assert self.ws is not None
        with contextlib.suppress(ConnectionClosed):  # kept in `sent`: resent after the reconnect
            await self.ws.send(raw)

    async def control(self, message: dict[str, Any]) -> None:
        assert self.ws is not None
        await self.ws.send(json.dumps(message))

    async def resize(self, rows: int, cols: int) -> None:
        await self.control({"type": "resize", "rows": rows, "cols": cols})

    def text(self) -> str:
        return self.output.decode(errors="replace")

    async def read_until(self, pattern: str, timeout: float = WAIT) -> re.Match[str]:
        async def loop() -> re.Match[str]:
            while not (found := re.search(pattern, self.text())):
                if self._reader is not None and self._reader.done():
                    raise AssertionError(f"closed ({self.close_code}) before {pattern!r}: {self.text()!r}")
                self._changed.clear()
                await self._changed.wait()
            return found

        try:
            return await asyncio.wait_for(loop(), timeout)
        except TimeoutError:
            raise AssertionError(f"{pattern!r} never appeared: {self.text()[-2000:]!r}") from None

    async def wait_closed(self, timeout: float = WAIT) -> int:
        assert self._reader is not None
        await asyncio.wait_for(asyncio.shield(self._reader), timeout)
        assert self.close_code is not None
        return self.close_code

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self._reader is not None:
            with contextlib.suppress(BaseException):
                await self._reader
