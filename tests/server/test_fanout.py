"""Three real replicas on one real Redis: every scope crosses replicas, once, to exactly its audience."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import pytest

from aifactory.constants import DEFAULT_CHANNEL, ENABLED_LINE
from harness.app_servers import ServerSet, http_json
from harness.redis_servers import wait_until
from tests.server.conftest import REDIS_PASSWORD
from tests.server.wsclient import EventClient

pytestmark = pytest.mark.timeout(120)


@dataclass
class Audience:
    """alice and bob in org-a, carol in org-b: one socket each on every replica."""

    alice: list[EventClient]
    bob: list[EventClient]
    carol: list[EventClient]

    @property
    def everyone(self) -> list[EventClient]:
        return [*self.alice, *self.bob, *self.carol]


def fire(cluster: ServerSet, replica: int, scope: str, target: str | None, event: dict) -> dict:
    body = {"scope": scope, "event": event} | ({"target": target} if target is not None else {})
    status, reply = http_json(
        "POST", cluster[replica].http + "/api/events", body, token=cluster.token("svc", "ops", "service")
    )
    assert status == 202, reply
    return reply


async def marker_everywhere(cluster: ServerSet, clients: list[EventClient], replica: int = 0) -> None:
    """A broadcast fired after the events under test; once every client has it, they have all earlier ones."""
    marker = uuid.uuid4().hex
    fire(cluster, replica, "broadcast", None, {"type": "marker", "marker": marker})
    for client in clients:
        await client.wait_marker(marker)


@pytest.fixture
async def audience(cluster: ServerSet) -> AsyncIterator[Audience]:
    groups = {}
    for name, org in (("alice", "org-a"), ("bob", "org-a"), ("carol", "org-b")):
        token = cluster.token(name, org)
        groups[name] = [await EventClient.connect(s.ws_url(token=token), f"{name}@{s.name}") for s in cluster]
    aud = Audience(**groups)
    yield aud
    for client in aud.everyone:
        await client.close()


def test_each_replica_logs_the_enabled_line_with_its_own_uuid(cluster: ServerSet) -> None:
    ids = set()
    for server in cluster:
        replica = server.readyz()[1]["replica"]
        ids.add(replica)
        line = ENABLED_LINE % (replica, DEFAULT_CHANNEL)
        assert line in server.log_text()
        assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", replica)
    assert len(ids) == 3, "every replica must have its own uuid4"


@pytest.mark.parametrize("origin", [0, 1, 2])
async def test_broadcast_reaches_every_client_on_every_replica_once(
    cluster: ServerSet, audience: Audience, origin: int
) -> None:
    event_id = uuid.uuid4().hex
    fire(cluster, origin, "broadcast", None, {"type": "news", "id": event_id})
    for client in audience.everyone:
        frames = await client.wait_for(lambda f: f.get("id") == event_id)
        assert frames[0] == {"type": "news", "id": event_id}, "the frame holds exactly the posted event"
    await marker_everywhere(cluster, audience.everyone, origin)
    for client in audience.everyone:
        assert client.count("id", event_id) == 1, f"{client.label} got a duplicate"


async def test_user_event_reaches_only_that_users_sockets_on_all_replicas(
    cluster: ServerSet, audience: Audience
) -> None:
    event_id = uuid.uuid4().hex
    fire(cluster, 0, "user", "alice", {"type": "dm", "id": event_id})
    for client in audience.alice:
        await client.wait_for(lambda f: f.get("id") == event_id)
    await marker_everywhere(cluster, audience.everyone)
    for client in audience.alice:
        assert client.count("id", event_id) == 1, f"{client.label} got a duplicate"
    for client in [*audience.bob, *audience.carol]:
        assert client.count("id", event_id) == 0, f"{client.label} saw alice's private event"


async def test_org_event_reaches_only_that_orgs_members_on_all_replicas(
    cluster: ServerSet, audience: Audience
) -> None:
    event_id = uuid.uuid4().hex
    fire(cluster, 1, "org", "org-a", {"type": "org-news", "id": event_id})
    for client in [*audience.alice, *audience.bob]:
        await client.wait_for(lambda f: f.get("id") == event_id)
    await marker_everywhere(cluster, audience.everyone)
    for client in [*audience.alice, *audience.bob]:
        assert client.count("id", event_id) == 1, f"{client.label} got a duplicate"
    for client in audience.carol:
        assert client.count("id", event_id) == 0, f"{client.label} (org-b) saw org-a's event"


async def test_task_events_reach_the_owner_on_other_replicas_and_only_status_reaches_colleagues(
    cluster: ServerSet, audience: Audience
) -> None:
    status, reply = http_json(
        "POST",
        cluster[1].http + "/api/tasks",
        {"name": "build", "steps": 3, "interval": 0},
        token=cluster.token("alice", "org-a"),
    )
    assert status == 202, reply
    task_id = reply["task_id"]

    def of_task(kind: str) -> Callable[[dict], bool]:
        return lambda f: f.get("task_id") == task_id and f.get("type") == kind

    for client in audience.alice:  # including the replicas that did not run the task
        await client.wait_for(lambda f: f.get("task_id") == task_id and f.get("status") == "succeeded")
        assert [f["percent"] for f in client.matching(of_task("task.progress"))] == [0, 33, 67, 100]
        assert len(client.matching(of_task("task.log"))) == 4
        assert [f["status"] for f in client.matching(of_task("task.status"))] == ["running", "succeeded"]
        assert {f["replica"] for f in client.matching(lambda f: f.get("task_id") == task_id)} == {
            reply["replica"]
        }
    await marker_everywhere(cluster, audience.everyone)
    for client in audience.bob:  # same org: sees status and progress, not alice's log lines
        assert len(client.matching(of_task("task.status"))) == 2
        assert len(client.matching(of_task("task.progress"))) == 4
        assert client.matching(of_task("task.log")) == []
    for client in audience.carol:
        assert client.matching(lambda f: f.get("task_id") == task_id) == []


async def test_audit_record_is_on_disk_when_the_client_receives_the_event(
    cluster: ServerSet, audience: Audience
) -> None:
    event_id = uuid.uuid4().hex
    fire(cluster, 2, "org", "org-b", {"type": f"audited-{event_id}"})
    await audience.carol[0].wait_for(lambda f: f.get("type") == f"audited-{event_id}")
    records = [json.loads(line) for line in cluster[2].audit_path.read_text().splitlines()]
    mine = [r for r in records if r.get("event_type") == f"audited-{event_id}"]
    assert len(mine) == 1
    assert mine[0]["action"] == "event.emit"
    assert mine[0]["actor"] == {"sub": "svc", "org": "ops", "role": "service"}
    assert (mine[0]["scope"], mine[0]["target"]) == ("org", "org-b")


async def test_audit_failure_refuses_the_event_and_emits_nothing(
    cluster: ServerSet, audience: Audience
) -> None:
    audit = cluster[2].audit_path
    moved = audit.with_name(audit.name + ".moved")
    audit.rename(moved)
    audit.mkdir()  # the path is now a directory: the record cannot be written
    try:
        event_id = uuid.uuid4().hex
        body = {"scope": "broadcast", "event": {"type": "unaudited", "id": event_id}}
        status, reply = http_json(
            "POST", cluster[2].http + "/api/events", body, token=cluster.token("svc", "ops", "service")
        )
        assert status == 503
        assert reply["error"] == "audit_unavailable"
    finally:
        audit.rmdir()
        moved.rename(audit)
    await marker_everywhere(cluster, audience.everyone, 2)
    for client in audience.everyone:
        assert client.count("id", event_id) == 0


def test_metrics_expose_bus_counters(cluster: ServerSet) -> None:
    fire(cluster, 0, "broadcast", None, {"type": "count-me"})
    status, text = http_json("GET", cluster[0].http + "/metrics")
    assert status == 200
    for name in ("published", "delivered", "dropped", "oversize", "malformed", "reconnects"):
        assert f"aifactory_bus_{name}_total" in text
    assert "aifactory_bus_redis_connected 1.0" in text
    published = re.search(r"^aifactory_bus_published_total (\S+)$", text, re.M)
    assert published and float(published.group(1)) >= 1


def test_readyz_reports_the_bridge_state_and_healthz_is_alive(cluster: ServerSet) -> None:
    status, body = cluster[0].readyz()
    assert status == 200
    assert body["bridge"] == "connected" and body["channel"] == DEFAULT_CHANNEL
    assert http_json("GET", cluster[0].http + "/healthz") == (200, {"status": "ok"})


def test_no_log_ever_contains_a_token_or_the_redis_password(cluster: ServerSet, audience: Audience) -> None:
    for server in cluster:
        log = server.log_text()
        assert REDIS_PASSWORD not in log
        assert "eyJ" not in log, "a JWT (base64 of '{\"') leaked into the log"
    assert all(client.ws.request is not None for client in audience.everyone)  # they all carried ?token=


async def test_get_api_tasks_lists_the_callers_tasks_from_any_replica(cluster: ServerSet) -> None:
    """A task started on replica 1 is listed, with its progress, by replica 3; only for its owner."""
    a, c = cluster[0], cluster[2]
    owner = cluster.token("task-owner", org="org-tasks")
    status, body = http_json("POST", a.http + "/api/tasks", {"steps": 2, "interval": 0}, token=owner)
    assert status == 202
    task_id = body["task_id"]

    def listed() -> list[dict[str, Any]]:
        status, body = http_json("GET", c.http + "/api/tasks", token=owner)
        assert status == 200
        return [t for t in body["tasks"] if t["task_id"] == task_id]

    wait_until(lambda: bool(listed()) and listed()[0].get("status") == "succeeded", "the task record")
    assert listed()[0]["percent"] == 100
    other = cluster.token("someone-else", org="org-tasks")
    assert http_json("GET", c.http + "/api/tasks", token=other)[1] == {"tasks": []}
    assert http_json("GET", c.http + "/api/tasks")[0] == 401
