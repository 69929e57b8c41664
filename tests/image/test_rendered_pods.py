"""The chart's rendered multi-replica release runs for real: three replica containers from the Deployment's
pod template (podman kube play), Redis beside them, HAProxy in front, the Service, the `helm test` Pod,
and a rolling update to a new image tag. What kube play honours and what tests/image/cluster.py patches:
docs/image.md.
"""

from __future__ import annotations

import asyncio
import math
import re
import subprocess
import time
import uuid
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest

from aifactory.auth import mint_token
from harness.app_servers import http_json
from harness.recovery import Firer, ResumingClient, verdict
from tests.e2e.lb import HAProxy
from tests.image.cluster import Cluster, Pod
from tests.image.podman import BUILD, inspect, podman, run_in
from tests.server.wsclient import EventClient

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]  # a cold run debootstraps first

ENABLED = re.compile(r"Redis pub/sub enabled — replica ([0-9a-f-]{36}) on channel '([^']+)'")
# HAProxy server slots: the first generation of pods on .10-.19, the rolled-out one on .20-.29.
FIRST, NEXT = 10, 20


def enabled_line(pod: Pod) -> tuple[str, str]:
    logs = podman("logs", pod.container)
    match = ENABLED.search(logs.stdout + logs.stderr)
    assert match, f"{pod.name} never logged the enabled line:\n{logs.stderr[-2000:]}"
    return match.group(1), match.group(2)


@pytest.fixture(scope="module")
def lb(cluster: Cluster) -> Iterator[HAProxy]:
    """HAProxy from the chart's values (deploy.haproxy), health-checking both pod generations."""
    replicas = cluster.deployment["spec"]["replicas"]
    slots = [cluster.ip(base + i) for base in (FIRST, NEXT) for i in range(replicas)]
    proxy = HAProxy([f"{ip}:{cluster.port}" for ip in slots], admin_socket=True).start()
    cluster.endpoint_listeners.append(proxy.set_serving)  # the ingress follows the Endpoints
    try:
        cluster.update_endpoints()
        yield proxy
    finally:
        cluster.endpoint_listeners.remove(proxy.set_serving)
        proxy.stop()


def tokens(cluster: Cluster) -> tuple[str, str]:
    secret = cluster.auth_secret
    return mint_token(secret, "u-img", "org-img"), mint_token(secret, "svc-img", "org-img", "service")


def fire(base: str, service_token: str, marker: str) -> tuple[int, Any]:
    body = {"scope": "broadcast", "event": {"type": "image-test", "marker": marker}}
    return http_json("POST", f"{base}/api/events", body, token=service_token, timeout=10)


def test_every_replica_runs_as_10001_without_capabilities_writing_only_tmp(cluster: Cluster) -> None:
    limit = cluster.server_spec["resources"]["limits"]["memory"]
    assert limit == "512Mi"
    for pod in cluster.pods:
        status = run_in(pod.container, "cat", "/proc/1/status", check=True).stdout
        fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
        assert fields["Uid"].split() == ["10001"] * 4 and fields["Gid"].split() == ["10001"] * 4
        for cap in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
            assert int(fields[cap], 16) == 0, f"{pod.name}: {cap}={fields[cap]}"
        assert fields["NoNewPrivs"].strip() == "1", "allowPrivilegeEscalation: false"
        assert fields["Seccomp"].strip() == "2", "seccompProfile RuntimeDefault: a filter is loaded"
        # Nothing outside /tmp (and the kernel's /proc, /sys, /dev) is writable for the server's user.
        writable = run_in(
            pod.container, "find", "/", "(", "-path", "/proc", "-o", "-path", "/sys", "-o", "-path", "/dev",
            "-o", "-path", "/tmp", ")", "-prune", "-o", "-writable", "-print",
        ).stdout.split()  # fmt: skip
        assert writable == [], f"{pod.name} can write {writable}"
        refused = run_in(pod.container, "touch", "/usr/local/lib/x")
        assert refused.returncode != 0 and "Read-only file system" in refused.stderr
        assert run_in(pod.container, "touch", "/tmp/x").returncode == 0, "the /tmp emptyDir is writable"
        info = inspect("container", pod.container)
        assert info["HostConfig"]["ReadonlyRootfs"] is True
        assert [m["Destination"] for m in info["Mounts"]] == ["/tmp"]
        assert info["HostConfig"]["Memory"] == 512 * 1024 * 1024, "resources.limits.memory honoured"
        env = dict(e.split("=", 1) for e in info["Config"]["Env"])
        assert env["REDIS_URL"] == f"redis://{cluster.redis_name}:6379/0", "from the operator's Secret"
        assert env["AIFACTORY_AUTH_SECRET"] == cluster.auth_secret, "from the chart's Secret"


def test_each_replica_logs_the_enabled_line_with_its_own_uuid(cluster: Cluster) -> None:
    lines = [enabled_line(pod) for pod in cluster.pods]
    channel = next(e["value"] for e in cluster.server_spec["env"] if e["name"] == "REDIS_CHANNEL")
    assert {ch for _, ch in lines} == {channel} == {"aifactory:events"}
    assert len({replica for replica, _ in lines}) == len(cluster.pods) == 3


async def test_an_event_fired_on_one_replica_reaches_sockets_on_the_others(
    cluster: Cluster, lb: HAProxy
) -> None:
    user, service = tokens(cluster)
    direct = [
        await EventClient.connect(f"ws://{p.ip}:{cluster.port}/ws/events?token={user}", p.name)
        for p in cluster.pods
    ]
    via_lb = [await EventClient.connect(f"{lb.ws}/ws/events?token={user}", f"lb{i}") for i in range(3)]
    try:
        owners = {c.hello["replica"]: c.label for c in direct}
        assert set(owners) == {enabled_line(p)[0] for p in cluster.pods}, "hello names the logged uuid"
        for origin in cluster.pods:
            marker = uuid.uuid4().hex
            status, body = await asyncio.to_thread(fire, origin.url(cluster.port), service, marker)
            assert status == 202, body
            assert owners[body["replica"]] == origin.name
            await asyncio.gather(*(c.wait_marker(marker) for c in direct + via_lb))
    finally:
        for client in direct + via_lb:
            await client.close()


def test_bubblewrap_sandbox_inside_a_replica(cluster: Cluster) -> None:
    """What the terminal sandbox can count on in this pod spec under podman (docs/image.md)."""
    pod = cluster.pods[0]
    bwrap = ["bwrap", "--unshare-user", "--unshare-pid", "--ro-bind", "/", "/", "--dev", "/dev"]
    inside = run_in(pod.container, *bwrap, "--tmpfs", "/tmp", "--", "sh", "-c", "id -u; echo $$")
    assert inside.returncode == 0, inside.stderr
    assert inside.stdout.split() == ["10001", "2"], "own user and pid namespaces, as the pod's user"
    fresh_proc = run_in(pod.container, *bwrap, "--proc", "/proc", "true")
    assert fresh_proc.returncode == 1
    assert "Can't mount proc on /newroot/proc: Operation not permitted" in fresh_proc.stderr, (
        "a new /proc is refused under the runtime's masked /proc (procMount: Default)"
    )


def test_helm_test_hook_passes_against_the_service(cluster: Cluster) -> None:
    code, logs = cluster.run_hook()
    assert code == 0, logs
    assert logs.count("received it") == 3 and "PASS: fan-out reached all 3 replicas" in logs, logs


# -- rolling update ------------------------------------------------------------------------------


def rollout_bounds(deployment: dict[str, Any]) -> tuple[int, int]:
    """(maxSurge, maxUnavailable) as pods, the way the Deployment controller resolves them."""
    strategy = deployment["spec"].get("strategy") or {}
    assert strategy.get("type", "RollingUpdate") == "RollingUpdate"
    rolling = strategy.get("rollingUpdate") or {}
    replicas = deployment["spec"]["replicas"]

    def resolve(value: int | str, rounding: Any) -> int:
        if isinstance(value, str) and value.endswith("%"):
            return int(rounding(replicas * int(value[:-1]) / 100))
        return int(value)

    surge = resolve(rolling.get("maxSurge", "25%"), math.ceil)
    unavailable = resolve(rolling.get("maxUnavailable", "25%"), math.floor)
    return surge, (1 if surge == 0 and unavailable == 0 else unavailable)


def roll(cluster: Cluster, tag: str, log: list[str]) -> dict[str, Any]:
    """Replace every pod with one of the re-rendered template, within maxSurge / maxUnavailable."""
    new_docs = cluster.render(tag)
    template = next(d for d in new_docs if d["kind"] == "Deployment")
    replicas = template["spec"]["replicas"]
    surge, unavailable = rollout_bounds(template)
    old, new = list(cluster.pods), []
    name = template["metadata"]["name"]
    peak, floor = len(cluster.pods), len(cluster.pods)
    while old or len(new) < replicas:
        while len(new) < replicas and len(old) + len(new) < replicas + surge:
            pod = cluster.play(template, f"{name}-v2-{len(new)}", NEXT + len(new))
            new.append(pod)
            cluster.pods.append(pod)
            log.append(f"start {pod.name}")
            peak = max(peak, len(cluster.pods))
        for pod in new:
            cluster.wait_ready(pod)
        cluster.update_endpoints()
        removable = min(len(old), len(old) + len(new) - (replicas - unavailable))
        assert removable > 0 or not old, "the rollout cannot progress within its bounds"
        for pod in old[:removable]:
            old.remove(pod)
            ready = sum(cluster.probe(p, "readinessProbe") == 200 for p in cluster.pods if p is not pod)
            floor = min(floor, ready)
            log.append(f"stop {pod.name} ({ready} ready without it)")
            cluster.stop_pod(pod)
    assert peak <= replicas + surge, f"{peak} pods at once; maxSurge allows {replicas + surge}"
    assert floor >= replicas - unavailable, f"{floor} ready at worst; maxUnavailable allows {unavailable}"
    cluster.upgrade(new_docs)
    return template


async def test_rolling_update_to_a_new_tag_replaces_pods_and_clients_recover_every_event(
    cluster: Cluster, lb: HAProxy
) -> None:
    """Six resuming clients behind HAProxy (harness/recovery.py) ride out the whole rollout: each pod
    that leaves closes with 1012, each client resumes with `since=<its last _offset>` on a new pod and
    gets every event the firer's 202s promised exactly once, none lost, no resync (Redis stays up)."""
    user, service = tokens(cluster)
    old_replicas = {enabled_line(p)[0] for p in cluster.pods}
    tag = cluster.server_image.rsplit(":", 1)[1] + "-rollout"
    cluster.retag(tag)
    clients = [ResumingClient(f"c{i}", "u-img", "org-img", user, [lb.ws]) for i in range(6)]
    firer = Firer(lb.http, service, [("broadcast", None), ("user", "u-img"), ("org", "org-img")], rate=50)
    log: list[str] = []
    async with aiohttp.ClientSession() as session:
        try:
            for client in clients:
                await client.start(session)
            firing = asyncio.create_task(firer.run(session, 3600))
            started = time.monotonic()
            template = await asyncio.to_thread(roll, cluster, tag, log)
            rolled = time.monotonic() - started
            new_replicas = {enabled_line(p)[0] for p in cluster.pods}
            assert {p.image for p in cluster.pods} == {
                template["spec"]["template"]["spec"]["containers"][0]["image"]
            }
            assert all(p.image.endswith(f":{tag}") for p in cluster.pods)
            assert len(new_replicas) == 3 and not new_replicas & old_replicas
            await wait_for(
                # promptly: a leaving pod closes its sockets (1012), not a keepalive timeout much later
                lambda: all(c.hellos[-1]["replica"] in new_replicas for c in clients),
                15,
                "every client on a new pod",
            )
            await asyncio.sleep(2)  # events on the new pods after everyone resumed, too
            firing.cancel()
            stopped = time.monotonic()
            await wait_for(  # in-flight POSTs finish (5 s timeout) and every accepted event arrives
                lambda: (
                    time.monotonic() > stopped + 6
                    and all(set(firer.expected(c)) <= set(c.got) for c in clients)
                ),
                45,
                "every accepted event at every client",
            )
        finally:
            for client in clients:
                await client.stop()
    verdicts = [verdict(c, firer, clients[0].got) for c in clients]
    stops = ", ".join(f"{seconds:.1f}s" for seconds, _ in cluster.stopped.values())
    print(f"\nrollout in {rolled:.0f}s: {'; '.join(log)}; SIGTERM to gone: {stops}")
    print(f"{len(firer.accepted)} events accepted ({firer.refused} refused); {verdicts}")
    assert len(firer.accepted) > 100, firer.refused
    for c, v in zip(clients, verdicts, strict=True):
        assert v.reconnects >= 1, f"{c.name}: its pod went away, so it reconnected: {c.closes}"
        assert 1012 in c.closes, f"{c.name}: its pod said 'service restart': {c.closes}"
        assert not c.resyncs, (
            f"{c.name}: a rolling update with Redis up must recover, not resync: {c.resyncs}"
        )
        assert v.recovered == v.reconnects, f"{c.name}: every resume said recovered: {c.hellos[1:]}"
        assert (v.lost, v.duplicates) == (0, 0), v
        # Fired through the balancer to every pod: the contract is order per origin (docs/recovery.md).
        assert disorder(c.got, clients[0].got, firer.origins) == 0, f"{c.name}: same order per origin"


def disorder(got: list[int], reference: list[int], origins: dict[int, str]) -> int:
    """How many positions differ between two clients' sequences of each origin's events."""
    common = set(got) & set(reference)
    differ = 0
    for origin in set(origins.values()):
        mine = [n for n in got if n in common and origins.get(n) == origin]
        theirs = [n for n in reference if n in common and origins.get(n) == origin]
        differ += sum(a != b for a, b in zip(mine, theirs, strict=True))
    return differ


async def wait_for(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out after {timeout:.0f}s waiting for {what}"
        await asyncio.sleep(0.2)


def test_helm_test_hook_fails_when_one_replica_is_muted(cluster: Cluster) -> None:
    """A replica that is up but deaf to Redis (its inbound Redis packets dropped) fails the hook."""
    pod = cluster.pods[-1]
    deaf = enabled_line(pod)[0]
    pid = str(inspect("container", pod.container)["State"]["Pid"])
    rule = ["INPUT", "-s", cluster.redis_ip, "-j", "DROP"]
    nsenter = [*BUILD.sudo(), "nsenter", "-t", pid, "-n", "iptables"]
    subprocess.run([*nsenter, "-I", *rule], check=True)
    try:
        code, logs = cluster.run_hook()
    finally:
        subprocess.run([*nsenter, "-D", *rule], check=True)
    print(f"\nmuted {pod.name}; helm test said:\n{logs}")
    assert code == 1, logs
    assert "did not receive it" in logs, logs
    # The deaf replica misses the event, or (fired on it) every other replica does.
    assert f"FAIL replica {deaf} did not" in logs or f"fired a broadcast on replica {deaf}" in logs, logs
