"""`--cluster`: live smoke check of a running release with the `kubernetes` client (imported only here).

Checks, in the spec's words: the release's Deployment/HPA replica counts; that the Secret behind REDIS_URL
exists and has the key REDIS_URL (its data is never read out or printed); and the pods' logs: every pod
printed "Redis pub/sub enabled — replica <uuid> on channel '<ch>'" with a distinct uuid (and one channel),
and none printed the "disabled" line while more than one replica runs.
API calls used (all GET): list Deployments, list HorizontalPodAutoscalers (autoscaling/v2), read Secret,
list Pods, read Pod log.
"""

from __future__ import annotations

import os

from aifactory.constants import DISABLED_LINE as DISABLED
from aifactory.constants import ENABLED_LINE_RE as ENABLED
from validator.model import ERROR, WARNING, Finding, Loc

LOG_LINES = 5000

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable


class ClusterError(Exception):
    """Cannot reach or read the cluster: reported as a usage error (exit 2)."""


def _finding(rule: str, severity: str, message: str, fix: str, where: str) -> Finding:
    return Finding(rule, severity, message, fix, "", Loc(where))


def _redis_secret(deployment: object) -> tuple[str, str] | None:
    """(secret name, key) of the REDIS_URL env var of the web container, or None when Redis is off."""
    for container in deployment.spec.template.spec.containers or []:  # type: ignore[attr-defined]
        for env in container.env or []:
            if env.name == "REDIS_URL" and env.value_from and env.value_from.secret_key_ref:
                ref = env.value_from.secret_key_ref
                return ref.name, ref.key
            if env.name == "REDIS_URL":
                return "", ""  # plain value: itself a finding
    return None


def check(api_client: object, namespace: str, release: str) -> tuple[list[str], list[Finding]]:
    """Run every check; return (facts for the report, findings)."""
    from kubernetes import client

    apps = client.AppsV1Api(api_client)
    core = client.CoreV1Api(api_client)
    autoscaling = client.AutoscalingV2Api(api_client)
    selector = f"app.kubernetes.io/instance={release},app.kubernetes.io/component=web"
    facts: list[str] = []
    findings: list[Finding] = []

    deployments = apps.list_namespaced_deployment(namespace, label_selector=selector).items
    if not deployments:
        findings.append(
            _finding(
                "cluster-deployment-missing",
                ERROR,
                f"no Deployment with labels {selector} in namespace {namespace}",
                "check --release and --namespace (helm list -A)",
                f"namespace/{namespace}",
            )
        )
        return facts, findings
    dep = deployments[0]
    where = f"deployment/{dep.metadata.name}"
    desired = dep.spec.replicas if dep.spec.replicas is not None else 1
    ready = (dep.status.ready_replicas or 0) if dep.status else 0
    facts.append(f"{where}: {desired} desired, {ready} ready")
    hpas = autoscaling.list_namespaced_horizontal_pod_autoscaler(namespace, label_selector=selector).items
    high = desired
    if hpas:
        hpa = hpas[0]
        high = hpa.spec.max_replicas
        current = hpa.status.current_replicas if hpa.status else None
        facts.append(f"hpa/{hpa.metadata.name}: min {hpa.spec.min_replicas}, max {high}, current {current}")
    if ready < desired:
        findings.append(
            _finding(
                "cluster-replicas-not-ready",
                WARNING,
                f"{where}: only {ready} of {desired} replicas are ready",
                f"kubectl describe {where} -n {namespace}",
                where,
            )
        )

    secret_ref = _redis_secret(dep)
    if secret_ref == ("", ""):
        findings.append(
            _finding(
                "cluster-redis-url-plain",
                ERROR,
                f"{where}: REDIS_URL is a plain env value, not a Secret reference",
                "set redis.externalSecretName (the chart renders a secretKeyRef)",
                where,
            )
        )
    elif secret_ref is not None:
        name, key = secret_ref
        facts.append(f"REDIS_URL from secret/{name} key {key}")
        try:
            secret = core.read_namespaced_secret(name, namespace)
        except client.ApiException as exc:
            if exc.status != 404:
                raise
            findings.append(
                _finding(
                    "cluster-secret-missing",
                    ERROR,
                    f"secret/{name} (REDIS_URL) does not exist in {namespace}",
                    f"kubectl create secret generic {name} -n {namespace} "
                    "--from-literal=REDIS_URL='redis://:<password>@host:6379/0'",
                    f"secret/{name}",
                )
            )
        else:
            keys = set(secret.data or {}) | set(secret.string_data or {})
            if "REDIS_URL" not in keys:
                shown = ", ".join(sorted(keys)) or "none"
                findings.append(
                    _finding(
                        "cluster-secret-key-missing",
                        ERROR,
                        f"secret/{name} has no key REDIS_URL (keys: {shown})",
                        "recreate it with --from-literal=REDIS_URL=... "
                        "(the key name must be exactly REDIS_URL)",
                        f"secret/{name}",
                    )
                )

    pods = core.list_namespaced_pod(namespace, label_selector=selector).items
    running = [p for p in pods if p.status and p.status.phase == "Running"]
    facts.append(f"{len(running)} running pod(s) of {len(pods)}")
    seen: dict[str, str] = {}
    channels: dict[str, str] = {}
    many = max(len(running), desired, high or 0) > 1
    for pod in running:
        pname = f"pod/{pod.metadata.name}"
        log = core.read_namespaced_pod_log(pod.metadata.name, namespace, tail_lines=LOG_LINES) or ""
        matches = list(ENABLED.finditer(log))
        match = matches[-1] if matches else None  # the last one counts (the current process)
        if DISABLED in log and many:
            findings.append(
                _finding(
                    "cluster-redis-disabled",
                    ERROR,
                    f"{pname} logged '{DISABLED}' while {max(len(running), desired)} replicas run: "
                    "its clients only see events fired on their own replica",
                    "set redis.enabled=true with redis.externalSecretName, then helm upgrade",
                    pname,
                )
            )
        if match is None:
            if secret_ref is not None or many:
                findings.append(
                    _finding(
                        "cluster-pod-no-redis-line",
                        ERROR,
                        f"{pname} never logged 'Redis pub/sub enabled — replica <uuid> on channel ...'",
                        f"kubectl logs {pod.metadata.name} -n {namespace} (is REDIS_URL set and reachable?)",
                        pname,
                    )
                )
            continue
        replica, channel = match.group(1), match.group(2)
        facts.append(f"{pname}: replica {replica} on channel '{channel}'")
        if replica in seen:
            findings.append(
                _finding(
                    "cluster-replica-id-duplicate",
                    ERROR,
                    f"{pname} and pod/{seen[replica]} report the same replica id {replica}",
                    "replica ids must be unique per process; check for a fixed id in extraEnv or the image",
                    pname,
                )
            )
        seen[replica] = pod.metadata.name
        channels[pod.metadata.name] = channel
    if len(set(channels.values())) > 1:
        findings.append(
            _finding(
                "cluster-channel-mismatch",
                ERROR,
                "pods use different channels: " + ", ".join(f"{p}={c}" for p, c in sorted(channels.items())),
                "finish the rollout (kubectl rollout status) so every pod runs the same redis.channel",
                where,
            )
        )
    return facts, findings


def smoke_check(args: object, out: Callable[[str], None]) -> int:
    """CLI entry for --cluster: prints facts and findings, returns the exit code."""
    from validator import report
    from validator.cli import EXIT_INVALID, EXIT_OK, UsageError

    try:
        import kubernetes
        from kubernetes import config
    except ImportError:
        raise UsageError("--cluster needs the kubernetes client: pip install 'aifactory[cluster]'") from None
    kubeconfig = getattr(args, "kubeconfig", None)
    context = getattr(args, "context", None)
    in_pod = (
        not kubeconfig
        and "KUBERNETES_SERVICE_HOST" in os.environ
        and not os.path.exists(os.path.expanduser(os.environ.get("KUBECONFIG", "~/.kube/config")))
    )
    try:
        if in_pod:  # running inside a pod (e.g. a CI job in the cluster): its ServiceAccount
            config.load_incluster_config()
            api_client = kubernetes.client.ApiClient()
            with open("/var/run/secrets/kubernetes.io/serviceaccount/namespace") as fh:
                active = {"context": {"namespace": fh.read().strip()}}
        else:
            api_client = config.new_client_from_config(config_file=kubeconfig, context=context)
            _, active = config.list_kube_config_contexts(config_file=kubeconfig)
    except (config.ConfigException, OSError, TypeError, ValueError) as exc:
        raise UsageError(f"cannot load kubeconfig: {exc}") from None
    namespace = (
        getattr(args, "namespace", None) or (active or {}).get("context", {}).get("namespace") or "default"
    )
    release = getattr(args, "release", "aifactory")
    try:
        facts, findings = check(api_client, namespace, release)
    except kubernetes.client.ApiException as exc:
        raise UsageError(f"Kubernetes API refused a request: {exc.status} {exc.reason}") from None
    except Exception as exc:  # urllib3 connection errors and the like
        if type(exc).__module__.startswith(("urllib3", "kubernetes", "socket", "ssl")) or isinstance(
            exc, OSError
        ):
            raise UsageError(f"cannot reach the cluster: {type(exc).__name__}: {exc}") from None
        raise
    finally:
        api_client.close()
    if getattr(args, "strict", False):
        for f in findings:
            f.severity = ERROR
    fmt = getattr(args, "format", "text")
    if fmt == "json":
        out(
            report.as_json(
                findings, [f"cluster:{namespace}/{release}"], bool(getattr(args, "strict", False)), ""
            )
        )
    elif fmt == "github":
        out(report.github(findings))
    elif fmt == "sarif":
        out(report.sarif(findings, {}))
    else:
        for fact in facts:
            out(f"  {fact}\n")
        out(report.text(findings, [f"release {release} in namespace {namespace}"], False))
    return EXIT_INVALID if any(f.severity == ERROR for f in findings) else EXIT_OK
