"""--cluster smoke check against a local HTTP server that serves the few Kubernetes API endpoints the check
uses (no cluster runs here): Deployment/HPA lists, the REDIS_URL Secret, pod lists and each pod's /readyz
through the API server's pod proxy. The real `kubernetes` client talks to it through a kubeconfig, in a
real CLI process; one test proxies /readyz to real `aifactory-server` processes on a real Redis."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote

import pytest

from aifactory.constants import DEFAULT_CHANNEL
from harness.app_servers import http_json, start_servers
from harness.kube_api import FakeKubeAPI, Reply, status
from tests.validator.helpers import run_cli

NS = "aifactory"
RELEASE_SELECTOR = "app.kubernetes.io/instance=aifactory,app.kubernetes.io/part-of=aifactory"
UUIDS = [
    "0b6f5c1e-1111-4a7e-9a57-6f1f4c1b0001",
    "0b6f5c1e-2222-4a7e-9a57-6f1f4c1b0002",
    "0b6f5c1e-3333-4a7e-9a57-6f1f4c1b0003",
]
PASSWORD = "pw-never-printed"
CHANNEL = DEFAULT_CHANNEL


def readyz(uuid: str, bridge: str = "connected", channel: str | None = CHANNEL, ready: bool = True) -> Reply:
    """A /readyz answer shaped like the server's (docs/server.md)."""
    body = {
        "status": "ready" if ready else "not-ready",
        "replica": uuid,
        "bridge": bridge,
        "channel": channel,
        "clients": 0,
        "terminals": 0,
    }
    return Reply(200 if ready else 503, body)


def deployment(name: str, replicas: int, redis_secret: str | None = "aifactory-redis") -> dict:
    env = [{"name": "PORT", "value": "8000"}]
    if redis_secret:
        env.append(
            {"name": "REDIS_URL", "valueFrom": {"secretKeyRef": {"name": redis_secret, "key": "REDIS_URL"}}}
        )
    return {
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app.kubernetes.io/instance": "aifactory", "tier": name}},
            "template": {"spec": {"containers": [{"name": "server", "image": "x", "env": env}]}},
        },
        "status": {"replicas": replicas, "readyReplicas": replicas},
    }


class Cluster:
    """What the fake API server serves; tests edit it per scenario. Pods belong to a Deployment by label."""

    def __init__(self) -> None:
        self.deployments = [deployment("aifactory", 3)]
        self.hpas: list[dict] = []
        self.secrets = {
            "aifactory-redis": {
                "REDIS_URL": base64.b64encode(f"redis://:{PASSWORD}@r:6379/0".encode()).decode()
            }
        }
        # pod name -> (owning Deployment, its /readyz answer); a log line would scroll away, this cannot
        self.pods: dict[str, tuple[str, Reply]] = {
            f"aifactory-{i}": ("aifactory", readyz(u)) for i, u in enumerate(UUIDS)
        }
        self.requests: list[tuple[str, str]] = []

    def pod(self, name: str) -> dict:
        owner = self.pods[name][0]
        return {
            "metadata": {"name": name, "labels": {"app.kubernetes.io/instance": "aifactory", "tier": owner}},
            "spec": {"containers": [{"name": "server", "ports": [{"name": "http", "containerPort": 8000}]}]},
            "status": {"phase": "Running"},
        }

    def route(self, path: str, query: dict[str, list[str]]) -> Reply | None:
        """The read-only endpoints the smoke check uses, scoped by label selectors like the real API."""
        path = unquote(path)
        parts = path.strip("/").split("/")
        selector = query.get("labelSelector", [""])[0]
        if path in (
            f"/apis/apps/v1/namespaces/{NS}/deployments",
            f"/apis/autoscaling/v2/namespaces/{NS}/horizontalpodautoscalers",
        ):
            if selector != RELEASE_SELECTOR:
                return Reply(
                    400, {"kind": "Status", "code": 400, "message": f"unexpected selector {selector}"}
                )
            items = self.deployments if "deployments" in path else self.hpas
            return Reply(200, {"kind": "List", "apiVersion": "v1", "items": items})
        if path == f"/api/v1/namespaces/{NS}/pods":
            wanted = dict(pair.split("=", 1) for pair in selector.split(",") if pair)
            pods = [self.pod(n) for n in self.pods]
            items = [p for p in pods if wanted.items() <= p["metadata"]["labels"].items()]
            return Reply(200, {"kind": "PodList", "apiVersion": "v1", "items": items})
        if parts[:5] == ["api", "v1", "namespaces", NS, "secrets"] and len(parts) == 6:
            data = self.secrets.get(parts[5])
            if data is None:
                return status(404, "NotFound", "not found")
            return Reply(
                200, {"kind": "Secret", "apiVersion": "v1", "metadata": {"name": parts[5]}, "data": data}
            )
        if parts[:5] == ["api", "v1", "namespaces", NS, "pods"] and parts[6:] == ["proxy", "readyz"]:
            name, _, port = parts[5].partition(":")
            if port != "8000" or name not in self.pods:
                return status(404, "NotFound", f"no pod {parts[5]}")
            return self.pods[name][1]
        return None


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[Cluster, Path]]:
    state = Cluster()
    with FakeKubeAPI(state.route) as api:
        state.requests = api.requests  # every request the CLI made, to prove it only reads
        yield state, api.write_kubeconfig(tmp_path / "kubeconfig", NS)


def smoke(kubeconfig: Path, *extra: str) -> tuple[int, str]:
    proc = run_cli("--cluster", "--kubeconfig", str(kubeconfig), *extra)
    assert b"Traceback" not in proc.stderr
    return proc.returncode, proc.stdout.decode() + proc.stderr.decode()


def test_healthy_release_passes_and_reports_what_it_saw(cluster: tuple[Cluster, Path]) -> None:
    state, kubeconfig = cluster
    rc, out = smoke(kubeconfig)
    assert rc == 0, out
    assert "deployment/aifactory: 3 desired, 3 ready" in out
    assert "REDIS_URL from secret/aifactory-redis key REDIS_URL" in out
    for uuid in UUIDS:
        assert f"replica {uuid} on channel '{CHANNEL}' (bridge connected)" in out
    assert PASSWORD not in out
    assert {method for method, _ in state.requests} == {"GET"}


def test_readiness_comes_from_readyz_never_from_logs(cluster: tuple[Cluster, Path]) -> None:
    """A startup log line scrolls away or rotates out; /readyz answers for the running process."""
    state, kubeconfig = cluster
    rc, out = smoke(kubeconfig)
    assert rc == 0, out
    paths = [unquote(p) for _, p in state.requests]
    assert not [p for p in paths if p.split("?")[0].endswith("/log")]
    for name in state.pods:
        assert f"/api/v1/namespaces/{NS}/pods/{name}:8000/proxy/readyz" in paths


def test_duplicate_replica_ids_fail(cluster: tuple[Cluster, Path]) -> None:
    state, kubeconfig = cluster
    state.pods["aifactory-2"] = ("aifactory", readyz(UUIDS[0]))
    rc, out = smoke(kubeconfig)
    assert rc == 1 and "cluster-replica-id-duplicate" in out


def test_disabled_bridge_with_several_replicas_fails(cluster: tuple[Cluster, Path]) -> None:
    state, kubeconfig = cluster
    state.deployments = [deployment("aifactory", 3, redis_secret=None)]
    state.pods = {f"aifactory-{i}": ("aifactory", readyz(u, "disabled", None)) for i, u in enumerate(UUIDS)}
    rc, out = smoke(kubeconfig)
    assert rc == 1
    assert out.count("error [cluster-redis-disabled]") == 3 and "cluster-pod-redis-off" not in out


def test_redis_configured_but_bridge_disabled_fails(cluster: tuple[Cluster, Path]) -> None:
    state, kubeconfig = cluster
    state.deployments = [deployment("aifactory", 1)]
    state.pods = {"aifactory-0": ("aifactory", readyz(UUIDS[0], "disabled", None))}
    rc, out = smoke(kubeconfig)
    assert rc == 1 and "cluster-pod-redis-off" in out and "cluster-redis-disabled" not in out


def test_single_replica_without_redis_is_fine(cluster: tuple[Cluster, Path]) -> None:
    state, kubeconfig = cluster
    state.deployments = [deployment("aifactory", 1, redis_secret=None)]
    state.pods = {"aifactory-0": ("aifactory", readyz(UUIDS[0], "disabled", None))}
    assert smoke(kubeconfig)[0] == 0


def test_hpa_max_counts_as_several_replicas(cluster: tuple[Cluster, Path]) -> None:
    state, kubeconfig = cluster
    state.deployments = [deployment("aifactory", 1, redis_secret=None)]
    state.hpas = [
        {
            "metadata": {"name": "aifactory"},
            "spec": {
                "minReplicas": 1,
                "maxReplicas": 5,
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "aifactory"},
            },
            "status": {"currentReplicas": 1, "desiredReplicas": 1},
        }
    ]
    state.pods = {"aifactory-0": ("aifactory", readyz(UUIDS[0], "disabled", None))}
    rc, out = smoke(kubeconfig)
    assert rc == 1, out
    assert "hpa/aifactory: min 1, max 5, current 1" in out and "cluster-redis-disabled" in out


def test_every_deployment_of_the_release_is_checked_not_just_the_first(cluster: tuple[Cluster, Path]) -> None:
    """Traffic tiers render several Deployments; a fault in the second one must not hide behind the first."""
    state, kubeconfig = cluster
    state.deployments = [deployment("aifactory-ui", 1), deployment("aifactory-agents", 1, redis_secret=None)]
    state.pods = {
        "ui-0": ("aifactory-ui", readyz(UUIDS[0])),
        "agents-0": ("aifactory-agents", readyz(UUIDS[1], "disabled", None)),
    }
    rc, out = smoke(kubeconfig)
    assert rc == 1, out
    assert "deployment/aifactory-ui: 1 desired" in out and "deployment/aifactory-agents: 1 desired" in out
    assert "pod/agents-0 runs without Redis" in out  # two tiers of one replica still share one bus
    state.deployments[1] = deployment("aifactory-agents", 1)
    state.pods["agents-0"] = ("aifactory-agents", readyz(UUIDS[1], channel="other:events"))
    rc, out = smoke(kubeconfig)
    assert rc == 1 and "cluster-channel-mismatch" in out and "agents-0=other:events" in out


def test_missing_secret_and_missing_key_fail(cluster: tuple[Cluster, Path]) -> None:
    state, kubeconfig = cluster
    state.secrets = {}
    rc, out = smoke(kubeconfig)
    assert rc == 1 and "cluster-secret-missing" in out
    state.secrets = {"aifactory-redis": {"redis_url": "eA=="}}
    rc, out = smoke(kubeconfig)
    assert rc == 1 and "cluster-secret-key-missing" in out and "keys: redis_url" in out


def test_unreadable_readyz_and_channel_mismatch_fail(cluster: tuple[Cluster, Path]) -> None:
    state, kubeconfig = cluster
    state.pods["aifactory-1"] = ("aifactory", readyz(UUIDS[1], channel="other:events"))
    state.pods["aifactory-2"] = ("aifactory", status(503, "ServiceUnavailable", "error trying to reach pod"))
    rc, out = smoke(kubeconfig)
    assert rc == 1 and "cluster-channel-mismatch" in out
    assert "error [cluster-pod-readyz-unreadable] pod/aifactory-2: GET /readyz" in out and "503" in out


def test_starting_and_reconnecting_pods_are_warnings(cluster: tuple[Cluster, Path]) -> None:
    state, kubeconfig = cluster
    state.pods["aifactory-1"] = ("aifactory", readyz(UUIDS[1], ready=False))
    state.pods["aifactory-2"] = ("aifactory", readyz(UUIDS[2], bridge="reconnecting"))
    rc, out = smoke(kubeconfig)
    assert rc == 0, out
    assert "warning [cluster-pod-not-ready] pod/aifactory-1" in out
    assert "warning [cluster-redis-not-connected] pod/aifactory-2" in out
    assert smoke(kubeconfig, "--strict")[0] == 1


def test_wrong_release_finds_no_deployment(cluster: tuple[Cluster, Path]) -> None:
    state, kubeconfig = cluster
    state.deployments = []
    rc, out = smoke(kubeconfig)
    assert rc == 1 and "cluster-deployment-missing" in out


def test_real_servers_readyz_is_what_the_check_reads(tmp_path: Path, redis_server: object) -> None:
    """The fake API server proxies each pod's /readyz to a real `aifactory-server` on a real Redis."""
    servers = start_servers(2, redis_url=redis_server.url, workdir=tmp_path / "servers")  # type: ignore[attr-defined]
    try:
        servers.wait_bridge("connected")
        ids = [http_json("GET", s.http + "/readyz")[1]["replica"] for s in servers]
        state = Cluster()
        state.deployments = [deployment("aifactory", 2)]

        def proxied(server: object) -> Reply:
            code, body = http_json("GET", server.http + "/readyz")  # type: ignore[attr-defined]
            return Reply(code, body)

        real = {f"aifactory-{i}": s for i, s in enumerate(servers)}
        state.pods = {name: ("aifactory", readyz("unused")) for name in real}
        route = state.route

        def route_to_real(path: str, query: dict[str, list[str]]) -> Reply | None:
            name = unquote(path).split("/pods/")[-1].split(":")[0]
            if unquote(path).endswith("/proxy/readyz") and name in real:
                return proxied(real[name])
            return route(path, query)

        with FakeKubeAPI(route_to_real) as api:
            rc, out = smoke(api.write_kubeconfig(tmp_path / "kubeconfig", NS))
        assert rc == 0, out
        for replica in ids:
            assert f"replica {replica} on channel '{CHANNEL}' (bridge connected)" in out
    finally:
        servers.stop()


def test_unreachable_cluster_is_a_usage_error(tmp_path: Path) -> None:
    from harness.ports import free_port

    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\n"
        f"clusters: [{{name: c, cluster: {{server: 'http://127.0.0.1:{free_port()}'}}}}]\n"
        "users: [{name: u, user: {token: t}}]\ncontexts: [{name: c, context: {cluster: c, user: u}}]\n"
        "current-context: c\n"
    )
    rc, out = smoke(kubeconfig)
    assert rc == 2 and "cannot reach the cluster" in out


def test_missing_kubeconfig_is_a_usage_error(tmp_path: Path) -> None:
    rc, out = smoke(tmp_path / "nope")
    assert rc == 2 and "cannot load kubeconfig" in out


def test_json_output_for_ci(cluster: tuple[Cluster, Path]) -> None:
    state, kubeconfig = cluster
    state.pods["aifactory-2"] = ("aifactory", readyz(UUIDS[0]))
    rc, out = smoke(kubeconfig, "--format", "json")
    doc = json.loads(out)
    assert rc == 1 and doc["valid"] is False
    assert [f["rule"] for f in doc["findings"]] == ["cluster-replica-id-duplicate"]
    assert doc["files"] == ["release aifactory in namespace aifactory"]


def test_the_release_selector_and_port_name_match_what_the_chart_renders(helm: str) -> None:
    """--cluster finds Deployments/HPAs by labels and /readyz by the `http` port: tie both to the chart."""
    import yaml

    from tests.conftest import CHART, EXAMPLES, run_helm
    from validator.cluster import HTTP_PORT_NAME, SELECTOR

    proc = run_helm(helm, "template", "aifactory", str(CHART), "-f", str(EXAMPLES / "hpa.yaml"))
    assert proc.returncode == 0, proc.stderr
    docs = [d for d in yaml.safe_load_all(proc.stdout) if d]
    wanted = dict(pair.split("=") for pair in SELECTOR.format(release="aifactory").split(","))
    workloads = [d for d in docs if d["kind"] in ("Deployment", "HorizontalPodAutoscaler")]
    assert {d["kind"] for d in workloads} == {"Deployment", "HorizontalPodAutoscaler"}
    for obj in workloads:
        assert wanted.items() <= obj["metadata"]["labels"].items(), obj["metadata"]
    for dep in (d for d in workloads if d["kind"] == "Deployment"):
        ports = [p for c in dep["spec"]["template"]["spec"]["containers"] for p in c.get("ports", [])]
        assert HTTP_PORT_NAME in {p["name"] for p in ports}
