"""Bad values are refused at render time by plain helm, on Helm 3 and Helm 4: the cross-field checks of
`aifactory.validate` (all problems in one failure, one `[id]` line each) and the draft-07 values schema."""

from __future__ import annotations

import re

import pytest

from tests.chart.cases import NAMESPACE, RELEASE, sets
from tests.chart.rendering import helm_major
from tests.conftest import CHART, ROOT, run_helm

REFUSALS_DOC = ROOT / "docs" / "chart-refusals.md"


def template(helm: str, *args: str):
    return run_helm(helm, "template", RELEASE, str(CHART), "--namespace", NAMESPACE, *args)


def refusal_lines(stderr: str) -> dict[str, str]:
    """Map of refusal id -> its whole message line."""
    return {m.group(1): m.group(0) for m in re.finditer(r"^\[([a-z0-9-]+)\] .*$", stderr, re.MULTILINE)}


# Two tiers, Redis on: valid on its own; each tier refusal case breaks one thing.
TIERS = sets(
    "redis.enabled=true", "redis.externalSecretName=aifactory-redis",
    "tiers.ui.replicaCount=2", "tiers.agents.replicaCount=3",
    "tierRoutes[0].path=/api/tasks", "tierRoutes[0].tier=agents",
    "tierRoutes[1].path=/", "tierRoutes[1].tier=ui",
)  # fmt: skip

REFUSALS = {
    "redis-source-missing": (
        ["--set", "redis.enabled=true"],
        ["redis.externalSecretName", "redis.url", "kubectl create secret generic aifactory-redis "
         "--from-literal=REDIS_URL=", f"--namespace {NAMESPACE}"],
    ),
    "redis-source-ambiguous": (
        ["--set", "redis.enabled=true", "--set", "redis.url=redis://:hunter2@r:6379/0",
         "--set", "redis.externalSecretName=aifactory-redis"],
        ["Remove redis.url", "remove redis.externalSecretName", '"aifactory-redis"'],
    ),
    "redis-url-invalid": (
        sets("redis.enabled=true", "redis.url=http://:hunter2@redis:6379"),
        ["redis.url is not a Redis URL", "rediss://", "redis.externalSecretName"],
    ),
    "hpa-min-above-max": (
        sets("autoscaling.enabled=true", "autoscaling.minReplicas=5", "autoscaling.maxReplicas=3"),
        ["autoscaling.minReplicas (5)", "autoscaling.maxReplicas (3)"],
    ),
    "extra-env-reserved": (
        ["--set", "extraEnv[0].name=REDIS_URL", "--set", "extraEnv[0].value=redis://x:6379"],
        ["extraEnv sets REDIS_URL", "redis.externalSecretName"],
    ),
    "tier-route-unknown": (
        [*TIERS, *sets("tierRoutes[2].path=/api/events", "tierRoutes[2].tier=workers")],
        ["/api/events -> workers", "tiers: agents, ui", "add that tier"],
    ),
    "tier-path-unrouted": (
        [*TIERS, *sets("tierRoutes[1].path=/portal")],
        ['no tierRoutes entry has path "/"', "{path: /, tier:"],
    ),
    "tiers-without-redis": (
        [*TIERS, *sets("redis.enabled=false")],
        ["tiers are set while redis.enabled=false", "redis.externalSecretName"],
    ),
    "tier-no-replicas": (
        [*TIERS, *sets("tiers.agents.replicaCount=0")],
        ["tier(s) agents would run no pod", "tiers.<name>.replicaCount"],
    ),
    "terminals-host-without-redis": (
        sets("terminals.mode=host"),
        ["terminals.mode=host", "redis.enabled=true", "terminals.mode=local"],
    ),
}  # fmt: skip


@pytest.mark.parametrize("refusal", sorted(REFUSALS))
def test_each_refusal_fails_with_its_id_and_fix(helm: str, refusal: str) -> None:
    args, fragments = REFUSALS[refusal]
    proc = template(helm, *args)
    assert proc.returncode != 0
    assert proc.stdout == ""
    lines = refusal_lines(proc.stderr)
    assert list(lines) == [refusal], proc.stderr
    for fragment in fragments:
        assert fragment in lines[refusal], f"{fragment!r} missing from: {lines[refusal]}"
    assert "hunter2" not in proc.stderr, "a Redis password must never appear in an error"


def test_all_problems_are_reported_in_one_failure(helm: str) -> None:
    args = [arg for refusal in ("redis-source-missing", "hpa-min-above-max", "extra-env-reserved")
            for arg in REFUSALS[refusal][0]]  # fmt: skip
    proc = template(helm, *args)
    assert proc.returncode != 0
    assert sorted(refusal_lines(proc.stderr)) == [
        "extra-env-reserved",
        "hpa-min-above-max",
        "redis-source-missing",
    ]
    assert proc.stderr.count("values refused") == 1


@pytest.mark.parametrize(
    ("refusal", "args", "fragment"),
    [
        (
            "extra-env-reserved",
            sets("tiers.agents.extraEnv[0].name=PORT", "string:tiers.agents.extraEnv[0].value=1"),
            "extraEnv sets PORT",
        ),
        (
            "hpa-min-above-max",
            sets("tiers.agents.autoscaling.enabled=true", "tiers.agents.autoscaling.minReplicas=20"),
            "tiers.agents.autoscaling.minReplicas (20) is greater than its maxReplicas (10)",
        ),
    ],
)
def test_per_tier_values_are_refused_like_the_top_level_ones(
    helm: str, refusal: str, args: list[str], fragment: str
) -> None:
    proc = template(helm, *TIERS, *args)
    assert proc.returncode != 0
    lines = refusal_lines(proc.stderr)
    assert list(lines) == [refusal], proc.stderr
    assert fragment in lines[refusal]


def test_the_tier_fixture_itself_renders(helm: str) -> None:
    """The refusal cases above differ from a valid two-tier setup by exactly the value they break."""
    proc = template(helm, *TIERS)
    assert proc.returncode == 0, proc.stderr


def test_every_refusal_template_is_gathered_by_the_one_fail() -> None:
    """_validate.tpl's header promises one template per refusal, all listed in aifactory.validate."""
    text = (CHART / "templates" / "_validate.tpl").read_text(encoding="utf-8")
    defined = set(re.findall(r'define "aifactory\.validate\.(\w+)"', text))
    listed = re.search(r'range \$check := list ((?:"\w+" ?)+)', text)
    assert listed and set(re.findall(r'"(\w+)"', listed.group(1))) == defined
    assert text.count("fail (") == 1
    assert "How to add a refusal" in text
    helpers = (CHART / "templates" / "_helpers.tpl").read_text(encoding="utf-8")
    assert "aifactory.validate" not in helpers, "refusals live in _validate.tpl only"


def test_hpa_bounds_are_checked_even_while_the_hpa_is_off(helm: str) -> None:
    proc = template(helm, "--set", "autoscaling.minReplicas=4", "--set", "autoscaling.maxReplicas=2")
    assert proc.returncode != 0
    assert list(refusal_lines(proc.stderr)) == ["hpa-min-above-max"]


def test_every_refusal_id_is_documented() -> None:
    text = REFUSALS_DOC.read_text(encoding="utf-8")
    refusals = (CHART / "templates" / "_validate.tpl").read_text(encoding="utf-8")
    chart_ids = set(re.findall(r"^\[([a-z0-9-]+)\]", refusals, re.MULTILINE))
    assert chart_ids == set(REFUSALS), "every refusal in _validate.tpl has a test case here"
    for refusal in chart_ids:
        assert f"| `{refusal}` |" in text, f"{refusal} missing from docs/chart-refusals.md"


# ---------------------------------------------------------------- schema refusals (draft-07 on both engines)

# (helm args, fragment Helm 3.17/gojsonschema prints, fragment Helm 4/santhosh-tekuri prints)
SCHEMA_REFUSALS = {
    "unknown-nested-key": (
        sets("redis.externalSecret=aifactory-redis"),
        "Additional property externalSecret is not allowed",
        "additional properties 'externalSecret' not allowed",
    ),
    "unknown-top-level-key": (
        sets("replicacount=3"),
        "Additional property replicacount is not allowed",
        "additional properties 'replicacount' not allowed",
    ),
    "wrong-type": (sets("replicaCount=three"), "replicaCount: Invalid type", "at '/replicaCount'"),
    "bool-as-string": (
        sets("string:redis.enabled=yes"),
        "redis.enabled: Invalid type",
        "at '/redis/enabled'",
    ),
    "bad-enum-service": (
        sets("service.type=ExternalName"),
        "service.type must be one of",
        "at '/service/type'",
    ),
    "bad-enum-controller": (
        sets("ingress.terminalAffinity.controller=haproxy"),
        "ingress.terminalAffinity.controller must be one of",
        "at '/ingress/terminalAffinity/controller'",
    ),
    "bad-enum-loglevel": (
        sets("server.logLevel=verbose"),
        "server.logLevel must be one of",
        "at '/server/logLevel'",
    ),
    "out-of-range": (
        sets("ingress.websocketTimeoutSeconds=10"),
        "ingress.websocketTimeoutSeconds",
        "at '/ingress/websocketTimeoutSeconds'",
    ),
    "bad-secret-name": (
        sets("redis.externalSecretName=Aifactory_Redis"),
        "redis.externalSecretName",
        "at '/redis/externalSecretName'",
    ),
    "bad-pdb-percentage": (
        sets("podDisruptionBudget.maxUnavailable=150%"),
        "podDisruptionBudget.maxUnavailable",
        "at '/podDisruptionBudget/maxUnavailable'",
    ),
    "pdb-zero-would-block-drains": (
        sets("podDisruptionBudget.maxUnavailable=0"),
        "podDisruptionBudget.maxUnavailable",
        "at '/podDisruptionBudget/maxUnavailable'",
    ),
    "empty-hosts": (
        sets("ingress.enabled=true", "ingress.hosts=null"),
        "hosts is required",
        "missing property 'hosts'",
    ),
    "required-deleted": (
        sets("replicaCount=null"),
        "replicaCount is required",
        "missing property 'replicaCount'",
    ),
    "unknown-key-in-list-item": (
        sets("ingress.hosts[0].host=a.example.com", "ingress.hosts[0].paths=/x"),
        "Additional property paths is not allowed",
        "additional properties 'paths' not allowed",
    ),
}


@pytest.mark.parametrize("case", sorted(SCHEMA_REFUSALS))
def test_schema_refuses_bad_values(helm: str, case: str) -> None:
    args, helm3_fragment, helm4_fragment = SCHEMA_REFUSALS[case]
    proc = template(helm, *args)
    assert proc.returncode != 0
    assert "values don't meet the specifications of the schema" in proc.stderr
    expected = helm3_fragment if helm_major(helm) == 3 else helm4_fragment
    assert expected in proc.stderr, proc.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["--set", "redis.url=null", "--set", "redis.externalSecretName=null", "--set", "redis.channel=null"],
        ["--set", "autoscaling.targetCPUUtilizationPercentage=null", "--set", "autoscaling.behavior=null"],
        ["--set", "podDisruptionBudget.maxUnavailable=50%", "--set", "replicaCount=0"],
        ["--set", "nodeSelector=null", "--set", "tolerations=null", "--set", "affinity=null"],
    ],
    ids=["redis-nulls", "hpa-nulls", "percent-and-zero", "scheduling-nulls"],
)
def test_sensible_values_and_deletions_are_accepted(helm: str, args: list[str]) -> None:
    proc = template(helm, *args)
    assert proc.returncode == 0, proc.stderr
