"""The bare Python peer: one Redis subscriber relaying each message to every socket with websockets'
`broadcast()` (one frame encoding per message, written to every connection without awaiting any).

No auth, routing or queues: the least a Python replica can do. WebSockets on `--port`; `POST /fire`
(`{"room": ..., "event": {...}}`, room ignored) on `--fire-port` PUBLISHes the event JSON, because the
websockets server itself answers only GET.

Run: python -m bench.relay --port 9000 --fire-port 9001 --redis redis://127.0.0.1:6390/0 --channel bench
"""

from __future__ import annotations

import argparse
import asyncio
import json

import redis.asyncio as aioredis
from websockets.asyncio.server import ServerConnection, broadcast, serve


async def fire_server(port: int, pub: aioredis.Redis, channel: str) -> asyncio.Server:
    """A keep-alive HTTP/1.1 endpoint just big enough for the benchmark's POSTs."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while head := await reader.readuntil(b"\r\n\r\n"):
                lines = head.lower().split(b"\r\n")
                length = next((int(h[15:]) for h in lines if h.startswith(b"content-length:")), 0)
                body = await reader.readexactly(length)
                if head.startswith(b"POST"):
                    await pub.publish(channel, json.dumps(json.loads(body)["event"]))
                writer.write(b"HTTP/1.1 202 Accepted\r\ncontent-length: 2\r\n\r\n{}")
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", port)


async def main_async(port: int, fire_port: int, url: str, channel: str) -> None:
    clients: set[ServerConnection] = set()

    async def handler(ws: ServerConnection) -> None:
        clients.add(ws)
        try:
            await ws.wait_closed()
        finally:
            clients.discard(ws)

    pub, sub = aioredis.from_url(url), aioredis.from_url(url)
    pubsub = sub.pubsub()
    await pubsub.subscribe(channel)
    await fire_server(fire_port, pub, channel)
    async with serve(handler, "127.0.0.1", port, compression=None, ping_interval=None):
        async for msg in pubsub.listen():
            if msg["type"] == "message":
                broadcast(clients, msg["data"].decode())


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--fire-port", type=int, required=True)
    p.add_argument("--redis", required=True)
    p.add_argument("--channel", default="bench-relay")
    a = p.parse_args()
    asyncio.run(main_async(a.port, a.fire_port, a.redis, a.channel))


if __name__ == "__main__":
    main()
