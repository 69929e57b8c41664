"""The values operators bring from bitnami/grafana charts, spelled the same way, rendered by Helm 3 and 4.

Every case here also runs through the strict Kubernetes 1.30/1.37 schema check (test_kubernetes_schemas)."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from tests.chart.cases import NAMESPACE, RELEASE
from tests.chart.rendering import by_kind, container, one, pod_spec, render
from tests.conftest import CHART, run_helm

RESTRICTED_POD = {
    "runAsNonRoot": True,
    "runAsUser": 10001,
    "runAsGroup": 10001,
    "fsGroup": 10001,
    "seccompProfile": {"type": "RuntimeDefault"},
}


def test_defaults_carry_measured_requests_and_limits(helm: str) -> None:
    assert container(render(helm, "defaults"))["resources"] == {
        "requests": {"cpu": "100m", "memory": "128Mi"},
        "limits": {"cpu": "1", "memory": "512Mi"},
    }


def test_hpa_with_only_autoscaling_enabled_renders_a_working_hpa(helm: str) -> None:
    objs = render(helm, "hpa-chart-defaults")
    hpa = one(objs, "HorizontalPodAutoscaler")
    assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"
    assert container(objs)["resources"]["requests"]["cpu"] == "100m"
    assert "replicas" not in one(objs, "Deployment")["spec"]


def test_defaults_are_the_restricted_profile(helm: str) -> None:
    objs = render(helm, "defaults")
    assert pod_spec(objs)["securityContext"] == RESTRICTED_POD
    ctx = container(objs)["securityContext"]
    assert ctx["readOnlyRootFilesystem"] is True and ctx["allowPrivilegeEscalation"] is False
    assert ctx["capabilities"] == {"drop": ["ALL"]}
    assert pod_spec(objs)["terminationGracePeriodSeconds"] == 30
    for absent in ("priorityClassName", "runtimeClassName", "initContainers"):
        assert absent not in pod_spec(objs)
    assert [c["name"] for c in pod_spec(objs)["containers"]] == ["server"]
    assert not by_kind(objs, "NetworkPolicy") and not by_kind(objs, "ServiceMonitor")


def test_openshift_mode_leaves_uids_to_the_platform(helm: str) -> None:
    objs = render(helm, "openshift-force")
    pod = pod_spec(objs)["securityContext"]
    assert pod == {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
    assert "runAsUser" not in container(objs)["securityContext"]
    assert container(objs)["securityContext"]["runAsNonRoot"] is True
    test_pod = one(objs, "Pod")["spec"]["securityContext"]
    assert test_pod == {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}, "helm test too"


def test_openshift_auto_mode_detects_the_openshift_api(helm: str) -> None:
    """`auto` (the default) adapts only where security.openshift.io/v1 is served."""
    only = ("--show-only", "templates/deployment.yaml")
    proc = run_helm(
        helm, "template", RELEASE, str(CHART), "--api-versions", "security.openshift.io/v1", *only
    )
    assert proc.returncode == 0, proc.stderr
    assert "runAsUser" not in proc.stdout and "fsGroup" not in proc.stdout
    assert "runAsUser: 10001" in run_helm(helm, "template", RELEASE, str(CHART)).stdout


def test_operator_conventions_example_renders_every_convention(helm: str) -> None:
    objs = render(helm, "example:operator-conventions")
    pod, server = pod_spec(objs), container(objs)
    for obj in objs:
        if obj["kind"] == "Pod":  # the helm test hook keeps its own labels
            continue
        assert obj["metadata"]["labels"]["team"] == "platform", obj["kind"]
        assert obj["metadata"]["annotations"]["owner"] == "platform@example.com", obj["kind"]
    assert pod["runtimeClassName"] == "gvisor"
    assert pod["priorityClassName"] == "aifactory-web"
    assert pod["terminationGracePeriodSeconds"] == 45
    assert server["lifecycle"] == {"preStop": {"sleep": {"seconds": 5}}}
    assert server["envFrom"] == [{"configMapRef": {"name": "aifactory-extra-env"}}]
    assert {"name": "ca-bundle", "mountPath": "/etc/ssl/corporate", "readOnly": True} in server[
        "volumeMounts"
    ]
    assert {"name": "tmp", "mountPath": "/tmp"} in server["volumeMounts"], "the chart's own mount stays"
    assert [v["name"] for v in pod["volumes"]] == ["tmp", "ca-bundle"]
    assert [c["name"] for c in pod["initContainers"]] == ["wait-for-redis"]
    assert [c["name"] for c in pod["containers"]] == ["server", "log-shipper"]
    assert pod["topologySpreadConstraints"][0]["whenUnsatisfiable"] == "DoNotSchedule"
    assert len(pod["topologySpreadConstraints"]) == 1, "explicit constraints replace the soft default"
    assert server["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    deployment = one(objs, "Deployment")
    assert deployment["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}
    service = one(objs, "Service")
    assert (
        service["metadata"]["annotations"]["service.beta.kubernetes.io/aws-load-balancer-internal"] == "true"
    )


def test_probe_overrides(helm: str) -> None:
    server = container(render(helm, "probes-custom"))
    assert server["livenessProbe"] == {"tcpSocket": {"port": "http"}}
    assert "readinessProbe" not in server
    assert server["startupProbe"]["failureThreshold"] == 30
    default = container(render(helm, "defaults"))
    assert default["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert default["readinessProbe"] == {
        "httpGet": {"path": "/readyz", "port": "http"},
        "periodSeconds": 5,
        "timeoutSeconds": 3,
        "failureThreshold": 3,
    }


def test_service_monitor_scrapes_metrics_of_the_release_service(helm: str) -> None:
    objs = render(helm, "example:operator-conventions")
    monitor = one(objs, "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert monitor["spec"]["endpoints"] == [
        {"port": "http", "path": "/metrics", "interval": "30s", "honorLabels": False}
    ]
    service = one(objs, "Service")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}


def _policy(objs: list[dict[str, Any]]) -> dict[str, Any]:
    return one(objs, "NetworkPolicy")["spec"]


def test_network_policy_allows_only_ingress_controller_prometheus_redis_and_dns(helm: str) -> None:
    spec = _policy(render(helm, "network-policy-redis-peers"))
    assert spec["policyTypes"] == ["Ingress", "Egress"]
    assert spec["podSelector"]["matchLabels"] == {
        "app.kubernetes.io/name": "aifactory",
        "app.kubernetes.io/instance": RELEASE,
    }
    (rule,) = spec["ingress"]
    assert rule["ports"] == [{"port": "http", "protocol": "TCP"}]
    sources = rule["from"]
    assert sources[0]["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "ingress-nginx"}
    assert sources[0]["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "ingress-nginx"}
    assert sources[1]["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "monitoring"}
    assert sources[1]["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "prometheus"}
    assert sources[2]["podSelector"]["matchLabels"]["app.kubernetes.io/name"] == "aifactory-test"
    dns, redis = spec["egress"]
    assert {p["port"] for p in dns["ports"]} == {53}
    assert redis == {
        "ports": [{"port": 6379, "protocol": "TCP"}],
        "to": [{"podSelector": {"matchLabels": {"app": "redis"}}}],
    }


def test_network_policy_without_redis_allows_dns_only(helm: str) -> None:
    proc = run_helm(helm, "template", RELEASE, str(CHART), "--set", "networkPolicy.enabled=true",
                    "--show-only", "templates/networkpolicy.yaml")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "6379" not in proc.stdout and "port: 53" in proc.stdout


@pytest.mark.parametrize("key", ["commonLabels", "podSecurityContext", "tiers", "networkPolicy"])
def test_schema_refuses_wrong_types_for_the_new_values(helm: str, key: str) -> None:
    proc = run_helm(helm, "template", RELEASE, str(CHART), "--set", f"{key}=notamap")
    assert proc.returncode != 0
    assert "values don't meet the specifications of the schema" in proc.stderr


def test_chart_labels_win_over_common_labels(helm: str) -> None:
    evil = "commonLabels.app\\.kubernetes\\.io/component=evil"
    proc = run_helm(
        helm, "template", RELEASE, str(CHART), "--set-string", evil, "-s", "templates/deployment.yaml"
    )
    assert proc.returncode == 0, proc.stderr
    assert "evil" not in proc.stdout


@pytest.mark.parametrize("values", ["examples/hpa.yaml", "autoscaling-only"])
def test_validator_accepts_the_documented_hpa_path(values: str, tmp_path) -> None:
    """README's `autoscaling.enabled: true` passes aifactory-validate with the chart's default requests."""
    import subprocess
    import sys

    from tests.conftest import ROOT

    path = ROOT / values
    if values == "autoscaling-only":
        path = tmp_path / "values.yaml"
        path.write_text("autoscaling:\n  enabled: true\n", encoding="utf-8")
    proc = subprocess.run([sys.executable, "-m", "validator", str(path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "hpa-target-without-requests" not in proc.stdout


def test_metrics_are_refused_at_the_ingress_unless_opted_out(helm: str) -> None:
    """/metrics shares the http port: by default the Ingress answers it with 403 (ingress-nginx denylist)."""
    only = ("--set", "ingress.enabled=true", "-s", "templates/ingress.yaml")
    proc = run_helm(helm, "template", RELEASE, str(CHART), *only)
    assert proc.returncode == 0, proc.stderr
    (metrics,) = [
        d for d in yaml.safe_load_all(proc.stdout) if d and d["metadata"]["name"].endswith("-metrics")
    ]
    assert metrics["metadata"]["annotations"] == {
        "nginx.ingress.kubernetes.io/denylist-source-range": "0.0.0.0/0,::/0"
    }
    (path,) = metrics["spec"]["rules"][0]["http"]["paths"]
    assert (path["path"], path["pathType"]) == ("/metrics", "Exact")
    opted_out = run_helm(helm, "template", RELEASE, str(CHART), "--set", "ingress.blockMetrics=false", *only)
    assert "/metrics" not in opted_out.stdout
