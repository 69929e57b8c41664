"""The chart's `helm test` pod: it renders valid, and its script really proves fan-out (or really fails)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from harness.app_servers import ServerSet, start_servers
from harness.redis_servers import RedisServer
from tests.chart.k8s_schema import K8S_VERSIONS, validation_error
from tests.conftest import CHART, EXAMPLES, run_helm

pytestmark = pytest.mark.timeout(120)


def render(helm_bin: str, *args: str) -> list[dict[str, Any]]:
    result = run_helm(helm_bin, "template", "rel", str(CHART), "--namespace", "aif", *args)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def hook_pod(docs: list[dict[str, Any]]) -> dict[str, Any]:
    pods = [
        d
        for d in docs
        if d["kind"] == "Pod" and d["metadata"].get("annotations", {}).get("helm.sh/hook") == "test"
    ]
    assert len(pods) == 1, "exactly one helm test pod"
    return pods[0]


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def test_hook_pod_renders_valid_and_targets_the_release(helm: str) -> None:
    docs = render(helm, "-f", str(EXAMPLES / "production.yaml"))
    pod = hook_pod(docs)
    for version in K8S_VERSIONS:
        assert validation_error(pod, version) is None
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert not selector.items() <= pod["metadata"]["labels"].items(), (
        "the Service must not route to the test pod"
    )
    container = pod["spec"]["containers"][0]
    server = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == server["image"], "the test runs the server image itself"
    env = env_of(container)
    assert env["AIFACTORY_AUTH_SECRET"] == env_of(server)["AIFACTORY_AUTH_SECRET"]
    service = next(d for d in docs if d["kind"] == "Service")
    assert (
        env["AIFACTORY_URLS"] == f"http://{service['metadata']['name']}:{service['spec']['ports'][0]['port']}"
    )
    assert env["EXPECTED_REPLICAS"] == "3"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True


def test_hook_expects_the_hpa_minimum_under_autoscaling(helm4: str) -> None:
    pod = hook_pod(render(helm4, "--set", "autoscaling.enabled=true", "--set", "autoscaling.minReplicas=2"))
    assert env_of(pod["spec"]["containers"][0])["EXPECTED_REPLICAS"] == "2"


def run_hook_script(helm4: str, servers: ServerSet, **extra: str) -> subprocess.CompletedProcess[str]:
    """Run the rendered pod's script here, as the pod would, against real local replicas."""
    container = hook_pod(render(helm4, "-f", str(EXAMPLES / "production.yaml")))["spec"]["containers"][0]
    assert container["command"] == ["python", "-c"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIFACTORY_")}
    env.update(
        AIFACTORY_URLS=",".join(s.http for s in servers),
        EXPECTED_REPLICAS=str(len(servers)),
        AIFACTORY_AUTH_SECRET=servers.secret,
        PYTHONPATH=str(CHART.parent),
        **extra,
    )
    return subprocess.run(
        [sys.executable, "-c", container["args"][0]], env=env, capture_output=True, text=True, timeout=90
    )


@pytest.fixture(scope="module")
def bridged(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerSet]:
    with RedisServer() as redis:
        servers = start_servers(3, redis_url=redis.url, workdir=tmp_path_factory.mktemp("hook"))
        try:
            servers.wait_bridge("connected")
            yield servers
        finally:
            servers.stop()


def test_hook_script_passes_when_events_fan_out(helm4: str, bridged: ServerSet) -> None:
    result = run_hook_script(helm4, bridged)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("received it") == 3
    assert "PASS: fan-out reached all 3 replicas" in result.stdout


def test_hook_script_fails_when_replicas_run_without_redis(
    helm4: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    servers = start_servers(3, workdir=tmp_path_factory.mktemp("nohook"))
    try:
        result = run_hook_script(helm4, servers, FANOUT_TIMEOUT="3")
    finally:
        servers.stop()
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stdout.count("did not receive it") == 2, "only the replica that fired it saw the event"
