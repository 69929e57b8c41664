"""Bad input fails with a 400 before any side effect: no audit record, no task started, no frame sent.

Before: a lone surrogate (`"\\ud800"`, valid to Python's JSON parser, unencodable as UTF-8) in a task name
or an event target was audited, the task started, and then the request died with a 500; `NaN` and
`Infinity` (Python extensions, not JSON) went into frames that a browser's JSON.parse rejects.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from harness.app_servers import ServerSet, http_json, start_servers
from tests.server.wsclient import EventClient

pytestmark = pytest.mark.timeout(90)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerSet]:
    servers = start_servers(1, workdir=tmp_path_factory.mktemp("badinput"))
    try:
        yield servers
    finally:
        servers.stop()


def audit_lines(servers: ServerSet) -> list[str]:
    path = servers[0].audit_path
    return path.read_text().splitlines() if path.exists() else []


BAD_TASKS = [
    b'{"name": "\\ud800"}',
    b'{"name": "ok \\udfff end"}',
    b'{"name": "\xed\xa0\x80"}',  # the surrogate as (invalid) UTF-8 bytes
    b'{"name": "x", "interval": NaN}',
    b'{"name": "x", "interval": Infinity}',
]
BAD_EVENTS = [
    b'{"scope": "user", "target": "\\ud800", "event": {"type": "x"}}',
    b'{"scope": "org", "target": "org-\\udc00", "event": {"type": "x"}}',
    b'{"scope": "broadcast", "event": {"type": "x", "text": "\\ud83d"}}',
    b'{"scope": "broadcast", "event": {"\\ud800": 1}}',
    b'{"scope": "broadcast", "event": {"type": "x", "v": NaN}}',
    b'{"scope": "broadcast", "event": {"type": "x", "v": Infinity}}',
    b'{"scope": "broadcast", "event": {"type": "x", "v": [-Infinity]}}',
    b'{"scope": "broadcast", "event": {"type": "x", "v": 1e400}}',
]


async def test_refused_requests_leave_no_audit_record_and_start_nothing(server: ServerSet) -> None:
    proc = server[0]
    user = server.token("victim")
    service = server.token("svc", role="service")
    client = await EventClient.connect(proc.ws_url(token=user), "victim")
    audited = audit_lines(server)
    for raw in BAD_TASKS:
        status, body = http_json("POST", proc.http + "/api/tasks", raw=raw, token=user)
        assert (status, body["error"]) == (400, "invalid_json"), (raw, status, body)
    for raw in BAD_EVENTS:
        status, body = http_json("POST", proc.http + "/api/events", raw=raw, token=service)
        assert (status, body["error"]) == (400, "invalid_json"), (raw, status, body)
    assert audit_lines(server) == audited, "a refused request left an audit record"

    marker = uuid.uuid4().hex
    status, _ = http_json(
        "POST",
        proc.http + "/api/events",
        {"scope": "user", "target": "victim", "event": {"type": "marker", "marker": marker, "x": 1.5}},
        token=service,
    )
    assert status == 202
    await client.wait_marker(marker)
    assert [f["type"] for f in client.frames] == ["marker"], "a refused task started or an event went out"
    assert len(audit_lines(server)) == len(audited) + 1  # the audit log works: the good one is recorded
    assert "Traceback" not in proc.log_text() and " 500" not in proc.log_text()
    await client.close()
