"""Chart test helpers: one `helm template` per (helm binary, values case), parsed once and shared."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tests.chart.cases import template_args
from tests.conftest import run_helm

Rendered = list[dict[str, Any]]
_CACHE: dict[tuple[str, str], Rendered] = {}


def render(helm_bin: str, case: str) -> Rendered:
    """Parsed objects of a successful render; cached for the session so each (helm, case) renders once."""
    key = (helm_bin, case)
    if key not in _CACHE:
        proc = run_helm(helm_bin, *template_args(case))
        assert proc.returncode == 0, f"{Path(helm_bin).parent.name} refused case {case}:\n{proc.stderr}"
        _CACHE[key] = [doc for doc in yaml.safe_load_all(proc.stdout) if doc]
    return _CACHE[key]


def by_kind(objs: Rendered, kind: str) -> list[dict[str, Any]]:
    return [o for o in objs if o["kind"] == kind]


def one(objs: Rendered, kind: str) -> dict[str, Any]:
    found = by_kind(objs, kind)
    assert len(found) == 1, f"expected exactly one {kind}, got {[o['metadata']['name'] for o in found]}"
    return found[0]


def named(objs: Rendered, kind: str, name: str) -> dict[str, Any]:
    found = [o for o in objs if o["kind"] == kind and o["metadata"]["name"] == name]
    assert found, f"no {kind}/{name} in {[(o['kind'], o['metadata']['name']) for o in objs]}"
    return found[0]


def pod_spec(objs: Rendered) -> dict[str, Any]:
    return one(objs, "Deployment")["spec"]["template"]["spec"]


def container(objs: Rendered) -> dict[str, Any]:
    return pod_spec(objs)["containers"][0]


def env(objs: Rendered) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container(objs).get("env", [])}
