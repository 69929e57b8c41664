"""Every render is valid Kubernetes for 1.30 and 1.37, in strict mode (unknown fields are errors)."""

from __future__ import annotations

import copy

import pytest

from tests.chart.cases import CASES
from tests.chart.k8s_schema import K8S_VERSIONS, validation_error
from tests.chart.rendering import one, render


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("case", sorted(CASES))
def test_render_is_valid_kubernetes(helm: str, case: str, version: str) -> None:
    errors = [err for obj in render(helm, case) if (err := validation_error(obj, version))]
    assert not errors, "\n".join(errors)


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_strict_validation_catches_an_unknown_field(helm: str, version: str) -> None:
    """Proves the check above can fail: a misspelt pod field is refused."""
    deployment = copy.deepcopy(one(render(helm, "defaults"), "Deployment"))
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    assert "readinesProbe" in (validation_error(deployment, version) or "")
