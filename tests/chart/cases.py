"""The values matrix the chart is rendered with: named cases of helm arguments, plus every example file."""

from __future__ import annotations

from tests.conftest import CHART, EXAMPLES

RELEASE = "aifactory"
NAMESPACE = "aifactory"
INLINE_URL = "redis://:s3cr3t-pw@redis.dev.svc:6379/0"


def sets(*pairs: str) -> list[str]:
    """`--set k=v` arguments; a pair starting with `string:` becomes `--set-string`."""
    args: list[str] = []
    for pair in pairs:
        args += (
            ["--set-string", pair.removeprefix("string:")] if pair.startswith("string:") else ["--set", pair]
        )
    return args


EXTERNAL = sets("redis.enabled=true", "redis.externalSecretName=aifactory-redis")

CASES: dict[str, list[str]] = {
    "defaults": [],
    "external-secret": EXTERNAL,
    "inline-url": sets("redis.enabled=true", f"redis.url={INLINE_URL}"),
    "inline-url-changed": sets("redis.enabled=true", "redis.url=redis://:new-pw@redis.dev.svc:6379/0"),
    "inline-url-other-channel": sets(
        "redis.enabled=true", f"redis.url={INLINE_URL}", "redis.channel=other:events"
    ),
    "terminals-host": [
        *EXTERNAL,
        *sets("replicaCount=3", "terminals.mode=host", "terminals.runtimeClassName=gvisor"),
        *sets("terminals.host.resources.requests.memory=256Mi"),
    ],
    "terminals-host-sandbox-off": [*EXTERNAL, *sets("terminals.mode=host", "server.terminalSandbox=off")],
    "channel-override": [*EXTERNAL, *sets("redis.channel=team-b:events")],
    "redis-disabled-keeps-source": sets("redis.externalSecretName=aifactory-redis", "replicaCount=2"),
    "hpa": [
        *EXTERNAL,
        *sets(
            "autoscaling.enabled=true",
            "autoscaling.minReplicas=2",
            "autoscaling.maxReplicas=10",
            "resources.requests.cpu=250m",
        ),
    ],
    "hpa-memory-only": [
        *EXTERNAL,
        *sets(
            "autoscaling.enabled=true",
            "autoscaling.targetCPUUtilizationPercentage=null",
            "autoscaling.targetMemoryUtilizationPercentage=75",
            "resources.requests.memory=256Mi",
        ),
    ],
    "ingress-no-affinity": [*EXTERNAL, *sets("replicaCount=3", "ingress.enabled=true")],
    "ingress-nginx-affinity": [
        *EXTERNAL,
        *sets(
            "replicaCount=3",
            "ingress.enabled=true",
            "ingress.className=nginx",
            "ingress.terminalAffinity.enabled=true",
            "ingress.terminalAffinity.mode=balanced",
            "ingress.tls[0].secretName=aifactory-tls",
            "ingress.tls[0].hosts[0]=aifactory.example.com",
            "ingress.websocketTimeoutSeconds=7200",
        ),
    ],
    "ingress-traefik-affinity": [
        *EXTERNAL,
        *sets(
            "replicaCount=3",
            "ingress.enabled=true",
            "ingress.className=traefik",
            "ingress.terminalAffinity.enabled=true",
            "ingress.terminalAffinity.controller=traefik",
            "ingress.terminalAffinity.cookieName=pin",
            "string:service.annotations.team=web",
            "string:service.annotations.traefik\\.ingress\\.kubernetes\\.io/service\\.sticky\\.cookie\\.samesite=strict",
        ),
    ],
    "user-annotations-override": [
        "-f",
        str(EXAMPLES / "production.yaml"),
        *sets(
            "string:ingress.annotations.nginx\\.ingress\\.kubernetes\\.io/proxy-read-timeout=120",
            "string:podLabels.app\\.kubernetes\\.io/name=not-the-selector",
            "string:podLabels.team=web",
            "string:podAnnotations.prometheus\\.io/scrape=true",
        ),
    ],
    "existing-auth-reloader": [*EXTERNAL, *sets("auth.existingSecret=my-auth", "reloader.enabled=true")],
    "null-deletions": [
        *EXTERNAL,
        *sets(
            "redis.url=null",
            "redis.channel=null",
            "image.tag=null",
            "ingress.enabled=true",
            "ingress.className=null",
            "ingress.annotations=null",
            "ingress.terminalAffinity.cookieName=null",
            "ingress.terminalAffinity.enabled=true",
            "topologySpread.topologyKey=null",
            "resources=null",
            "extraEnv=null",
            "autoscaling.behavior=null",
            "auth.existingSecret=null",
        ),
    ],
    "extra-env-pdb-percent": sets(
        "replicaCount=4",
        "extraEnv[0].name=FEATURE_X",
        "string:extraEnv[0].value=1",
        "podDisruptionBudget.maxUnavailable=25%",
        "topologySpread.enabled=false",
        "serviceAccount.create=false",
        "fullnameOverride=af",
    ),
}

TIERS = [
    *EXTERNAL,
    *sets(
        "tiers.ui.replicaCount=2",
        "tiers.agents.replicaCount=3",
        "tiers.agents.resources.requests.cpu=500m",
        "tierRoutes[0].path=/api/tasks",
        "tierRoutes[0].tier=agents",
        "tierRoutes[1].path=/",
        "tierRoutes[1].tier=ui",
    ),
]
CASES.update(
    {
        "hpa-chart-defaults": sets("autoscaling.enabled=true"),
        "tiers": TIERS,
        "tiers-ingress-traefik": [
            *TIERS,
            *sets(
                "ingress.enabled=true",
                "ingress.terminalAffinity.enabled=true",
                "ingress.terminalAffinity.controller=traefik",
                "tierRoutes[2].path=/ws/terminal",
                "tierRoutes[2].tier=agents",
            ),
        ],
        "openshift-force": sets("global.compatibility.openshift.adaptSecurityContext=force"),
        "probes-custom": sets(
            "customLivenessProbe.tcpSocket.port=http",
            "readinessProbe.enabled=false",
            "startupProbe.enabled=true",
            "livenessProbe.initialDelaySeconds=20",
        ),
        "network-policy-redis-peers": [
            *EXTERNAL,
            *sets(
                "networkPolicy.enabled=true",
                "networkPolicy.redisPeers[0].podSelector.matchLabels.app=redis",
                "networkPolicy.ingressNSPodMatchLabels.app\\.kubernetes\\.io/name=ingress-nginx",
            ),
        ],
    }
)

EXAMPLE_FILES = sorted(EXAMPLES.glob("*.yaml"))
for _example in EXAMPLE_FILES:
    CASES[f"example:{_example.stem}"] = ["-f", str(_example)]


def template_args(case: str) -> list[str]:
    """Full `helm template` argument list for a case."""
    return ["template", RELEASE, str(CHART), "--namespace", NAMESPACE, *CASES[case]]
