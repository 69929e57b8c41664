"""The peer under test: python-socketio AsyncServer + AsyncRedisManager, as users would deploy it.

Served by the same uvicorn as aifactory-server so the comparison isolates the fan-out path. Clients join a
room named after the `user` query parameter (the equivalent of send_to_user); `POST /fire` emits its JSON
body (`{"room": <user or null>, "event": {...}}`) through the Redis manager, like POST /api/events.

Run: python -m bench.sio_server --port 9000 --redis redis://127.0.0.1:6390/0 --channel bench
"""

from __future__ import annotations

import argparse
import json
from urllib.parse import parse_qs

import socketio
import uvicorn

from aifactory.cli import uvicorn_protocols


def build_app(redis_url: str, channel: str) -> socketio.ASGIApp:
    """An ASGI app: Socket.IO at /socket.io/, a fire endpoint at /fire and /readyz for readiness polls."""
    mgr = socketio.AsyncRedisManager(redis_url, channel=channel)
    sio = socketio.AsyncServer(async_mode="asgi", client_manager=mgr, cors_allowed_origins=[])

    @sio.event
    async def connect(sid: str, environ: dict, auth: object = None) -> None:
        user = parse_qs(environ.get("QUERY_STRING", "")).get("user", ["anon"])[0]
        await sio.enter_room(sid, f"user:{user}")

    async def other(scope: dict, receive, send) -> None:  # type: ignore[no-untyped-def]
        path = scope.get("path", "")
        if scope["type"] == "lifespan":
            while True:
                msg = await receive()
                if msg["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif msg["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if path == "/fire":
            body = b""
            while True:
                msg = await receive()
                body += msg.get("body", b"")
                if not msg.get("more_body"):
                    break
            req = json.loads(body)
            room = f"user:{req['room']}" if req.get("room") else None
            await sio.emit("event", req["event"], room=room)
            status, out = 202, b'{"ok":true}'
        else:
            status, out = 200, b'{"status":"ready"}'
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": out})

    return socketio.ASGIApp(sio, other_asgi_app=other)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--redis", required=True)
    parser.add_argument("--channel", default="bench-sio")
    args = parser.parse_args()
    app = build_app(args.redis, args.channel)
    # the same protocol stack aifactory-server runs on, so only the fan-out differs
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=args.port,
        log_level="warning",
        **uvicorn_protocols(),
        access_log=False,
        server_header=False,
    )


if __name__ == "__main__":
    main()
