"""A small TCP proxy in front of a real redis-server, to inject one network fault: a deaf subscriber.

`mute_subscribers()` makes every connection that has sent SUBSCRIBE stop receiving: bytes from Redis to that
client are silently discarded while the TCP connection stays open and healthy in both directions. That is
exactly what a "connected but deaf" subscriber looks like from the client (the state seen after some
Sentinel failovers or a half-broken load balancer): no error, no EOF, just no messages. Connections opened
afterwards are not muted, so a client that reconnects hears again. Redis itself stays real and untouched.
The proxy runs its own event loop in a thread, independent of the code under test.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from dataclasses import dataclass, field

from harness.ports import free_port, wait_for_port


@dataclass(eq=False)
class _Link:
    subscriber: bool = False
    muted: bool = False
    writers: list[asyncio.StreamWriter] = field(default_factory=list)


class TcpProxy:
    """127.0.0.1:<port> → 127.0.0.1:<upstream_port>, with a switch to deafen current subscribers."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = free_port()
        self.links: list[_Link] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True, name="tcp-proxy")
        self._server: asyncio.Server | None = None

    def start(self) -> TcpProxy:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._serve(), self._loop).result(timeout=10)
        wait_for_port(self.port)
        return self

    async def _serve(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)

    async def _accept(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            up_r, up_w = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            client_w.close()
            return
        link = _Link(writers=[client_w, up_w])
        self.links.append(link)
        await asyncio.gather(
            self._pump(client_r, up_w, link, upstream=True), self._pump(up_r, client_w, link)
        )
        for w in link.writers:
            w.close()

    async def _pump(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        link: _Link,
        *,
        upstream: bool = False,
    ) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while data := await reader.read(65536):
                if upstream and b"SUBSCRIBE" in data.upper():
                    link.subscriber = True
                if not upstream and link.muted:
                    continue  # deaf: Redis' replies and messages vanish, the socket stays open
                writer.write(data)
                await writer.drain()
        with contextlib.suppress(OSError):
            writer.close()

    def mute_subscribers(self) -> int:
        """Deafen every current subscriber connection; returns how many were muted."""
        return asyncio.run_coroutine_threadsafe(self._mute(), self._loop).result(timeout=10)

    async def _mute(self) -> int:
        targets = [link for link in self.links if link.subscriber and not link.muted]
        for link in targets:
            link.muted = True
        return len(targets)

    def stop(self) -> None:
        async def shutdown() -> None:
            if self._server is not None:
                self._server.close()
            for link in self.links:
                for w in link.writers:
                    w.close()

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    def __enter__(self) -> TcpProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
