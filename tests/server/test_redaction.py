"""`redact()` and the wire-trace filter on their own: every spelling of a credential, nothing else touched."""

from __future__ import annotations

import logging

import pytest

from aifactory.cli import NoWireContent, redact

JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLXNpZ25hdHVyZS1zaWduYXR1cmU"


@pytest.mark.parametrize(
    "line",
    [
        f'"WebSocket /ws/events?token={JWT}" [accepted]',
        f'"WebSocket /ws/events?tok%65n={JWT}" [accepted]',
        f'"GET /ws/events?%74%6F%6B%65%6E={JWT} HTTP/1.1" 101',
        f'"GET /ws/events?x=1&%2574oken={JWT} HTTP/1.1" 403',
        f'"GET /ws/events?TOKEN={JWT}&y=2 HTTP/1.1"',
        f'"GET /ws/events?token+={JWT} HTTP/1.1"',
        f'"GET /ws/events?access_token={JWT}"',
        f"Authorization: Bearer {JWT}",
        f"redis://:{JWT}@redis:6379/0",
    ],
)
def test_every_spelling_of_a_credential_is_redacted(line: str) -> None:
    out = redact(line)
    assert JWT not in out and "<redacted>" in out


def test_other_query_parameters_survive() -> None:
    assert redact("GET /api?scope=user&tokens_left=3&page=2") == "GET /api?scope=user&tokens_left=3&page=2"


def _record(msg: str, level: int = logging.DEBUG) -> logging.LogRecord:
    return logging.LogRecord("uvicorn.error", level, __file__, 1, msg, ("x",), None)


def test_wire_traces_are_dropped_and_nothing_else() -> None:
    keep = NoWireContent().filter
    assert not keep(_record("< %s"))  # a received frame: TEXT 'ls -la\r'
    assert not keep(_record("> %s"))
    assert not keep(_record("< %s: %s"))  # a handshake header
    assert keep(_record("= connection is %s"))
    assert keep(_record("connection closed", logging.INFO))
    assert keep(_record("< looks like a frame but is a WARNING", logging.WARNING))
