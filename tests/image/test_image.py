"""The built image itself: slim, labelled, versioned like the chart, no compilers, no host CA bundle."""

from __future__ import annotations

import pytest
import yaml

from tests.conftest import CHART
from tests.image.podman import BUILD, inspect, podman

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]  # a cold run debootstraps first

MAX_MB = 200  # measured 174 MB on the debootstrapped bookworm base
HOST_CA = BUILD.HOST_CA_BUNDLE


def in_image(image: str, *cmd: str, user: str = "10001:10001") -> str:
    return podman("run", "--rm", "--read-only", "--user", user, "--entrypoint", "", image, *cmd).stdout


def pem_blocks(text: str) -> set[str]:
    marker = "-----END CERTIFICATE-----"
    return {block.strip() + "\n" + marker for block in text.split(marker) if "BEGIN CERTIFICATE" in block}


def test_image_is_slim_labelled_and_reports_the_charts_app_version(server_image: str) -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    info = inspect("image", server_image)
    size_mb = info["Size"] / 1e6
    print(f"\nimage size: {size_mb:.0f} MB")
    assert size_mb < MAX_MB, f"{size_mb:.0f} MB"
    labels = info["Labels"]
    assert labels["org.opencontainers.image.version"] == chart["appVersion"]
    assert labels["org.opencontainers.image.source"] == chart["sources"][0]
    assert labels["org.opencontainers.image.licenses"] == chart["annotations"]["artifacthub.io/license"]
    assert info["Config"]["User"] == "10001:10001"
    assert in_image(server_image, "aifactory-server", "--version").split() == [
        "aifactory-server",
        chart["appVersion"],
    ]


def test_image_has_no_compilers_pip_cache_or_docs(server_image: str) -> None:
    found = in_image(
        server_image, "sh", "-c",
        "for c in gcc cc c++ g++ clang make ld as; do command -v $c; done;"
        " ls -d /root/.cache/pip /tmp/.cache/pip /usr/share/man/man1 2>/dev/null; true",
    )  # fmt: skip
    assert found.split() == []
    for tool in ("tini", "bwrap", "python"):  # what the chart's pods run: PID 1, shell sandbox, helm test
        assert in_image(server_image, "sh", "-c", f"command -v {tool}").strip()


def test_host_ca_bundle_is_not_baked_into_the_image(server_image: str) -> None:
    """The build bind-mounts the host's bundle (a TLS-intercepting proxy's CA); the image keeps Debian's."""
    image_bundle = in_image(server_image, "cat", "/etc/ssl/certs/ca-certificates.crt")
    assert "BEGIN CERTIFICATE" in image_bundle, "the image has its own trust store"
    host_only = pem_blocks(HOST_CA.read_text()) - pem_blocks(image_bundle) if HOST_CA.is_file() else set()
    print(f"\n{len(host_only)} certificate(s) only the host trusts")
    if host_only:  # none of them may appear in any file of the image
        needles = [arg for block in host_only for arg in ("-e", block.splitlines()[1])]
        hits = in_image(
            server_image, "sh", "-c", 'grep -rlF --exclude-dir=proc --exclude-dir=sys "$@" / ; true', "_",
            *needles, user="0",  # root: reads every file, /etc/shadow included
        ).split()  # fmt: skip
        assert hits == [], f"a host-only CA certificate is in {hits}"
