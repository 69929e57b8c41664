"""Strict validation of rendered objects against the Kubernetes OpenAPI schemas of kubernetes-validate."""

from __future__ import annotations

from typing import Any

from kubernetes_validate import utils as kv

K8S_VERSIONS = ("1.30", "1.37")


def validation_error(obj: dict[str, Any], version: str) -> str | None:
    """None when `obj` is valid for Kubernetes `version` in strict mode (unknown fields refused), else why.

    A kind with no schema raises instead of passing: an unvalidated object must never count as valid.
    The one CRD the chart renders (ServiceMonitor) is checked against the fields the chart uses."""
    if obj.get("kind") == "ServiceMonitor":
        return service_monitor_error(obj)
    try:
        kv.validate(obj, version, strict=True)
    except kv.ValidationError as exc:
        path = ".".join(str(p) for p in exc.path)
        return f"{obj['kind']}/{obj['metadata']['name']} @ {path}: {exc.message}"
    except kv.SchemaNotFoundError as exc:
        raise AssertionError(exc.message) from exc
    return None


# The prometheus-operator ServiceMonitor fields the chart renders (monitoring.coreos.com/v1 CRD).
_SM_SPEC = {"jobLabel", "namespaceSelector", "selector", "endpoints"}
_SM_ENDPOINT = {
    "port",
    "path",
    "interval",
    "scrapeTimeout",
    "honorLabels",
    "relabelings",
    "metricRelabelings",
}


def service_monitor_error(obj: dict[str, Any]) -> str | None:
    """Unknown or missing ServiceMonitor fields (kubernetes-validate ships no CRD schemas)."""
    where = f"ServiceMonitor/{obj['metadata']['name']}"
    if obj.get("apiVersion") != "monitoring.coreos.com/v1":
        return f"{where}: apiVersion {obj.get('apiVersion')}"
    spec = obj.get("spec") or {}
    if unknown := set(spec) - _SM_SPEC:
        return f"{where} @ spec: unknown fields {sorted(unknown)}"
    if not spec.get("endpoints") or not (spec.get("selector") or {}).get("matchLabels"):
        return f"{where} @ spec: endpoints and selector.matchLabels are required"
    for endpoint in spec["endpoints"]:
        if unknown := set(endpoint) - _SM_ENDPOINT:
            return f"{where} @ spec.endpoints: unknown fields {sorted(unknown)}"
    return None
