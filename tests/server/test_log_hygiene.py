"""Logs never carry content or credentials, even at LOG_LEVEL=DEBUG (a real server, its real log).

Before: uvicorn hands websockets its own logger, so at DEBUG every frame was logged (`< TEXT 'ls -la\\r'`:
terminal keystrokes, terminal output, event payloads) along with the handshake headers; and the token
redaction matched only the literal `token=`, while Starlette percent-decodes query keys, so
`?tok%65n=<jwt>` authenticated and was logged in full.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Iterator

import pytest
from websockets.asyncio.client import connect

from harness.app_servers import ServerSet, http_json, start_servers
from harness.terminal_client import recv_output
from tests.server.wsclient import WAIT, EventClient, refused

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def debug_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerSet]:
    servers = start_servers(
        1,
        workdir=tmp_path_factory.mktemp("debuglog"),
        extra_env={"LOG_LEVEL": "DEBUG", "AIFACTORY_TERMINAL_SHELL": "/bin/sh"},
    )
    try:
        yield servers
    finally:
        servers.stop()


# Spellings of the token query key: the first three authenticate (Starlette decodes keys once), the others
# do not but still carry a credential into the access log.
ACCEPTED = ("token", "tok%65n", "%74%6f%6b%65%6e")
REFUSED = ("TOKEN", "%2574oken", "token+", "Tok%45N")


async def test_debug_log_has_no_frame_content_and_no_token_in_any_spelling(debug_server: ServerSet) -> None:
    server = debug_server[0]
    typed = f"typed-{uuid.uuid4().hex}"
    output = f"shell-said-{uuid.uuid4().hex}"
    tokens = []

    term_token = debug_server.token("typist")
    tokens.append(term_token)
    async with connect(
        f"ws://127.0.0.1:{server.port}/ws/terminal/t1?tok%65n={term_token}", open_timeout=WAIT
    ) as ws:
        await ws.send(f"echo {typed} | tr a-z A-Z; echo {output}\n".encode())
        seen = ""
        while output not in seen.split(f"echo {output}")[-1]:
            seen += await asyncio.wait_for(recv_output(ws), WAIT)
        assert typed.upper() in seen

    for i, key in enumerate(ACCEPTED):
        token = debug_server.token(f"user-{i}")
        tokens.append(token)
        client = await EventClient.connect(f"ws://127.0.0.1:{server.port}/ws/events?{key}={token}", key)
        await client.close()
    for i, key in enumerate(REFUSED):
        token = debug_server.token(f"refused-{i}")
        tokens.append(token)
        code, _reason = await refused(f"ws://127.0.0.1:{server.port}/ws/events?x=1&{key}={token}")
        assert code == 1008  # not accepted as the token, yet a credential in the access log

    # an event's payload reaches a client but not the log
    payload = f"payload-{uuid.uuid4().hex}"
    listener_token = debug_server.token("listener")
    tokens.append(listener_token)
    listener = await EventClient.connect(server.ws_url(token=listener_token), "listener")
    service = debug_server.token("svc", role="service")
    tokens.append(service)
    status, _ = http_json(
        "POST",
        server.http + f"/api/events?token={service}",
        {"scope": "user", "target": "listener", "event": {"type": "note", "text": payload}},
        token=service,
    )
    assert status == 202
    await listener.wait_for(lambda f: f.get("text") == payload)
    await listener.close()

    log = server.wait_for_log('"POST /api/events')  # the access log is on: this is a DEBUG log
    assert " DEBUG " in log
    for secret in (typed, typed.upper(), output, payload):
        assert secret not in log, f"{secret!r} (frame content) is in the DEBUG log"
    for token in tokens:
        for part in token.split("."):  # no JWT segment either (header segments repeat: skip short ones)
            if len(part) > 40:
                assert part not in log, "a token is in the DEBUG log"
    assert not re.search(r"< TEXT|> TEXT|< BINARY|> BINARY", log)
    assert "<redacted>" in log  # the access lines were logged, with the credential cut out
