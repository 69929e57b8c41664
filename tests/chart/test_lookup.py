"""The auth Secret's `lookup` branch against a (fake) cluster, with real helm 3 and 4: an upgrade must keep
the signing key already in the cluster (or every user is logged out), a first install must generate one.

`helm template --dry-run=server` is the documented way to let `lookup` reach the cluster (plain `template`
never connects, so lookup returns nothing). Helm 4 also maps every rendered kind through discovery and
GETs each object to check it may adopt it, so the fake serves discovery and marks the planted Secret as
owned by the release; `--disable-openapi-validation` spares it serving the OpenAPI documents."""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.kube_api import FakeKubeAPI, Reply, status
from tests.chart.cases import NAMESPACE, RELEASE
from tests.conftest import CHART, run_helm

AUTH_SECRET = f"{RELEASE}-auth"
KEY = "AIFACTORY_AUTH_SECRET"
PLANTED = base64.b64encode(b"signing-key-from-the-first-install-0123456789abcdefghijklmnopqrst").decode()
HELM_OWNED = {
    "labels": {"app.kubernetes.io/managed-by": "Helm"},
    "annotations": {"meta.helm.sh/release-name": RELEASE, "meta.helm.sh/release-namespace": NAMESPACE},
}


class Cluster:
    """Secrets in the fake cluster's release namespace, by name, served to helm's lookup."""

    def __init__(self) -> None:
        self.secrets: dict[str, dict[str, Any]] = {}

    def plant(self, name: str, data: dict[str, str], helm_owned: bool = True) -> None:
        metadata = {"name": name, "namespace": NAMESPACE, **(HELM_OWNED if helm_owned else {})}
        self.secrets[name] = {"apiVersion": "v1", "kind": "Secret", "metadata": metadata, "data": data}

    def route(self, path: str, query: dict[str, list[str]]) -> Reply | None:
        prefix = f"/api/v1/namespaces/{NAMESPACE}/secrets/"
        if not path.startswith(prefix):
            return None
        name = path.removeprefix(prefix)
        if name in self.secrets:
            return Reply(200, self.secrets[name])
        return status(404, "NotFound", f'secrets "{name}" not found')


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[Cluster, FakeKubeAPI, dict[str, str]]]:
    state = Cluster()
    with FakeKubeAPI(state.route, with_discovery=True) as api:
        env = {"KUBECONFIG": str(api.write_kubeconfig(tmp_path / "kubeconfig", NAMESPACE))}
        yield state, api, env


def render(helm: str, env: dict[str, str], *args: str) -> list[dict[str, Any]]:
    proc = run_helm(
        helm,
        "template",
        RELEASE,
        str(CHART),
        "--namespace",
        NAMESPACE,
        "--dry-run=server",
        "--disable-openapi-validation",
        *args,
        env=env,
    )
    assert proc.returncode == 0, f"{Path(helm).parent.name} failed:\n{proc.stderr}"
    return [doc for doc in yaml.safe_load_all(proc.stdout) if doc]


def secrets(objs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in objs if o["kind"] == "Secret"}


def auth_value(objs: list[dict[str, Any]]) -> str:
    return secrets(objs)[AUTH_SECRET]["data"][KEY]


def looked_up(api: FakeKubeAPI, name: str) -> bool:
    return ("GET", f"/api/v1/namespaces/{NAMESPACE}/secrets/{name}") in api.requests


def assert_fresh(value: str) -> None:
    assert value != PLANTED
    assert re.fullmatch(r"[A-Za-z0-9]{64}", base64.b64decode(value).decode()), "not randAlphaNum 64"


def test_upgrade_reuses_the_signing_key_already_in_the_cluster(
    helm: str, cluster: tuple[Cluster, FakeKubeAPI, dict[str, str]]
) -> None:
    state, api, env = cluster
    state.plant(AUTH_SECRET, {KEY: PLANTED})
    assert auth_value(render(helm, env)) == PLANTED
    assert looked_up(api, AUTH_SECRET)


def test_first_install_generates_a_fresh_key_each_time(
    helm: str, cluster: tuple[Cluster, FakeKubeAPI, dict[str, str]]
) -> None:
    _, api, env = cluster
    first, second = auth_value(render(helm, env)), auth_value(render(helm, env))
    assert looked_up(api, AUTH_SECRET), "helm never asked the cluster: lookup ran offline"
    assert_fresh(first)
    assert_fresh(second)
    assert first != second


def test_existing_secret_without_the_key_gets_a_fresh_key(
    helm: str, cluster: tuple[Cluster, FakeKubeAPI, dict[str, str]]
) -> None:
    state, _, env = cluster
    state.plant(AUTH_SECRET, {"OTHER": PLANTED})
    assert_fresh(auth_value(render(helm, env)))


def test_auth_existing_secret_renders_no_chart_secret_and_is_never_read(
    helm: str, cluster: tuple[Cluster, FakeKubeAPI, dict[str, str]]
) -> None:
    state, api, env = cluster
    state.plant("team-auth", {KEY: PLANTED}, helm_owned=False)
    state.plant(AUTH_SECRET, {KEY: PLANTED})
    objs = render(helm, env, "--set", "auth.existingSecret=team-auth")
    assert secrets(objs) == {}
    deployment = next(o for o in objs if o["kind"] == "Deployment")
    env_vars = {e["name"]: e for c in deployment["spec"]["template"]["spec"]["containers"] for e in c["env"]}
    assert env_vars[KEY]["valueFrom"]["secretKeyRef"] == {"name": "team-auth", "key": KEY}
    assert not looked_up(api, "team-auth") and not looked_up(api, AUTH_SECRET)
    assert PLANTED not in str(objs)
