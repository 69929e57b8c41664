"""Strict validation of rendered objects against the Kubernetes OpenAPI schemas of kubernetes-validate."""

from __future__ import annotations

from typing import Any

from kubernetes_validate import utils as kv

K8S_VERSIONS = ("1.30", "1.37")


def validation_error(obj: dict[str, Any], version: str) -> str | None:
    """None when `obj` is valid for Kubernetes `version` in strict mode (unknown fields refused), else why.

    A kind with no schema raises instead of passing: an unvalidated object must never count as valid."""
    try:
        kv.validate(obj, version, strict=True)
    except kv.ValidationError as exc:
        path = ".".join(str(p) for p in exc.path)
        return f"{obj['kind']}/{obj['metadata']['name']} @ {path}: {exc.message}"
    except kv.SchemaNotFoundError as exc:
        raise AssertionError(exc.message) from exc
    return None
