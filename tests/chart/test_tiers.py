"""Traffic tiers: one release, one Deployment/Service/HPA/PDB per tier, sharing one auth Secret and one
Redis channel, the Ingress routing paths to tiers; without tiers the release renders as before."""

from __future__ import annotations

from typing import Any

from tests.chart.rendering import by_kind, named, render

SELECTOR = {"app.kubernetes.io/name": "aifactory", "app.kubernetes.io/instance": "aifactory"}


def names(objs: list[dict[str, Any]], kind: str) -> list[str]:
    return sorted(o["metadata"]["name"] for o in by_kind(objs, kind))


def env_of(deployment: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}


def test_without_tiers_the_release_keeps_its_names_and_immutable_selector(helm: str) -> None:
    objs = render(helm, "ingress-nginx-affinity")
    assert names(objs, "Deployment") == ["aifactory"]
    assert names(objs, "Service") == ["aifactory"]
    deployment = named(objs, "Deployment", "aifactory")
    assert deployment["spec"]["selector"]["matchLabels"] == {**SELECTOR, "app.kubernetes.io/component": "web"}
    assert (
        named(objs, "Service", "aifactory")["spec"]["selector"]
        == deployment["spec"]["selector"]["matchLabels"]
    )
    backends = {p["backend"]["service"]["name"] for i in by_kind(objs, "Ingress")
                for r in i["spec"]["rules"] for p in r["http"]["paths"]}  # fmt: skip
    assert backends == {"aifactory"}


def test_each_tier_gets_its_own_deployment_service_and_pdb(helm: str) -> None:
    objs = render(helm, "tiers")
    assert names(objs, "Deployment") == ["aifactory-agents", "aifactory-ui"]
    assert names(objs, "Service") == ["aifactory", "aifactory-agents", "aifactory-ui"]
    assert names(objs, "PodDisruptionBudget") == ["aifactory-agents", "aifactory-ui"]
    ui, agents = named(objs, "Deployment", "aifactory-ui"), named(objs, "Deployment", "aifactory-agents")
    assert ui["spec"]["replicas"] == 2 and agents["spec"]["replicas"] == 3
    res = agents["spec"]["template"]["spec"]["containers"][0]["resources"]
    assert res["requests"] == {"cpu": "500m"}, "a tier's map replaces the top-level one key by key"
    assert res["limits"] == {"cpu": "1", "memory": "512Mi"}
    for deployment, tier in ((ui, "ui"), (agents, "agents")):
        labels = {**SELECTOR, "app.kubernetes.io/component": tier}
        assert deployment["spec"]["selector"]["matchLabels"] == labels
        assert deployment["spec"]["template"]["metadata"]["labels"].items() >= labels.items()
        assert named(objs, "Service", f"aifactory-{tier}")["spec"]["selector"] == labels
        spread = deployment["spec"]["template"]["spec"]["topologySpreadConstraints"][0]
        assert spread["labelSelector"]["matchLabels"] == labels
    # One auth Secret and one Redis channel for every tier: events cross tiers through the bus.
    keys = ("AIFACTORY_AUTH_SECRET", "REDIS_URL", "REDIS_CHANNEL")
    shared = [[e[k].get("valueFrom", e[k].get("value")) for k in keys] for e in (env_of(ui), env_of(agents))]
    assert shared[0] == shared[1]
    assert len(by_kind(objs, "Secret")) == 1
    assert named(objs, "Service", "aifactory")["spec"]["selector"] == SELECTOR, (
        "the release Service spans tiers"
    )


def test_hpa_per_tier_and_replicas_omitted_under_it(helm: str) -> None:
    objs = render(helm, "example:tiers")
    assert names(objs, "HorizontalPodAutoscaler") == ["aifactory-agents"]
    hpa = named(objs, "HorizontalPodAutoscaler", "aifactory-agents")
    assert hpa["spec"]["scaleTargetRef"]["name"] == "aifactory-agents"
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 10)
    agents = named(objs, "Deployment", "aifactory-agents")
    assert "replicas" not in agents["spec"]
    assert named(objs, "Deployment", "aifactory-ui")["spec"]["replicas"] == 3
    pod = agents["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"aifactory.io/pool": "agents"}
    assert pod["terminationGracePeriodSeconds"] == 120
    assert "nodeSelector" not in named(objs, "Deployment", "aifactory-ui")["spec"]["template"]["spec"]


def ingress_routes(objs: list[dict[str, Any]]) -> dict[str, str]:
    return {p["path"]: p["backend"]["service"]["name"] for i in by_kind(objs, "Ingress")
            for r in i["spec"]["rules"] for p in r["http"]["paths"]}  # fmt: skip


def test_ingress_routes_paths_to_tiers(helm: str) -> None:
    assert ingress_routes(render(helm, "example:tiers")) == {
        "/": "aifactory-ui",
        "/api/tasks": "aifactory-agents",
        "/ws/events": "aifactory-ui",
        "/ws/terminal": "aifactory-ui",
        "/metrics": "aifactory-ui",
    }


def test_terminal_path_can_go_to_a_tier_with_traefik_affinity_on_its_service(helm: str) -> None:
    objs = render(helm, "tiers-ingress-traefik")
    assert ingress_routes(objs)["/ws/terminal"] == "aifactory-agents"
    sticky = "traefik.ingress.kubernetes.io/service.sticky.cookie"
    assert named(objs, "Service", "aifactory-agents")["metadata"]["annotations"][sticky] == "true"
