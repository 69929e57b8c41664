"""--cluster smoke check against a local HTTP server that serves the few Kubernetes API endpoints the check
uses (no cluster runs here): Deployment/HPA lists, the REDIS_URL Secret, the pod list and pod logs. The
real `kubernetes` client talks to it through a kubeconfig, in a real CLI process."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from aifactory.constants import DEFAULT_CHANNEL, DISABLED_LINE, ENABLED_LINE
from harness.kube_api import FakeKubeAPI, Reply, status
from tests.validator.helpers import run_cli

NS = "aifactory"
SELECTOR = "app.kubernetes.io/instance=aifactory,app.kubernetes.io/component=web"
UUIDS = [
    "0b6f5c1e-1111-4a7e-9a57-6f1f4c1b0001",
    "0b6f5c1e-2222-4a7e-9a57-6f1f4c1b0002",
    "0b6f5c1e-3333-4a7e-9a57-6f1f4c1b0003",
]
PASSWORD = "pw-never-printed"


def enabled_line(uuid: str, channel: str = DEFAULT_CHANNEL) -> str:
    return f"INFO aifactory.bus: {ENABLED_LINE % (uuid, channel)}\n"


DISABLED_LOG = f"INFO aifactory.bus: {DISABLED_LINE}\n"


def deployment(replicas: int, redis_secret: str | None = "aifactory-redis") -> dict:
    env = [{"name": "PORT", "value": "8000"}]
    if redis_secret:
        env.append(
            {"name": "REDIS_URL", "valueFrom": {"secretKeyRef": {"name": redis_secret, "key": "REDIS_URL"}}}
        )
    return {
        "metadata": {"name": "aifactory", "namespace": NS},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app.kubernetes.io/instance": "aifactory"}},
            "template": {"spec": {"containers": [{"name": "server", "image": "x", "env": env}]}},
        },
        "status": {"replicas": replicas, "readyReplicas": replicas},
    }


class Cluster:
    """What the fake API server serves; tests edit it per scenario."""

    def __init__(self) -> None:
        self.deployments = [deployment(3)]
        self.hpas: list[dict] = []
        self.secrets = {
            "aifactory-redis": {
                "REDIS_URL": base64.b64encode(f"redis://:{PASSWORD}@r:6379/0".encode()).decode()
            }
        }
        self.logs = {f"aifactory-{i}": "starting\n" + enabled_line(u) for i, u in enumerate(UUIDS)}
        self.requests: list[tuple[str, str]] = []

    def route(self, path: str, query: dict[str, list[str]]) -> Reply | None:
        """The read-only endpoints the smoke check uses, scoped to the release's label selector."""
        parts = path.strip("/").split("/")
        if query.get("labelSelector", [SELECTOR])[0] != SELECTOR:
            return Reply(400, {"kind": "Status", "code": 400, "message": "unexpected selector"})
        if path == f"/apis/apps/v1/namespaces/{NS}/deployments":
            return Reply(200, {"kind": "DeploymentList", "apiVersion": "apps/v1", "items": self.deployments})
        if path == f"/apis/autoscaling/v2/namespaces/{NS}/horizontalpodautoscalers":
            return Reply(200, {"kind": "HorizontalPodAutoscalerList", "items": self.hpas})
        if path == f"/api/v1/namespaces/{NS}/pods":
            pods = [{"metadata": {"name": n}, "status": {"phase": "Running"}} for n in self.logs]
            return Reply(200, {"kind": "PodList", "apiVersion": "v1", "items": pods})
        if parts[:4] == ["api", "v1", "namespaces", NS] and parts[4] == "secrets" and len(parts) == 6:
            data = self.secrets.get(parts[5])
            if data is None:
                return status(404, "NotFound", "not found")
            return Reply(
                200, {"kind": "Secret", "apiVersion": "v1", "metadata": {"name": parts[5]}, "data": data}
            )
        if parts[:5] == ["api", "v1", "namespaces", NS, "pods"] and parts[-1] == "log":
            return Reply(200, self.logs.get(parts[5], ""), "text/plain")
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
        assert f"replica {uuid} on channel '{DEFAULT_CHANNEL}'" in out
    assert PASSWORD not in out
    assert {method for method, _ in state.requests} == {"GET"}


def test_duplicate_replica_ids_fail(cluster: tuple[Cluster, Path]) -> None:
    state, kubeconfig = cluster
    state.logs["aifactory-2"] = enabled_line(UUIDS[0])
    rc, out = smoke(kubeconfig)
    assert rc == 1 and "cluster-replica-id-duplicate" in out


def test_disabled_line_with_several_replicas_fails(cluster: tuple[Cluster, Path]) -> None:
    state, kubeconfig = cluster
    state.deployments = [deployment(3, redis_secret=None)]
    state.logs = {f"aifactory-{i}": DISABLED_LOG for i in range(3)}
    rc, out = smoke(kubeconfig)
    assert rc == 1
    assert out.count("cluster-redis-disabled") == 3 and "cluster-pod-no-redis-line" in out


def test_single_replica_without_redis_is_fine(cluster: tuple[Cluster, Path]) -> None:
    state, kubeconfig = cluster
    state.deployments = [deployment(1, redis_secret=None)]
    state.logs = {"aifactory-0": DISABLED_LOG}
    assert smoke(kubeconfig)[0] == 0


def test_hpa_max_counts_as_several_replicas(cluster: tuple[Cluster, Path]) -> None:
    state, kubeconfig = cluster
    state.deployments = [deployment(1, redis_secret=None)]
    state.hpas = [
        {
            "metadata": {"name": "aifactory"},
            "spec": {
                "minReplicas": 1,
                "maxReplicas": 5,
                "scaleTargetRef": {"kind": "Deployment", "name": "aifactory"},
            },
            "status": {"currentReplicas": 1, "desiredReplicas": 1},
        }
    ]
    state.logs = {"aifactory-0": DISABLED_LOG}
    rc, out = smoke(kubeconfig)
    assert rc == 1, out
    assert "hpa/aifactory: min 1, max 5, current 1" in out and "cluster-redis-disabled" in out


def test_missing_secret_and_missing_key_fail(cluster: tuple[Cluster, Path]) -> None:
    state, kubeconfig = cluster
    state.secrets = {}
    rc, out = smoke(kubeconfig)
    assert rc == 1 and "cluster-secret-missing" in out
    state.secrets = {"aifactory-redis": {"redis_url": "eA=="}}
    rc, out = smoke(kubeconfig)
    assert rc == 1 and "cluster-secret-key-missing" in out and "keys: redis_url" in out


def test_pod_without_the_enabled_line_and_channel_mismatch_fail(cluster: tuple[Cluster, Path]) -> None:
    state, kubeconfig = cluster
    state.logs["aifactory-1"] = enabled_line(UUIDS[1], "other:events")
    state.logs["aifactory-2"] = "crashed before logging\n"
    rc, out = smoke(kubeconfig)
    assert rc == 1 and "cluster-channel-mismatch" in out and "cluster-pod-no-redis-line" in out


def test_wrong_release_finds_no_deployment(cluster: tuple[Cluster, Path]) -> None:
    state, kubeconfig = cluster
    state.deployments = []
    rc, out = smoke(kubeconfig)
    assert rc == 1 and "cluster-deployment-missing" in out


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
    state.logs["aifactory-2"] = enabled_line(UUIDS[0])
    rc, out = smoke(kubeconfig, "--format", "json")
    doc = json.loads(out)
    assert rc == 1 and doc["valid"] is False
    assert [f["rule"] for f in doc["findings"]] == ["cluster-replica-id-duplicate"]
