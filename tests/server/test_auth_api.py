"""Who may connect and who may emit: token checks on sockets, role and body checks on POST /api/events."""

from __future__ import annotations

import time
from collections.abc import Iterator

import jwt
import pytest

from aifactory.constants import DISABLED_LINE, TERMINAL_PATH, WS_POLICY_VIOLATION
from harness.app_servers import ServerSet, http_json, new_secret, run_server_once, start_servers
from tests.server.wsclient import EventClient, refused

pytestmark = pytest.mark.timeout(90)


@pytest.fixture(scope="module")
def single(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerSet]:
    """One replica without Redis, at DEBUG so per-connection lines (with their URLs) are logged."""
    servers = start_servers(1, workdir=tmp_path_factory.mktemp("single"), extra_env={"LOG_LEVEL": "DEBUG"})
    try:
        yield servers
    finally:
        servers.stop()


def forged(claims: dict, secret: str) -> str:
    return jwt.encode(claims, secret, algorithm="HS256")


def good_claims(**overrides: object) -> dict:
    return {"sub": "alice", "org": "org-a", "role": "user", "exp": int(time.time()) + 600} | overrides


def bad_tokens(secret: str) -> dict[str, str | None]:
    return {
        "missing": None,
        "expired": forged(good_claims(exp=int(time.time()) - 5), secret),
        "forged": forged(good_claims(), new_secret()),
        "garbage": "not-a-jwt",
        "alg-none": jwt.encode(good_claims(), None, algorithm="none"),
        "no-org": forged({k: v for k, v in good_claims().items() if k != "org"}, secret),
        "bad-role": forged(good_claims(role="root"), secret),
        "long-sub": forged(good_claims(sub="u" * 257), secret),
    }


@pytest.mark.parametrize(
    "kind", ["missing", "expired", "forged", "garbage", "alg-none", "no-org", "bad-role", "long-sub"]
)
async def test_events_socket_refuses_bad_tokens_with_policy_violation(single: ServerSet, kind: str) -> None:
    token = bad_tokens(single.secret)[kind]
    code, reason = await refused(single[0].ws_url(token=token))
    assert code == WS_POLICY_VIOLATION, (kind, code, reason)
    assert reason and (token is None or token not in reason)


async def test_terminal_socket_refuses_a_forged_token(single: ServerSet) -> None:
    code, _ = await refused(
        single[0].ws_url(f"{TERMINAL_PATH}/t1", token=bad_tokens(single.secret)["forged"])
    )
    assert code == WS_POLICY_VIOLATION


async def test_token_accepted_from_query_and_from_bearer_header(single: ServerSet) -> None:
    token = single.token("alice", "org-a")
    by_query = await EventClient.connect(single[0].ws_url(token=token))
    by_header = await EventClient.connect(
        single[0].ws_url(), additional_headers={"Authorization": f"Bearer {token}"}
    )
    for client in (by_query, by_header):
        assert client.hello["user"] == "alice" and client.hello["org"] == "org-a"
        await client.close()


async def test_socket_is_closed_when_its_token_expires(single: ServerSet) -> None:
    client = await EventClient.connect(single[0].ws_url(token=single.token("alice", "org-a", ttl=2)))
    await client._reader
    assert client.ws.close_code == WS_POLICY_VIOLATION
    assert client.ws.close_reason == "token expired"


def post(single: ServerSet, body: object = None, token: str | None = None, raw: bytes | None = None) -> tuple:
    return http_json("POST", single[0].http + "/api/events", body, token=token, raw=raw)


def test_post_event_without_token_is_401(single: ServerSet) -> None:
    status, body = post(single, {"scope": "broadcast", "event": {}})
    assert status == 401 and body["error"] == "unauthorized"


@pytest.mark.parametrize("role", ["user"])
def test_post_event_by_plain_user_is_403(single: ServerSet, role: str) -> None:
    status, body = post(single, {"scope": "broadcast", "event": {}}, single.token("alice", "org-a", role))
    assert status == 403
    assert body == {
        "error": "forbidden",
        "detail": "role 'user' may not emit events; use a service or admin token",
    }


@pytest.mark.parametrize("role", ["service", "admin"])
async def test_post_event_by_service_or_admin_is_delivered(single: ServerSet, role: str) -> None:
    client = await EventClient.connect(single[0].ws_url(token=single.token("alice", "org-a")))
    status, body = post(
        single,
        {"scope": "user", "target": "alice", "event": {"type": "hi", "by": role}},
        single.token("ops", "org-x", role),
    )
    assert status == 202 and body["status"] == "accepted" and body["local_clients"] == 1
    await client.wait_for(lambda f: f == {"type": "hi", "by": role})
    await client.close()


@pytest.mark.parametrize(
    ("raw", "status", "error", "names"),
    [
        (b"{not json", 400, "invalid_json", "JSON"),
        (b"", 400, "invalid_json", "empty"),
        (b"[1, 2]", 422, "invalid_body", "JSON object"),
        (b'{"scope": "everyone", "event": {}}', 422, "invalid_scope", "scope"),
        (b'{"scope": "broadcast", "target": "x", "event": {}}', 422, "invalid_target", "target"),
        (b'{"scope": "user", "event": {}}', 422, "invalid_target", "target"),
        (b'{"scope": "org", "target": "", "event": {}}', 422, "invalid_target", "target"),
        (b'{"scope": "org", "target": "o", "event": "hi"}', 422, "invalid_event", "event"),
        (b'{"scope": "org", "target": "o"}', 422, "invalid_event", "event"),
        (b'{"scope": "broadcast", "event": {}, "extra": 1}', 422, "invalid_body", "extra"),
    ],
)
def test_post_event_bad_bodies_get_a_clear_json_error(
    single: ServerSet, raw: bytes, status: int, error: str, names: str
) -> None:
    got_status, body = post(single, raw=raw, token=single.token("ops", "org-x", "service"))
    assert (got_status, body["error"]) == (status, error)
    assert names in body["detail"]


def test_post_event_too_large_is_413(single: ServerSet) -> None:
    big = {"scope": "broadcast", "event": {"blob": "x" * 300_000}}
    status, body = post(single, big, single.token("ops", "org-x", "service"))
    assert status == 413 and body["error"] == "body_too_large"


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"steps": 0}, "invalid_steps"),
        ({"interval": -1}, "invalid_interval"),
        ({"name": ""}, "invalid_name"),
        ({"nope": 1}, "invalid_body"),
    ],
)
def test_post_task_bad_bodies_are_422(single: ServerSet, body: dict, error: str) -> None:
    status, reply = http_json(
        "POST", single[0].http + "/api/tasks", body, token=single.token("alice", "org-a")
    )
    assert (status, reply["error"]) == (422, error)


def test_post_task_requires_a_token(single: ServerSet) -> None:
    status, reply = http_json("POST", single[0].http + "/api/tasks", {})
    assert (status, reply["error"]) == (401, "unauthorized")


def test_portal_page_and_static_files_are_served(single: ServerSet) -> None:
    import urllib.request

    with urllib.request.urlopen(single[0].http + "/", timeout=10) as resp:
        assert resp.status == 200 and resp.headers["content-type"].startswith("text/html")
        assert b"<html" in resp.read().lower()
    with urllib.request.urlopen(single[0].http + "/static/portal.js", timeout=10) as resp:
        assert resp.status == 200 and b"/ws/events" in resp.read()


def test_logs_redact_tokens_even_at_debug(single: ServerSet) -> None:
    log = single[0].log_text()
    assert "token=<redacted>" in log, "DEBUG logs each socket URL, with the token redacted"
    assert "eyJ" not in log


def test_dev_mode_without_secret_warns_and_the_token_command_mints_a_working_token(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    workdir = tmp_path_factory.mktemp("dev")
    servers = start_servers(1, secret="", workdir=workdir)
    try:
        log = servers[0].log_text()
        assert "WARNING aifactory.server: AIFACTORY_AUTH_SECRET unset: dev mode" in log
        assert DISABLED_LINE in log
        minted = run_server_once(
            {"AIFACTORY_DEV_SECRET_FILE": str(workdir / "dev-secret")},
            args=("token", "--user", "dev", "--org", "lab", "--role", "admin"),
        )
        assert minted.returncode == 0, minted.stderr
        token = minted.stdout.strip()
        status, body = http_json(
            "POST", servers[0].http + "/api/events", {"scope": "broadcast", "event": {}}, token=token
        )
        assert status == 202, body
        assert (workdir / "dev-secret").stat().st_mode & 0o077 == 0, "the dev secret file is private"
    finally:
        servers.stop()
