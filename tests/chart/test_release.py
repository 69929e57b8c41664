"""The release path for real: `helm package`, `helm push` to a real OCI registry (Debian's docker-registry
on a free loopback port), `helm pull oci://...`, and the pulled chart renders like the source, with Helm 3
and Helm 4. Plus the metadata Artifact Hub reads and the versions that must agree."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import tarfile
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from aifactory import __version__
from harness.ports import free_port, wait_for_port
from tests.conftest import CHART, ROOT, run_helm

REGISTRY_CONFIG = """\
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: {root}
http:
  addr: 127.0.0.1:{port}
"""


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real OCI registry (distribution v2, Debian `docker-registry`) on loopback; yields host:port."""
    binary = shutil.which("docker-registry")
    if binary is None:  # `make test` installs it (SYSTEM_DEPS); missing means a broken setup, not a skip
        raise RuntimeError("docker-registry not found: run the tests through `make test`")
    workdir = tmp_path_factory.mktemp("registry")
    port = free_port()
    config = workdir / "config.yml"
    config.write_text(REGISTRY_CONFIG.format(root=workdir / "data", port=port), encoding="utf-8")
    with open(workdir / "registry.log", "wb") as log:
        proc = subprocess.Popen([binary, "serve", str(config)], stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)  # fmt: skip
    try:
        wait_for_port(port, timeout=20)
        yield f"127.0.0.1:{port}"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def chart_meta() -> dict:
    return yaml.safe_load((CHART / "Chart.yaml").read_text(encoding="utf-8"))


def rendered_without_random_secret(stdout: str) -> list[dict]:
    docs = [d for d in yaml.safe_load_all(stdout) if d]
    for doc in docs:
        if doc["kind"] == "Secret":
            doc["data"].pop("AIFACTORY_AUTH_SECRET", None)
    return docs


def test_package_push_pull_render_through_a_real_oci_registry(
    helm: str, registry: str, tmp_path: Path
) -> None:
    version = chart_meta()["version"]
    # Each helm major pushes to its own repository path, so the two runs cannot mask each other.
    major = run_helm(helm, "version", "--short", check=True).stdout.strip().lstrip("v").split(".")[0]
    repo = f"oci://{registry}/charts-helm{major}"
    proc = run_helm(helm, "package", str(CHART), "-d", str(tmp_path / "dist"))
    assert proc.returncode == 0, proc.stderr
    package = tmp_path / "dist" / f"aifactory-{version}.tgz"
    assert package.is_file(), proc.stdout
    with tarfile.open(package) as tar:
        members = set(tar.getnames())
    for needed in ("Chart.yaml", "values.yaml", "values.schema.json", "README.md", "templates/_validate.tpl"):
        assert f"aifactory/{needed}" in members, f"{needed} missing from the package"

    proc = run_helm(helm, "push", str(package), repo, "--plain-http")
    assert proc.returncode == 0, proc.stderr
    assert "Digest: sha256:" in proc.stdout + proc.stderr

    pulled = tmp_path / "pulled"
    pulled.mkdir()
    proc = run_helm(
        helm, "pull", f"{repo}/aifactory", "--version", version, "--plain-http", "-d", str(pulled)
    )
    assert proc.returncode == 0, proc.stderr
    pulled_tgz = pulled / f"aifactory-{version}.tgz"
    assert pulled_tgz.read_bytes() == package.read_bytes(), "the registry returned a different archive"

    args = ("--set", "replicaCount=3", "--set", "redis.enabled=true", "--set", "redis.externalSecretName=s")
    from_registry = run_helm(helm, "template", "aifactory", str(pulled_tgz), *args)
    from_source = run_helm(helm, "template", "aifactory", str(CHART), *args)
    assert from_registry.returncode == 0, from_registry.stderr
    assert rendered_without_random_secret(from_registry.stdout) == rendered_without_random_secret(
        from_source.stdout
    )
    # The pulled chart still refuses bad values by itself (schema + _validate.tpl travel with it).
    refused = run_helm(helm, "template", "aifactory", str(pulled_tgz), "--set", "redis.enabled=true")
    assert refused.returncode != 0 and "[redis-source-missing]" in refused.stderr


def test_versions_agree_chart_app_python_and_image_tag() -> None:
    meta = chart_meta()
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert meta["appVersion"] == pyproject["project"]["version"] == __version__
    images = yaml.safe_load(meta["annotations"]["artifacthub.io/images"])
    assert [i["image"] for i in images] == [f"ghcr.io/aifactory/aifactory-server:{meta['appVersion']}"]
    values = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))
    assert values["image"]["tag"] == "", "an empty tag means the chart's appVersion"
    assert values["image"]["repository"] == images[0]["image"].rsplit(":", 1)[0]
    assert re.search(rf"^## \[?{re.escape(meta['version'])}\]?", (ROOT / "CHANGELOG.md").read_text(), re.M)


def test_artifact_hub_metadata_is_complete() -> None:
    meta = chart_meta()
    ann = meta["annotations"]
    changes = yaml.safe_load(ann["artifacthub.io/changes"])
    assert changes and all(c["kind"] in {"added", "changed", "deprecated", "removed", "fixed", "security"}
                           and c["description"] for c in changes)  # fmt: skip
    links = yaml.safe_load(ann["artifacthub.io/links"])
    assert {link["name"] for link in links} >= {"Documentation", "Source"}
    assert all(link["url"].startswith("https://") for link in links)
    assert meta["maintainers"] and all(
        m["name"] and (m.get("email") or m.get("url")) for m in meta["maintainers"]
    )
    assert meta["icon"].startswith("https://")
    assert (ROOT / meta["icon"].split("/main/", 1)[1]).is_file(), "the icon URL points at a file in the repo"
    assert ann["artifacthub.io/license"] == "Apache-2.0"
