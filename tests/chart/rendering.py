"""Chart test helpers: one `helm template` per (helm binary, values case), parsed once and shared."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import yaml

from tests.chart.cases import template_args
from tests.conftest import run_helm

Rendered = list[dict[str, Any]]


class StrictLoader(yaml.SafeLoader):
    """SafeLoader refusing duplicate mapping keys (PyYAML keeps the last silently; the API server refuses)."""


def _no_duplicates(loader: StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    keys = [loader.construct_object(key, deep=deep) for key, _ in node.value]
    duplicates = {k for k in keys if keys.count(k) > 1}
    if duplicates:
        raise yaml.constructor.ConstructorError(None, None, f"duplicate keys {duplicates}", node.start_mark)
    return loader.construct_mapping(node, deep)


StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _no_duplicates)
_CACHE: dict[tuple[str, str], Rendered] = {}


def render(helm_bin: str, case: str) -> Rendered:
    """Parsed objects of a successful render; cached for the session so each (helm, case) renders once."""
    key = (helm_bin, case)
    if key not in _CACHE:
        proc = run_helm(helm_bin, *template_args(case))
        assert proc.returncode == 0, f"{Path(helm_bin).parent.name} refused case {case}:\n{proc.stderr}"
        _CACHE[key] = [doc for doc in yaml.load_all(proc.stdout, Loader=StrictLoader) if doc]
    return _CACHE[key]


@functools.cache
def helm_major(helm_bin: str) -> int:
    """Major version of a helm binary (3 validates schemas with gojsonschema, 4 with santhosh-tekuri)."""
    proc = run_helm(helm_bin, "version", "--short", check=True)
    return int(proc.stdout.strip().lstrip("v").split(".")[0])


def by_kind(objs: Rendered, kind: str) -> list[dict[str, Any]]:
    return [o for o in objs if o["kind"] == kind]


def is_terminal_host(obj: dict[str, Any]) -> bool:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return labels.get("app.kubernetes.io/component") == "terminal-host"


def one(objs: Rendered, kind: str) -> dict[str, Any]:
    """The web tier's only object of `kind` (terminals.mode=host adds a terminal-host Deployment/Service)."""
    found = [o for o in by_kind(objs, kind) if not is_terminal_host(o)]
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
