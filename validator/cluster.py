"""`--cluster`: live smoke check of a running release with the `kubernetes` client (imported only here).

What it reads (all GET): the release's Deployments and autoscaling/v2 HPAs (selected by labels: one release
may render several Deployments, one per traffic tier), the Secret behind each REDIS_URL (key names only,
never the data), the pods of each Deployment (by its own selector), and each running pod's `/readyz`
through the API server's pod proxy. /readyz answers what the process is doing now (replica id, Redis
bridge state, channel), so unlike a log line it cannot scroll away or rotate out.
Returns facts and findings; the CLI prints them with the same reporters as the values check.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

from validator.model import ERROR, WARNING, Finding, Loc

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# Every Deployment and HPA the chart renders carries these (the release's own and the chart's part-of label).
SELECTOR = "app.kubernetes.io/instance={release},app.kubernetes.io/part-of=aifactory"
HTTP_PORT_NAME = "http"  # the web container's port; /readyz is served there
SUMMARIES = {
    "cluster-deployment-missing": "no Deployment with the release's labels in the namespace",
    "cluster-replicas-not-ready": "a Deployment has fewer ready replicas than desired",
    "cluster-redis-url-plain": "REDIS_URL is a plain env value instead of a Secret reference",
    "cluster-secret-missing": "the Secret behind REDIS_URL does not exist",
    "cluster-secret-key-missing": "the Secret behind REDIS_URL has no key REDIS_URL",
    "cluster-pod-readyz-unreadable": "a running pod's /readyz could not be read through the API server",
    "cluster-pod-not-ready": "a running pod's /readyz says it is starting or stopping",
    "cluster-pod-redis-off": "REDIS_URL is configured but a pod's /readyz reports the Redis bridge disabled",
    "cluster-redis-disabled": "a pod runs without Redis while more than one replica runs or may run",
    "cluster-redis-not-connected": "a pod's Redis bridge is connecting or reconnecting right now",
    "cluster-replica-id-duplicate": "two pods report the same replica id",
    "cluster-channel-mismatch": "pods of one release use different Redis channels",
}


class ClusterError(Exception):
    """No usable kubeconfig, or the API server is unreachable or refuses: a usage error (exit 2)."""


@dataclass(frozen=True)
class ClusterOptions:
    """Which release to check, and how to reach its cluster."""

    release: str = "aifactory"
    namespace: str | None = None
    kubeconfig: str | None = None
    context: str | None = None


class _Release:
    """What the whole release looks like (one bus across every Deployment) and what its pods said so far."""

    __slots__ = ("channels", "count", "redis", "seen")

    def __init__(self, count: int, redis: bool) -> None:
        self.count = count  # replicas that run or may run, all Deployments together
        self.redis = redis  # some Deployment sets REDIS_URL
        self.seen: dict[object, str] = {}  # replica id (as /readyz reported it) -> pod name
        self.channels: dict[str, object] = {}  # pod name -> channel (as /readyz reported it)

    @property
    def many(self) -> bool:
        return self.count > 1


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


def _http_port(pod: object) -> int | None:
    """The pod's `http` container port (the API server's pod proxy needs a number, not a port name)."""
    ports = [p for c in pod.spec.containers or [] for p in c.ports or []]  # type: ignore[attr-defined]
    named = [p for p in ports if p.name == HTTP_PORT_NAME] or ports
    return named[0].container_port if named else None


def _secret_findings(core: object, namespace: str, name: str, facts: list[str]) -> list[Finding]:
    from kubernetes import client

    try:
        secret = core.read_namespaced_secret(name, namespace)  # type: ignore[attr-defined]
    except client.ApiException as exc:
        if exc.status != 404:
            raise
        fix = (
            f"kubectl create secret generic {name} -n {namespace} "
            "--from-literal=REDIS_URL='redis://:<password>@host:6379/0'"
        )
        message = f"secret/{name} (REDIS_URL) does not exist in {namespace}"
        return [_finding("cluster-secret-missing", ERROR, message, fix, f"secret/{name}")]
    keys = set(secret.data or {}) | set(secret.string_data or {})
    facts.append(f"REDIS_URL from secret/{name} key REDIS_URL")
    if "REDIS_URL" in keys:
        return []
    shown = ", ".join(sorted(keys)) or "none"
    return [
        _finding(
            "cluster-secret-key-missing",
            ERROR,
            f"secret/{name} has no key REDIS_URL (keys: {shown})",
            "recreate it with --from-literal=REDIS_URL=... (the key name must be exactly REDIS_URL)",
            f"secret/{name}",
        )
    ]


def read_readyz(core: object, namespace: str, pod: object) -> tuple[int, dict[str, Any] | None]:
    """(HTTP status, /readyz body or None) of one pod, through the API server's pod proxy."""
    from kubernetes import client

    port = _http_port(pod)
    name = pod.metadata.name if port is None else f"{pod.metadata.name}:{port}"  # type: ignore[attr-defined]
    try:
        resp = core.connect_get_namespaced_pod_proxy_with_path(  # type: ignore[attr-defined]
            name, namespace, "readyz", _preload_content=False
        )
        status, raw = resp.status, resp.data
    except client.ApiException as exc:  # 503 while starting/stopping still carries the body
        status, raw = exc.status, exc.body
    try:
        body = json.loads(raw or b"")
    except (ValueError, TypeError):
        body = None
    return status, body if isinstance(body, dict) and "replica" in body else None


def _pod_findings(
    core: object, namespace: str, pods: list[Any], release: _Release
) -> tuple[list[str], list[Finding]]:
    """Ask each running pod what it runs: replica id, bridge state, channel; compare across pods."""
    facts: list[str] = []
    findings: list[Finding] = []
    seen, channels = release.seen, release.channels
    for pod in pods:
        pname = f"pod/{pod.metadata.name}"
        status, body = read_readyz(core, namespace, pod)
        if body is None:
            findings.append(
                _finding(
                    "cluster-pod-readyz-unreadable",
                    ERROR,
                    f"{pname}: GET /readyz through the API server's pod proxy answered {status} "
                    "without the server's readiness body",
                    f"kubectl get --raw /api/v1/namespaces/{namespace}/pods/{pod.metadata.name}:"
                    f"{_http_port(pod)}/proxy/readyz (needs get on pods/proxy); kubectl logs "
                    f"{pod.metadata.name} -n {namespace}",
                    pname,
                )
            )
            continue
        replica, bridge, channel = body.get("replica"), body.get("bridge"), body.get("channel")
        facts.append(f"{pname}: replica {replica} on channel '{channel}' (bridge {bridge})")
        if body.get("status") != "ready":
            findings.append(
                _finding(
                    "cluster-pod-not-ready",
                    WARNING,
                    f"{pname}: /readyz says {body.get('status')!r} (HTTP {status})",
                    f"kubectl describe {pname} -n {namespace}; check again once the rollout settles",
                    pname,
                )
            )
        if bridge == "disabled":
            if release.many:
                findings.append(
                    _finding(
                        "cluster-redis-disabled",
                        ERROR,
                        f"{pname} runs without Redis (bridge disabled) while {release.count} replicas run "
                        "or may run: its clients only see events fired on their own replica",
                        "set redis.enabled=true with redis.externalSecretName, then helm upgrade",
                        pname,
                    )
                )
            if release.redis:
                findings.append(
                    _finding(
                        "cluster-pod-redis-off",
                        ERROR,
                        f"{pname}: the Deployment sets REDIS_URL but /readyz reports the bridge disabled",
                        f"kubectl logs {pod.metadata.name} -n {namespace} (does the image read REDIS_URL?)",
                        pname,
                    )
                )
            continue
        if bridge in ("connecting", "reconnecting"):
            findings.append(
                _finding(
                    "cluster-redis-not-connected",
                    WARNING,
                    f"{pname}: Redis bridge is {bridge}: events from other replicas do not reach it now",
                    "check that Redis is reachable from the pods (host, port, password, TLS)",
                    pname,
                )
            )
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
        seen[replica] = _name(pod)
        channels[_name(pod)] = channel
    return facts, findings


def _name(obj: Any) -> str:
    """metadata.name of an object the API server listed (always set there; "" keeps the types honest)."""
    meta = obj.metadata
    return str(meta.name) if meta is not None and meta.name else ""


def check(api_client: object, namespace: str, release: str) -> tuple[list[str], list[Finding]]:
    """Run every check; return (facts for the report, findings)."""
    from kubernetes import client

    apps = client.AppsV1Api(api_client)
    core = client.CoreV1Api(api_client)
    autoscaling = client.AutoscalingV2Api(api_client)
    selector = SELECTOR.format(release=release)
    facts: list[str] = []
    findings: list[Finding] = []

    deployments = apps.list_namespaced_deployment(namespace, label_selector=selector).items
    if not deployments:
        message = f"no Deployment with labels {selector} in namespace {namespace}"
        fix = "check --release and --namespace (helm list -A)"
        return facts, [_finding("cluster-deployment-missing", ERROR, message, fix, f"namespace/{namespace}")]
    hpas = autoscaling.list_namespaced_horizontal_pod_autoscaler(namespace, label_selector=selector).items
    hpa_by_target = {
        h.spec.scale_target_ref.name: h for h in hpas if h.spec.scale_target_ref.kind == "Deployment"
    }
    pods_by_dep: dict[str, list[Any]] = {}
    count = 0
    secrets: set[str] = set()
    redis = False
    for dep in sorted(deployments, key=lambda d: _name(d)):
        where = f"deployment/{_name(dep)}"
        desired = dep.spec.replicas if dep.spec.replicas is not None else 1
        ready = (dep.status.ready_replicas or 0) if dep.status else 0
        facts.append(f"{where}: {desired} desired, {ready} ready")
        high = desired
        hpa = hpa_by_target.get(_name(dep))
        if hpa is not None:
            high = hpa.spec.max_replicas or desired
            current = hpa.status.current_replicas if hpa.status else None
            facts.append(f"hpa/{_name(hpa)}: min {hpa.spec.min_replicas}, max {high}, current {current}")
        if ready < desired:
            message = f"{where}: only {ready} of {desired} replicas are ready"
            fix = f"kubectl describe {where} -n {namespace}"
            findings.append(_finding("cluster-replicas-not-ready", WARNING, message, fix, where))
        secret_ref = _redis_secret(dep)
        if secret_ref == ("", ""):
            message = f"{where}: REDIS_URL is a plain env value, not a Secret reference"
            fix = "set redis.externalSecretName (the chart renders a secretKeyRef)"
            findings.append(_finding("cluster-redis-url-plain", ERROR, message, fix, where))
        elif secret_ref is not None and secret_ref[0] not in secrets:
            secrets.add(secret_ref[0])
            findings += _secret_findings(core, namespace, secret_ref[0], facts)
        redis = redis or secret_ref is not None
        labels = (dep.spec.selector.match_labels or {}) if dep.spec.selector else {}
        pod_selector = ",".join(f"{k}={v}" for k, v in sorted(labels.items())) or selector
        pods = core.list_namespaced_pod(namespace, label_selector=pod_selector).items
        running = [p for p in pods if p.status and p.status.phase == "Running"]
        facts.append(f"{len(running)} running pod(s) of {len(pods)}")
        pods_by_dep[_name(dep)] = running
        count += max(len(running), desired, high)
    # The bus spans the release: two tiers of one replica each still need Redis to share events.
    whole = _Release(count, redis)
    for running in pods_by_dep.values():
        pod_facts, pod_findings = _pod_findings(core, namespace, running, whole)
        facts += pod_facts
        findings += pod_findings
    channels = whole.channels
    if len(set(channels.values())) > 1:
        findings.append(
            _finding(
                "cluster-channel-mismatch",
                ERROR,
                "pods use different channels: " + ", ".join(f"{p}={c}" for p, c in sorted(channels.items())),
                "finish the rollout (kubectl rollout status) so every pod runs the same redis.channel",
                f"namespace/{namespace}",
            )
        )
    return facts, findings


def _connect(options: ClusterOptions) -> tuple[object, str]:
    """(api client, namespace): --kubeconfig/--context, else $KUBECONFIG, else the pod's ServiceAccount."""
    import kubernetes
    from kubernetes import config

    kubeconfig = options.kubeconfig
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
            api_client = config.new_client_from_config(config_file=kubeconfig, context=options.context)
            _, active = config.list_kube_config_contexts(config_file=kubeconfig)
    except (config.ConfigException, OSError, TypeError, ValueError) as exc:
        raise ClusterError(f"cannot load kubeconfig: {exc}") from None
    namespace = options.namespace or (active or {}).get("context", {}).get("namespace") or "default"
    return api_client, namespace


def smoke_check(options: ClusterOptions) -> tuple[str, list[str], list[Finding]]:
    """(what was checked, facts, findings) for a release; ClusterError when the cluster cannot answer."""
    try:
        import kubernetes
    except ImportError:
        raise ClusterError(
            "--cluster needs the kubernetes client: pip install 'aifactory-deploy[cluster]'"
        ) from None
    api_client, namespace = _connect(options)
    try:
        facts, findings = check(api_client, namespace, options.release)
    except kubernetes.client.ApiException as exc:
        raise ClusterError(f"Kubernetes API refused a request: {exc.status} {exc.reason}") from None
    except Exception as exc:  # urllib3 connection errors and the like
        if type(exc).__module__.startswith(("urllib3", "kubernetes", "socket", "ssl")) or isinstance(
            exc, OSError
        ):
            raise ClusterError(f"cannot reach the cluster: {type(exc).__name__}: {exc}") from None
        raise
    finally:
        api_client.close()  # type: ignore[attr-defined]
    return f"release {options.release} in namespace {namespace}", facts, findings
