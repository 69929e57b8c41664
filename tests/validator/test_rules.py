"""Each validator rule fires on the mistake it names, stays quiet on the fixed values, and points at the
file:line:column the offending value was written at."""

from __future__ import annotations

import pytest

from tests.validator.helpers import EXTERNAL, REQUESTS, ids, validate
from validator.model import ERROR, WARNING
from validator.rules import RULES

NGINX = "nginx.ingress.kubernetes.io/"
TRAEFIK = "traefik.ingress.kubernetes.io/service.sticky.cookie"
INGRESS = {"enabled": True, "hosts": [{"host": "a.example.com"}]}
AFFINITY = {**INGRESS, "terminalAffinity": {"enabled": True, "controller": "nginx"}}

# rule id -> (values that trigger it, the same values fixed, expected severity)
CASES: dict[str, tuple[dict, dict, str]] = {
    "multi-replica-without-redis": ({"replicaCount": 3}, {"replicaCount": 3, **EXTERNAL}, WARNING),
    "redis-url-inline": (
        {"redis": {"enabled": True, "url": "redis://redis.dev.svc:6379/0"}},
        EXTERNAL,
        WARNING,
    ),
    "redis-url-password": (
        {"redis": {"enabled": True, "url": "redis://:hunter2@redis.dev.svc:6379/0"}},
        {"redis": {"enabled": True, "url": "redis://redis.dev.svc:6379/0"}},
        ERROR,
    ),
    "redis-url-rejected": (
        {"redis": {"enabled": True, "url": "redis://redis:99999/0"}},
        {"redis": {"enabled": True, "url": "redis://redis:6379/0"}},
        ERROR,
    ),
    "redis-url-localhost": (
        {"replicaCount": 2, "redis": {"enabled": True, "url": "redis://localhost:6379/0"}},
        {"replicaCount": 1, "redis": {"enabled": True, "url": "redis://localhost:6379/0"}},
        ERROR,
    ),
    # The chart's defaults carry requests; the rule stays for operators who clear them (null deletes).
    "hpa-target-without-requests": (
        {"autoscaling": {"enabled": True, "minReplicas": 2}, **EXTERNAL, "resources": None},
        {"autoscaling": {"enabled": True, "minReplicas": 2}, **EXTERNAL},
        ERROR,
    ),
    "ingress-without-terminal-affinity": (
        {"replicaCount": 3, **EXTERNAL, "ingress": INGRESS},
        {"replicaCount": 3, **EXTERNAL, "ingress": AFFINITY},
        WARNING,
    ),
    "affinity-cookie-path": (
        {
            "ingress": {
                **INGRESS,
                "annotations": {NGINX + "affinity": "cookie", NGINX + "session-cookie-path": "/"},
            }
        },
        {
            "ingress": {
                **INGRESS,
                "annotations": {NGINX + "affinity": "cookie", NGINX + "session-cookie-path": "/ws/terminal"},
            }
        },
        WARNING,
    ),
    "affinity-annotation-wrong-object": (
        {"service": {"annotations": {NGINX + "affinity": "cookie"}}},
        {
            "ingress": {
                **INGRESS,
                "annotations": {NGINX + "affinity": "cookie", NGINX + "session-cookie-path": "/ws/terminal"},
            }
        },
        ERROR,
    ),
    "ingress-values-without-ingress": (
        {"ingress": {"annotations": {NGINX + "affinity": "cookie"}}},
        {"ingress": {**INGRESS, "annotations": {NGINX + "ssl-redirect": "true"}}},
        WARNING,
    ),
    "redis-values-without-redis": (
        {"redis": {"enabled": False, "externalSecretName": "aifactory-redis"}},
        EXTERNAL,
        WARNING,
    ),
    "affinity-mode-balanced-with-hpa": (
        {
            "autoscaling": {"enabled": True, "minReplicas": 2},
            **EXTERNAL,
            **REQUESTS,
            "ingress": {
                **INGRESS,
                "terminalAffinity": {"enabled": True, "controller": "nginx", "mode": "balanced"},
            },
        },
        {
            "autoscaling": {"enabled": True, "minReplicas": 2},
            **EXTERNAL,
            **REQUESTS,
            "ingress": {
                **INGRESS,
                "terminalAffinity": {"enabled": True, "controller": "nginx", "mode": "persistent"},
            },
        },
        WARNING,
    ),
    "affinity-controller-mismatch": (
        {"ingress": {**AFFINITY, "className": "traefik"}},
        {"ingress": {**AFFINITY, "className": "nginx"}},
        WARNING,
    ),
    "terminal-affinity-without-ingress": (
        {"ingress": {"enabled": False, "terminalAffinity": {"enabled": True, "controller": "nginx"}}},
        {"ingress": {"enabled": True, "terminalAffinity": {"enabled": True, "controller": "nginx"}}},
        WARNING,
    ),
    "pdb-allows-full-outage": (
        {"replicaCount": 2, **EXTERNAL, "podDisruptionBudget": {"enabled": True, "maxUnavailable": "100%"}},
        {"replicaCount": 2, **EXTERNAL, "podDisruptionBudget": {"enabled": True, "maxUnavailable": "50%"}},
        WARNING,
    ),
    "pdb-not-rendered": (
        {"replicaCount": 1, "podDisruptionBudget": {"enabled": True}},
        {"replicaCount": 2, **EXTERNAL, "podDisruptionBudget": {"enabled": True}},
        WARNING,
    ),
    "replica-count-ignored": (
        {"replicaCount": 4, "autoscaling": {"enabled": True, "minReplicas": 2}, **EXTERNAL, **REQUESTS},
        {"autoscaling": {"enabled": True, "minReplicas": 2}, **EXTERNAL, **REQUESTS},
        WARNING,
    ),
    "image-tag-latest": ({"image": {"tag": "latest"}}, {"image": {"tag": "1.1.0"}}, WARNING),
}


@pytest.mark.parametrize("rule_id", sorted(CASES))
def test_rule_fires_on_the_mistake_and_not_on_the_fix(rule_id: str) -> None:
    bad, good, severity = CASES[rule_id]
    hits = [f for f in validate(bad) if f.rule == rule_id]
    assert hits, f"{rule_id} did not fire on {bad}"
    assert {f.severity for f in hits} == {severity}
    assert all(f.message and f.fix and f.location for f in hits)
    assert rule_id not in ids(validate(good))


def test_the_specs_own_values_block_warns_that_it_renders_no_ingress() -> None:
    """The affinity annotations from the multi-replica guide, without ingress.enabled: no Ingress at all."""
    text = (
        "replicaCount: 3\nredis:\n  enabled: true\n  externalSecretName: aifactory-redis\n"
        "ingress:\n  annotations:\n"
        f"    {NGINX}affinity: cookie\n    {NGINX}session-cookie-path: /ws/terminal\n"
    )
    hit = next(f for f in validate(text) if f.rule == "ingress-values-without-ingress")
    assert "ingress.annotations set while ingress.enabled=false" in hit.message
    assert (hit.location.line, hit.location.column) == (6, 3)
    assert "ingress-values-without-ingress" not in ids(validate({"ingress": {"enabled": False}}))
    # Traefik's sticky cookie is rendered on the Service, with or without the chart's Ingress
    traefik = {"terminalAffinity": {"enabled": True, "controller": "traefik"}, "tls": [{"hosts": ["a"]}]}
    assert "ingress-values-without-ingress" not in ids(validate({"ingress": traefik}))


def test_host_mode_terminals_need_no_affinity_cookie() -> None:
    """terminals.mode=host: any web pod reaches any terminal, so no affinity warning."""
    values = {"replicaCount": 3, **EXTERNAL, "ingress": INGRESS, "terminals": {"mode": "host"}}
    assert "ingress-without-terminal-affinity" not in ids(validate(values))
    assert "ingress-without-terminal-affinity" in ids(validate({**values, "terminals": {"mode": "local"}}))


def test_redis_url_and_secret_while_redis_is_off_both_warn() -> None:
    found = validate({"redis": {"url": "redis://r:6379/0", "externalSecretName": "s"}})
    hits = [f.path for f in found if f.rule == "redis-values-without-redis"]
    assert hits == ["redis.externalSecretName", "redis.url"]


def test_every_rule_is_tested_here_or_in_the_parity_matrix() -> None:
    from tests.validator.test_parity import CHART_IDS

    untested = {r.id for r in RULES} - set(CASES) - CHART_IDS - {"pdb-blocks-eviction"}
    assert untested == set()


def test_pdb_that_can_never_evict_is_an_error_for_charts_that_allow_zero(tmp_path) -> None:
    """This chart's schema already refuses maxUnavailable 0; the rule guards charts passed with --chart."""
    from validator.model import Positions
    from validator.rules import Context
    from validator.rules.replicas import pdb_blocks_eviction

    values = {"replicaCount": 3, "podDisruptionBudget": {"enabled": True, "maxUnavailable": "0%"}}
    found = list(pdb_blocks_eviction(Context(values, Positions(), set())))
    assert [f.rule for f in found] == ["pdb-blocks-eviction"]
    values["podDisruptionBudget"]["maxUnavailable"] = 1
    assert list(pdb_blocks_eviction(Context(values, Positions(), set()))) == []


def test_findings_point_at_the_line_and_column_the_value_was_written() -> None:
    text = "replicaCount: 3\nredis:\n  enabled: true\n  url: 'redis://:pw@localhost:6379/0'\n"
    by_rule = {f.rule: f for f in validate(text)}
    loc = by_rule["redis-url-localhost"].location
    assert (loc.source, loc.line, loc.column) == ("values.yaml", 4, 8)
    assert (
        str(by_rule["multi-replica-without-redis"].location)
        if "multi-replica-without-redis" in by_rule
        else True
    )


def test_set_values_are_located_at_the_option_without_their_value() -> None:
    findings = validate(
        {}, sets=["redis.enabled=true", "redis.url=redis://:topsecret@localhost:6379/0", "replicaCount=2"]
    )
    password = next(f for f in findings if f.rule == "redis-url-password")
    assert password.severity == WARNING  # on the command line, not committed in a file
    assert str(password.location) == "--set redis.url"
    assert all("topsecret" not in f.message + f.fix + str(f.location) for f in findings)


def test_unknown_key_gets_did_you_mean_and_its_key_position() -> None:
    findings = validate("redis:\n  enabled: true\n  externalSecretname: s\n")
    unknown = next(f for f in findings if f.rule == "schema-unknown-key")
    assert "did you mean redis.externalSecretName?" in unknown.fix
    assert (unknown.location.line, unknown.location.column) == (3, 3)


def test_key_at_the_wrong_level_says_where_it_belongs() -> None:
    unknown = next(f for f in validate({"redis": {"replicaCount": 3}}) if f.rule == "schema-unknown-key")
    assert "replicaCount belongs at replicaCount" in unknown.fix


def test_every_finding_is_reported_not_just_the_first() -> None:
    findings = validate(
        {"replicaCount": "x", "image": {"pullPolicy": "no"}, "redis": {"enabled": True}, "bogus": 1}
    )
    assert {"schema-type", "schema-enum", "schema-unknown-key", "redis-source-missing"} <= ids(findings)


def test_schema_messages_never_echo_a_url_or_env_value() -> None:
    findings = validate({"redis": {"url": 12345}, "extraEnv": [{"name": "X", "value": 987654}]})
    text = " ".join(f.message + f.fix for f in findings)
    assert "schema-type" in ids(findings)
    assert "12345" not in text and "987654" not in text


def test_null_deletes_a_default_like_helm() -> None:
    findings = validate({}, sets=["server=null"])
    assert any(f.rule == "schema-required" and "server" in f.message for f in findings)
