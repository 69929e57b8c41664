"""Parity with the chart: for every case, `helm template` (Helm 3 and 4) fails exactly when the validator
reports an error with one of the chart's refusal ids (same ids), and fails on the schema exactly when the
validator reports a schema-* error."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from tests.conftest import CHART, EXAMPLES, run_helm
from tests.validator.helpers import EXTERNAL, REQUESTS, ROOT, ids, validate, write_values
from validator.rules import CHART_RULES, RULES

CHART_IDS = set(CHART_RULES)
TIERS = {
    **EXTERNAL,
    "tiers": {"ui": {"replicaCount": 2}, "agents": {"replicaCount": 3}},
    "tierRoutes": [{"path": "/api/tasks", "tier": "agents"}, {"path": "/", "tier": "ui"}],
}

# name -> (values, extra --set expressions)
CASES: dict[str, tuple[dict, list[str]]] = {
    "defaults": ({}, []),
    "redis-missing": ({"redis": {"enabled": True}}, []),
    "redis-missing-empty-strings": ({"redis": {"enabled": True, "url": "", "externalSecretName": ""}}, []),
    "redis-missing-null-url": ({"redis": {"enabled": True, "url": None}}, []),
    "redis-external": (EXTERNAL, []),
    "redis-inline": ({"redis": {"enabled": True, "url": "redis://redis.dev.svc:6379/0"}}, []),
    "redis-ambiguous": (
        {"redis": {"enabled": True, "url": "redis://r:6379/0", "externalSecretName": "aifactory-redis"}},
        [],
    ),
    "redis-disabled-both-set": (
        {"redis": {"enabled": False, "url": "redis://r:6379/0", "externalSecretName": "s"}},
        [],
    ),
    "redis-set-only": ({}, ["redis.enabled=true"]),
    "redis-set-null-deletes-secret": (EXTERNAL, ["redis.externalSecretName=null"]),
    "hpa-min-above-max": (
        {"autoscaling": {"enabled": True, "minReplicas": 5, "maxReplicas": 3}, **REQUESTS},
        [],
    ),
    "hpa-min-above-max-disabled": (
        {"autoscaling": {"enabled": False, "minReplicas": 5, "maxReplicas": 3}},
        [],
    ),
    "hpa-min-equals-max": (
        {"autoscaling": {"enabled": True, "minReplicas": 3, "maxReplicas": 3}, **REQUESTS},
        [],
    ),
    "extra-env-reserved": (
        {"extraEnv": [{"name": "REDIS_URL", "value": "x"}, {"name": "OK", "value": "1"}]},
        [],
    ),
    "extra-env-fine": ({"extraEnv": [{"name": "FEATURE_X", "value": "1"}]}, []),
    "terminals-host-without-redis": ({"terminals": {"mode": "host"}}, []),
    "terminals-host-with-redis": ({"terminals": {"mode": "host"}, **EXTERNAL}, []),
    "terminals-host-via-set": ({}, ["terminals.mode=host"]),
    "all-refusals": (
        {
            "redis": {"enabled": True},
            "autoscaling": {"minReplicas": 9, "maxReplicas": 2},
            "extraEnv": [{"name": "PORT", "value": "1"}],
        },
        [],
    ),
    "schema-unknown-key": ({"redis": {"enabled": True, "externalSecret": "x"}}, []),
    "schema-top-level-typo": ({"replicas": 3}, []),
    "schema-type": ({"replicaCount": "three"}, []),
    "schema-enum": ({"image": {"pullPolicy": "Sometimes"}}, []),
    "redis-url-wrong-scheme": ({"redis": {"enabled": True, "url": "http://redis:6379"}}, []),
    "redis-url-space": ({"redis": {"enabled": True, "url": "redis://a b:6379/0"}}, []),
    "redis-url-trailing-newline": ({"redis": {"enabled": True, "url": "redis://r:6379/0\n"}}, []),
    "redis-url-wrong-scheme-disabled": ({"redis": {"enabled": False, "url": "http://redis:6379"}}, []),
    "redis-url-bad-port-renders": ({"redis": {"enabled": True, "url": "redis://r:99999/0"}}, []),
    "redis-url-sentinel-no-service": ({"redis": {"enabled": True, "url": "redis+sentinel://s1:26379"}}, []),
    "schema-range": ({"replicaCount": 1000}, []),
    "schema-pattern-trailing-newline": ({"redis": {"channel": "aifactory:events\n"}}, []),
    "schema-pattern-nbsp": ({"redis": {"channel": "aifactory\u00a0events"}}, []),
    "schema-pattern-tag-newline": ({"image": {"tag": "1.1.0\n"}}, []),
    "schema-required-deleted": ({}, ["redis.enabled=null"]),
    "schema-and-refusal": ({"replicaCount": "x", "redis": {"enabled": True}}, []),
    "set-string-type": ({}, []),
    # go-yaml (Helm) reads 1e1 as the number 10, PyYAML as a string: the validator must side with Helm
    "replica-count-exponent": ("replicaCount: 1e1\n", []),  # type: ignore[dict-item]
    "replica-count-exponent-fraction": ("replicaCount: 1.5e0\n", []),  # type: ignore[dict-item]
    "image-tag-exponent": ("image:\n  tag: 1e1\n", []),  # type: ignore[dict-item]
    "tiers-valid": (TIERS, []),
    "tiers-route-unknown": (TIERS, ["tierRoutes[2].path=/api/events", "tierRoutes[2].tier=workers"]),
    "tiers-routes-without-tiers": ({"tierRoutes": [{"path": "/", "tier": "ui"}]}, []),
    "tiers-root-unrouted": (TIERS, ["tierRoutes[1].path=/portal"]),
    "tiers-without-redis": (TIERS, ["redis.enabled=false"]),
    "tiers-no-replicas": (TIERS, ["tiers.agents.replicaCount=0"]),
    "tiers-zero-top-level-one-tier-set": ({**TIERS, "replicaCount": 0}, ["tiers.ui.replicaCount=1"]),
    "tiers-extra-env-reserved": (
        TIERS,
        ["tiers.agents.extraEnv[0].name=REDIS_URL", "tiers.agents.extraEnv[0].value=x"],
    ),
    "tiers-hpa-min-above-max": (
        TIERS,
        ["tiers.agents.autoscaling.minReplicas=20", "tiers.agents.autoscaling.enabled=true"],
    ),
    "tiers-hpa-inherits-fine": (TIERS, ["tiers.agents.autoscaling.enabled=true"]),
    "tiers-no-replicas-but-hpa": (
        TIERS,
        ["tiers.agents.replicaCount=0", "tiers.agents.autoscaling.enabled=true"],
    ),
}
CASES["set-string-type"] = ({}, ["--set-string", "replicaCount=3"])


def _split(extra: list[str]) -> tuple[list[str], list[str], list[str]]:
    """extra -> (helm args, --set exprs, --set-string exprs)."""
    args, sets, strings = [], [], []
    it = iter(extra)
    for item in it:
        if item == "--set-string":
            expr = next(it)
            strings.append(expr)
            args += ["--set-string", expr]
        else:
            sets.append(item)
            args += ["--set", item]
    return args, sets, strings


def _helm_outcome(helm: str, values_file: Path, extra_args: list[str]) -> tuple[bool, set[str], bool]:
    """(failed, refusal ids in the message, failed on the schema)."""
    proc = run_helm(helm, "template", "aifactory", str(CHART), "-f", str(values_file), *extra_args)
    err = proc.stderr
    refusal_ids = set(re.findall(r"\[([a-z0-9-]+)\]", err)) & CHART_IDS
    schema_failed = proc.returncode != 0 and "schema" in err.lower()
    return proc.returncode != 0, refusal_ids, schema_failed


@pytest.mark.parametrize("case", sorted(CASES))
def test_helm_fails_exactly_when_the_validator_reports_a_chart_refusal(
    helm: str, case: str, tmp_path: Path
) -> None:
    values, extra = CASES[case]
    values_file = write_values(tmp_path, values)
    helm_args, sets, strings = _split(extra)
    findings = validate(values, sets=sets, set_strings=strings)
    errors = ids(findings, "error")
    schema_errors = {i for i in errors if i.startswith("schema-")}
    failed, helm_ids, helm_schema = _helm_outcome(helm, values_file, helm_args)

    assert helm_schema == bool(schema_errors), (case, errors, helm_schema)
    if not schema_errors:  # templates (and so the refusals) only run once the schema passed
        assert helm_ids == errors & CHART_IDS, (case, helm_ids, errors)
        assert failed == bool(errors & CHART_IDS), (case, errors)
    else:
        assert failed


def test_the_matrix_covers_every_chart_refusal() -> None:
    covered = set()
    for values, extra in CASES.values():
        _, sets, strings = _split(extra)
        covered |= ids(validate(values, sets=sets, set_strings=strings)) & CHART_IDS
    assert covered == CHART_IDS


def test_the_validator_knows_every_refusal_the_chart_documents() -> None:
    documented = set(
        re.findall(r"^\| `([a-z0-9-]+)` \|", (ROOT / "docs/chart-refusals.md").read_text(), re.M)
    )
    assert documented, "docs/chart-refusals.md lists no ids"
    assert documented == CHART_IDS
    assert {r.id for r in RULES} >= CHART_IDS


def test_user_annotations_override_the_charts_own_once(helm: str, tmp_path: Path) -> None:
    """docs/chart.md: your ingress.annotations win over the chart's keys of the same name, rendered once."""
    from tests.chart.rendering import StrictLoader

    timeout = "nginx.ingress.kubernetes.io/proxy-read-timeout"
    cookie = "nginx.ingress.kubernetes.io/session-cookie-name"
    values = {
        **EXTERNAL,
        "replicaCount": 2,
        "ingress": {
            "enabled": True,
            "hosts": [{"host": "a.example.com"}],
            "terminalAffinity": {"enabled": True, "controller": "nginx"},
            "annotations": {timeout: "120", cookie: "mine"},
        },
    }
    assert ids(validate(values), "error") == set()
    proc = run_helm(helm, "template", "aifactory", str(CHART), "-f", str(write_values(tmp_path, values)))
    assert proc.returncode == 0, proc.stderr
    docs = [d for d in yaml.load_all(proc.stdout, Loader=StrictLoader) if d]  # refuses duplicate keys
    ingresses = {d["metadata"]["name"]: d["metadata"]["annotations"] for d in docs if d["kind"] == "Ingress"}
    assert ingresses["aifactory-ws"][timeout] == "120"
    assert ingresses["aifactory-terminal"][timeout] == "120"
    assert ingresses["aifactory-terminal"][cookie] == "mine"
    assert proc.stdout.count(f"{timeout}:") == len(ingresses)  # once per Ingress, never twice in one


@pytest.mark.parametrize("example", sorted(p.name for p in EXAMPLES.glob("*.yaml")))
def test_every_example_is_valid_for_helm_and_the_validator(helm: str, example: str) -> None:
    path = EXAMPLES / example
    errors = ids(validate(path.read_text()), "error")
    assert errors == set(), (example, errors)
    proc = run_helm(helm, "template", "aifactory", str(CHART), "-f", str(path))
    assert proc.returncode == 0, proc.stderr
