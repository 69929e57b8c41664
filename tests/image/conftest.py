"""The image, built by `make image`'s own code path (cached after the first run), and a played release."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.image.cluster import Cluster
from tests.image.podman import BUILD, build_redis_image


@pytest.fixture(scope="session")
def server_image() -> str:
    """The content-addressed tag of this checkout's image; cold ~2 min (debootstrap), cached seconds."""
    started = time.monotonic()
    tag = BUILD.build("podman", quiet=True)
    print(f"\nimage: {tag} ready in {time.monotonic() - started:.0f}s")
    return tag


@pytest.fixture(scope="session")
def redis_image(server_image: str) -> str:
    return build_redis_image()


@pytest.fixture(scope="module")
def cluster(helm4: str, server_image: str, redis_image: str) -> Iterator[Cluster]:
    release = Cluster(helm4, server_image, redis_image)
    try:
        yield release.start()
    finally:
        release.close()
