"""What the chart renders for each values case, asserted on the parsed objects, on Helm 3 and Helm 4."""

from __future__ import annotations

import base64

import pytest
import yaml

from aifactory.constants import DEFAULT_CHANNEL, EVENTS_PATH, TERMINAL_PATH, VERSION
from tests.chart.cases import CASES, INLINE_URL
from tests.chart.rendering import (
    StrictLoader,
    by_kind,
    container,
    env,
    is_terminal_host,
    named,
    one,
    pod_spec,
    render,
)

MANAGED_ENV = {
    "PORT",
    "LOG_LEVEL",
    "REDIS_URL",
    "REDIS_CHANNEL",
    "AIFACTORY_AUTH_SECRET",
    "AIFACTORY_HISTORY_SIZE",
    "AIFACTORY_HISTORY_TTL",
}


def secret_ref(var: dict) -> tuple[str, str]:
    assert "value" not in var, f"{var['name']} must come from a Secret, never a plain value"
    ref = var["valueFrom"]["secretKeyRef"]
    return ref["name"], ref["key"]


# ---------------------------------------------------------------- invariants of every good render


PROBES_OVERRIDDEN = {"probes-custom"}  # test_conventions checks what that case renders instead


@pytest.mark.parametrize("case", sorted(CASES))
def test_restricted_pod_security_and_probes(helm: str, case: str) -> None:
    objs = render(helm, case)
    for deployment in by_kind(objs, "Deployment"):
        spec = deployment["spec"]["template"]["spec"]
        ctr = spec["containers"][0]
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        sc = ctr["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["readOnlyRootFilesystem"] is True
        assert sc["capabilities"] == {"drop": ["ALL"]}
        assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
        assert {"name": "tmp", "mountPath": "/tmp"} in ctr["volumeMounts"]
        assert {"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}} in spec["volumes"]
        assert ctr["ports"] == [{"name": "http", "containerPort": 8000, "protocol": "TCP"}]
        if case not in PROBES_OVERRIDDEN:
            assert ctr["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
            assert ctr["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
        assert {e["name"]: e for e in ctr["env"]}["PORT"]["value"] == "8000"


@pytest.mark.parametrize("case", sorted(CASES))
def test_env_secrets_and_redis_pairing(helm: str, case: str) -> None:
    objs = render(helm, case)
    secrets = {s["metadata"]["name"]: s for s in by_kind(objs, "Secret")}
    for deployment in by_kind(objs, "Deployment"):
        ctr = deployment["spec"]["template"]["spec"]["containers"][0]
        variables = {e["name"]: e for e in ctr["env"]}
        assert ("REDIS_URL" in variables) == ("REDIS_CHANNEL" in variables), (
            "REDIS_URL and REDIS_CHANNEL go together"
        )
        for name in ("REDIS_URL", "AIFACTORY_AUTH_SECRET"):
            if name in variables:
                secret_name, key = secret_ref(variables[name])
                assert key == name
                if secret_name in secrets:  # chart-managed: the referenced key really exists
                    assert key in secrets[secret_name]["data"]
        names = [e["name"] for e in ctr["env"]]
        assert len(names) == len(set(names)), f"duplicate env names {names}"


@pytest.mark.parametrize("case", sorted(CASES))
def test_replicas_hpa_and_pdb_agree(helm: str, case: str) -> None:
    """Per Deployment (one, or one per tier): its HPA, PDB and Service select exactly its pods."""
    objs = render(helm, case)
    for deployment in by_kind(objs, "Deployment"):
        name = deployment["metadata"]["name"]
        hpas = [
            h for h in by_kind(objs, "HorizontalPodAutoscaler") if h["spec"]["scaleTargetRef"]["name"] == name
        ]
        if hpas:
            assert "replicas" not in deployment["spec"], "the HPA owns the replica count"
            assert hpas[0]["apiVersion"] == "autoscaling/v2"
            minimum = hpas[0]["spec"]["minReplicas"]
        else:
            minimum = deployment["spec"]["replicas"]
        selector = deployment["spec"]["selector"]["matchLabels"]
        pdbs = [
            p
            for p in by_kind(objs, "PodDisruptionBudget")
            if p["spec"]["selector"]["matchLabels"] == selector
        ]
        assert bool(pdbs) == (minimum > 1), f"{name}: PDB present={bool(pdbs)} with min replicas {minimum}"
        pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert selector.items() <= pod_labels.items()
        assert named(objs, "Service", name)["spec"]["selector"] == selector
    assert len(by_kind(objs, "PodDisruptionBudget")) <= len(by_kind(objs, "Deployment"))


@pytest.mark.parametrize("case", sorted(CASES))
def test_ingress_routes_every_path_once_per_host(helm: str, case: str) -> None:
    objs = render(helm, case)
    ingresses = by_kind(objs, "Ingress")
    services = {s["metadata"]["name"] for s in by_kind(objs, "Service")}
    extra = sorted({r["path"] for r in (render_values_routes(case))} - {"/", EVENTS_PATH, TERMINAL_PATH})
    routes: dict[str, list[str]] = {}
    for ing in ingresses:
        assert ing["apiVersion"] == "networking.k8s.io/v1"
        for rule in ing["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                # /metrics is the one Exact path: ingress.blockMetrics refuses it at the controller.
                assert path["pathType"] == ("Exact" if path["path"] == "/metrics" else "Prefix")
                assert path["backend"]["service"]["port"] == {"name": "http"}
                assert path["backend"]["service"]["name"] in services
                routes.setdefault(rule["host"], []).append(path["path"])
    for host, paths in routes.items():
        assert sorted(paths) == sorted(["/", EVENTS_PATH, TERMINAL_PATH, "/metrics", *extra]), (
            f"{host}: {paths}"
        )


def render_values_routes(case: str) -> list[dict[str, str]]:
    """The tierRoutes a case sets (from its -f file or --set tierRoutes[i].path=...)."""
    args = CASES[case]
    if args[:1] == ["-f"]:
        return (yaml.safe_load(open(args[1], encoding="utf-8")) or {}).get("tierRoutes") or []
    return [{"path": a.split("=", 1)[1]} for a in args if a.startswith("tierRoutes[") and ".path=" in a]


def test_renders_are_parsed_with_duplicate_keys_refused() -> None:
    """Every render above goes through this loader, so a duplicated annotation key fails the matrix."""
    with pytest.raises(yaml.constructor.ConstructorError, match="duplicate keys"):
        yaml.load("metadata:\n  annotations:\n    a: '1'\n    a: '2'\n", Loader=StrictLoader)


# ---------------------------------------------------------------- specific cases


def test_defaults_are_a_single_replica_without_redis(helm: str) -> None:
    objs = render(helm, "defaults")
    assert one(objs, "Deployment")["spec"]["replicas"] == 1
    assert set(env(objs)) == {
        "PORT",
        "LOG_LEVEL",
        "AIFACTORY_AUTH_SECRET",
        "AIFACTORY_HISTORY_SIZE",
        "AIFACTORY_HISTORY_TTL",
    }
    assert env(objs)["LOG_LEVEL"]["value"] == "INFO"
    # recovery on by default: the chart's history values reach the server
    assert (env(objs)["AIFACTORY_HISTORY_SIZE"]["value"], env(objs)["AIFACTORY_HISTORY_TTL"]["value"]) == (
        "10000",
        "300",
    )
    assert container(objs)["image"] == f"ghcr.io/aifactory/aifactory-server:{VERSION}"
    kinds = sorted(o["kind"] for o in objs if "helm.sh/hook" not in (o["metadata"].get("annotations") or {}))
    assert kinds == ["Deployment", "Secret", "Service", "ServiceAccount"]
    assert one(objs, "ServiceAccount")["automountServiceAccountToken"] is False
    spread = pod_spec(objs)["topologySpreadConstraints"][0]
    assert spread["whenUnsatisfiable"] == "ScheduleAnyway"
    assert spread["topologyKey"] == "kubernetes.io/hostname"
    assert "annotations" not in one(objs, "Deployment")["metadata"], "no Reloader annotation unless opted in"


def test_generated_auth_secret_is_random_and_strong(helm: str) -> None:
    objs = render(helm, "defaults")
    secret = named(objs, "Secret", "aifactory-auth")
    key = base64.b64decode(secret["data"]["AIFACTORY_AUTH_SECRET"]).decode()
    assert len(key) == 64 and key.isalnum()
    assert secret_ref(env(objs)["AIFACTORY_AUTH_SECRET"]) == ("aifactory-auth", "AIFACTORY_AUTH_SECRET")


def test_external_secret_feeds_redis_url(helm: str) -> None:
    objs = render(helm, "external-secret")
    variables = env(objs)
    assert secret_ref(variables["REDIS_URL"]) == ("aifactory-redis", "REDIS_URL")
    assert variables["REDIS_CHANNEL"]["value"] == DEFAULT_CHANNEL
    assert [s["metadata"]["name"] for s in by_kind(objs, "Secret")] == ["aifactory-auth"], (
        "no chart Redis Secret"
    )
    annotations = one(objs, "Deployment")["spec"]["template"]["metadata"].get("annotations") or {}
    assert "checksum/redis-secret" not in annotations


def test_inline_url_goes_through_a_chart_managed_secret(helm: str) -> None:
    objs = render(helm, "inline-url")
    secret = named(objs, "Secret", "aifactory-redis")
    assert base64.b64decode(secret["data"]["REDIS_URL"]).decode() == INLINE_URL
    assert secret_ref(env(objs)["REDIS_URL"]) == ("aifactory-redis", "REDIS_URL")
    assert "s3cr3t-pw" not in str(one(objs, "Deployment")), "the password must not appear in the pod spec"


def test_changed_inline_url_rolls_the_pods(helm: str) -> None:
    def checksum(case: str) -> str:
        return one(render(helm, case), "Deployment")["spec"]["template"]["metadata"]["annotations"][
            "checksum/redis-secret"
        ]

    assert checksum("inline-url") != checksum("inline-url-changed")
    assert checksum("inline-url") == checksum("inline-url-other-channel"), "checksum tracks the URL only"


def test_channel_override(helm: str) -> None:
    assert env(render(helm, "channel-override"))["REDIS_CHANNEL"]["value"] == "team-b:events"


def test_redis_disabled_sets_neither_variable_even_with_a_source(helm: str) -> None:
    objs = render(helm, "redis-disabled-keeps-source")
    assert not {"REDIS_URL", "REDIS_CHANNEL"} & set(env(objs))
    assert one(objs, "Deployment")["spec"]["replicas"] == 2


def test_hpa(helm: str) -> None:
    objs = render(helm, "hpa")
    hpa = one(objs, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "aifactory",
    }
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 10)
    assert hpa["spec"]["metrics"] == [
        {
            "type": "Resource",
            "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}},
        }
    ]
    assert one(objs, "PodDisruptionBudget")["spec"]["maxUnavailable"] == 1


def test_hpa_null_cpu_target_leaves_memory_only(helm: str) -> None:
    hpa = one(render(helm, "hpa-memory-only"), "HorizontalPodAutoscaler")
    assert [m["resource"]["name"] for m in hpa["spec"]["metrics"]] == ["memory"]
    assert hpa["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"] == 75
    assert not by_kind(render(helm, "hpa-memory-only"), "PodDisruptionBudget"), "HPA min 1: no PDB"


def test_ingress_without_affinity_has_no_cookie(helm: str) -> None:
    objs = render(helm, "ingress-no-affinity")
    names = sorted(i["metadata"]["name"] for i in by_kind(objs, "Ingress"))
    assert names == ["aifactory", "aifactory-metrics", "aifactory-ws"]
    for ing in by_kind(objs, "Ingress"):
        annotations = ing["metadata"].get("annotations") or {}
        assert "nginx.ingress.kubernetes.io/affinity" not in annotations
    ws = named(objs, "Ingress", "aifactory-ws")["metadata"]["annotations"]
    assert ws["nginx.ingress.kubernetes.io/proxy-read-timeout"] == "3600"
    assert ws["nginx.ingress.kubernetes.io/proxy-send-timeout"] == "3600"
    assert "annotations" not in one(objs, "Service")["metadata"]


def test_nginx_terminal_affinity_is_scoped_to_the_terminal_ingress(helm: str) -> None:
    objs = render(helm, "ingress-nginx-affinity")
    terminal = named(objs, "Ingress", "aifactory-terminal")
    assert [p["path"] for p in terminal["spec"]["rules"][0]["http"]["paths"]] == [TERMINAL_PATH]
    a = terminal["metadata"]["annotations"]
    assert a["nginx.ingress.kubernetes.io/affinity"] == "cookie"
    assert a["nginx.ingress.kubernetes.io/affinity-mode"] == "balanced"
    assert a["nginx.ingress.kubernetes.io/session-cookie-name"] == "aifactory-affinity"
    assert a["nginx.ingress.kubernetes.io/session-cookie-path"] == TERMINAL_PATH
    assert a["nginx.ingress.kubernetes.io/session-cookie-secure"] == "true"
    assert a["nginx.ingress.kubernetes.io/proxy-read-timeout"] == "7200"
    for other in ("aifactory", "aifactory-ws"):
        annotations = named(objs, "Ingress", other)["metadata"].get("annotations") or {}
        assert "nginx.ingress.kubernetes.io/affinity" not in annotations, f"{other} must stay unpinned"
    for ing in by_kind(objs, "Ingress"):
        assert ing["spec"]["ingressClassName"] == "nginx"
        assert ing["spec"]["tls"] == [{"hosts": ["aifactory.example.com"], "secretName": "aifactory-tls"}]


def test_traefik_terminal_affinity_lives_on_the_service(helm: str) -> None:
    objs = render(helm, "ingress-traefik-affinity")
    a = one(objs, "Service")["metadata"]["annotations"]
    assert a["team"] == "web", "user Service annotations are kept"
    assert a["traefik.ingress.kubernetes.io/service.sticky.cookie"] == "true"
    assert a["traefik.ingress.kubernetes.io/service.sticky.cookie.name"] == "pin"
    assert a["traefik.ingress.kubernetes.io/service.sticky.cookie.path"] == TERMINAL_PATH
    assert a["traefik.ingress.kubernetes.io/service.sticky.cookie.httponly"] == "true"
    assert a["traefik.ingress.kubernetes.io/service.sticky.cookie.samesite"] == "strict", "user value wins"
    assert a["traefik.ingress.kubernetes.io/service.sticky.cookie.secure"] == "false", "no TLS configured"
    names = sorted(i["metadata"]["name"] for i in by_kind(objs, "Ingress"))
    assert names == ["aifactory", "aifactory-metrics", "aifactory-ws"], "traefik needs no terminal Ingress"


def test_user_annotations_override_generated_ones_but_not_selector_labels(helm: str) -> None:
    objs = render(helm, "user-annotations-override")
    for name in ("aifactory", "aifactory-ws", "aifactory-terminal"):
        annotations = named(objs, "Ingress", name)["metadata"]["annotations"]
        assert annotations["nginx.ingress.kubernetes.io/proxy-read-timeout"] == "120"
    terminal = named(objs, "Ingress", "aifactory-terminal")["metadata"]["annotations"]
    assert terminal["nginx.ingress.kubernetes.io/proxy-send-timeout"] == "3600"
    assert terminal["nginx.ingress.kubernetes.io/affinity"] == "cookie"
    template = one(objs, "Deployment")["spec"]["template"]["metadata"]
    assert template["labels"]["app.kubernetes.io/name"] == "aifactory", "selector labels cannot be overridden"
    assert template["labels"]["team"] == "web"
    assert template["annotations"] == {"prometheus.io/scrape": "true"}


def test_existing_auth_secret_and_reloader(helm: str) -> None:
    objs = render(helm, "existing-auth-reloader")
    assert secret_ref(env(objs)["AIFACTORY_AUTH_SECRET"]) == ("my-auth", "AIFACTORY_AUTH_SECRET")
    assert not by_kind(objs, "Secret"), "nothing for the chart to generate"
    reload = one(objs, "Deployment")["metadata"]["annotations"]["secret.reloader.stakater.com/reload"]
    assert reload.split(",") == ["aifactory-redis", "my-auth"]


def test_null_deletes_fall_back_to_documented_defaults(helm: str) -> None:
    objs = render(helm, "null-deletions")
    variables = env(objs)
    assert secret_ref(variables["REDIS_URL"]) == ("aifactory-redis", "REDIS_URL")
    assert variables["REDIS_CHANNEL"]["value"] == DEFAULT_CHANNEL
    assert container(objs)["image"].endswith(f":{VERSION}")
    assert "resources" not in container(objs)
    assert pod_spec(objs)["topologySpreadConstraints"][0]["topologyKey"] == "kubernetes.io/hostname"
    terminal = named(objs, "Ingress", "aifactory-terminal")
    assert terminal["metadata"]["annotations"]["nginx.ingress.kubernetes.io/session-cookie-name"] == (
        "aifactory-affinity"
    )
    assert "ingressClassName" not in terminal["spec"]
    assert named(objs, "Secret", "aifactory-auth")


def test_extra_env_percentage_pdb_and_overrides(helm: str) -> None:
    objs = render(helm, "extra-env-pdb-percent")
    assert env(objs)["FEATURE_X"] == {"name": "FEATURE_X", "value": "1"}
    assert one(objs, "PodDisruptionBudget")["spec"]["maxUnavailable"] == "25%"
    assert "topologySpreadConstraints" not in pod_spec(objs)
    assert not by_kind(objs, "ServiceAccount")
    assert pod_spec(objs)["serviceAccountName"] == "default"
    assert one(objs, "Deployment")["metadata"]["name"] == "af"
    assert MANAGED_ENV - {"REDIS_URL", "REDIS_CHANNEL"} <= set(env(objs))


def test_production_example(helm: str) -> None:
    objs = render(helm, "example:production")
    assert one(objs, "Deployment")["spec"]["replicas"] == 3
    assert secret_ref(env(objs)["REDIS_URL"]) == ("aifactory-redis", "REDIS_URL")
    assert container(objs)["resources"]["requests"] == {"cpu": "250m", "memory": "256Mi"}
    assert named(objs, "Ingress", "aifactory-terminal")
    assert one(objs, "PodDisruptionBudget")
    reload = one(objs, "Deployment")["metadata"]["annotations"]["secret.reloader.stakater.com/reload"]
    assert "aifactory-redis" in reload.split(",")


def test_hpa_example_scales_to_ten_with_requests(helm: str) -> None:
    objs = render(helm, "example:hpa")
    hpa = one(objs, "HorizontalPodAutoscaler")
    assert hpa["spec"]["maxReplicas"] == 10
    assert "cpu" in container(objs)["resources"]["requests"]
    assert "replicas" not in one(objs, "Deployment")["spec"]
    assert hpa["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 300


def test_second_deployment_example_has_its_own_channel(helm: str) -> None:
    objs = render(helm, "example:shared-redis-second-deployment")
    channel = env(objs)["REDIS_CHANNEL"]["value"]
    assert channel != DEFAULT_CHANNEL
    assert channel == "aifactory-staging:events"


def test_dev_inline_example_uses_the_managed_secret(helm: str) -> None:
    objs = render(helm, "example:dev-inline-url")
    assert secret_ref(env(objs)["REDIS_URL"]) == ("aifactory-redis", "REDIS_URL")
    assert named(objs, "Secret", "aifactory-redis")


def test_laptop_example_equals_defaults(helm: str) -> None:
    def shape(case: str) -> list:
        objs = [o for o in render(helm, case) if o["kind"] != "Secret"]  # the auth key is random per render
        return sorted((o["kind"], str(o)) for o in objs)

    assert shape("example:laptop") == shape("defaults")


def test_terminal_host_mode_renders_the_host_tier(helm: str) -> None:
    """terminals.mode=host: web pods relay (AIFACTORY_TERMINALS=host); host Deployment + headless Service."""
    objs = render(helm, "terminals-host")
    assert env(objs)["AIFACTORY_TERMINALS"]["value"] == "host"
    host = named(objs, "Deployment", "aifactory-terminal-host")
    spec = host["spec"]["template"]["spec"]
    assert spec["runtimeClassName"] == "gvisor"
    assert spec["automountServiceAccountToken"] is False
    ctr = spec["containers"][0]
    assert ctr["args"] == ["aifactory-server", "terminal-host"]
    assert ctr["securityContext"]["readOnlyRootFilesystem"] is True
    assert ctr["resources"] == {"requests": {"memory": "256Mi"}}
    variables = {e["name"]: e for e in ctr["env"]}
    assert variables["AIFACTORY_TERMINAL_HOST_ADDRESS"]["value"] == "$(POD_IP):8000"
    assert secret_ref(variables["REDIS_URL"]) == ("aifactory-redis", "REDIS_URL")
    assert "AIFACTORY_TERMINALS" not in variables
    assert "AIFACTORY_TERMINAL_SANDBOX" not in variables  # host shells sandboxed (the server's default)
    labels = host["spec"]["selector"]["matchLabels"]
    assert labels["app.kubernetes.io/component"] == "terminal-host"
    svc = named(objs, "Service", "aifactory-terminal-host")
    assert svc["spec"]["clusterIP"] == "None" and svc["spec"]["selector"] == labels
    assert one(objs, "Deployment")["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"] == "web"


def test_terminal_sandbox_off_reaches_the_host_pods_too(helm: str) -> None:
    """server.terminalSandbox=off is one switch for every shell, wherever it runs."""
    objs = render(helm, "terminals-host-sandbox-off")
    ctr = named(objs, "Deployment", "aifactory-terminal-host")["spec"]["template"]["spec"]["containers"][0]
    assert {e["name"]: e for e in ctr["env"]}["AIFACTORY_TERMINAL_SANDBOX"]["value"] == "off"
    assert env(objs)["AIFACTORY_TERMINAL_SANDBOX"]["value"] == "off"


def test_local_terminals_render_no_host_tier(helm: str) -> None:
    objs = render(helm, "defaults")
    assert not [o for o in objs if is_terminal_host(o)]
    assert "AIFACTORY_TERMINALS" not in env(objs)
