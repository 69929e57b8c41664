"""The chart's rendered objects as real podman containers: a one-node cluster of exactly what helm printed.

`podman kube play` (4.3) runs the Deployment's pod template itself: image, env from the Secrets (as podman
secrets), both securityContexts, read-only root, the /tmp emptyDir, resource limits. What it gets wrong is
patched here, each in one place, and nothing else is touched (docs/image.md has the full table):
- containerPort without hostPort is published on the host's same port, so a second replica fails with
  "address already in use": the copy played drops `ports` (the ingress reaches pods by IP, as in a cluster);
- `replicas: 3` plays three pods that share ONE named volume "tmp" (not an emptyDir per pod): each replica
  is played on its own, with `replicas: 1`, a pod name as the ReplicaSet would give it, and its own volume;
- probes become podman healthchecks running `curl localhost:0` (named port, no curl in the image): the test
  runs each probe itself against the pod, on the port the name resolves to;
- Secret YAML cannot be played (podman wants a JSON map of base64 values): each Secret's `data` becomes a
  podman secret of the same name. The Service becomes `service_proxy.py` in a container of its name.
"""

from __future__ import annotations

import base64
import copy
import ipaddress
import json
import secrets
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import CHART, EXAMPLES, run_helm
from tests.image.podman import HERE, inspect, podman, wait_until

NAMESPACE = "aif"


def render(helm: str, release: str, tag: str) -> list[dict[str, Any]]:
    """The multi-replica production example, as helm renders it, with this build's tag and own Secret."""
    result = run_helm(
        helm, "template", release, str(CHART), "--namespace", NAMESPACE,
        "-f", str(EXAMPLES / "production.yaml"),
        "--set", f"image.tag={tag}", "--set", f"redis.externalSecretName={release}-redis",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def one(docs: list[dict[str, Any]], kind: str, hook: str | None = None) -> dict[str, Any]:
    found = [
        d
        for d in docs
        if d["kind"] == kind and d["metadata"].get("annotations", {}).get("helm.sh/hook") == hook
    ]
    assert len(found) == 1, f"expected one {kind} (hook={hook}), got {len(found)}"
    return found[0]


def named_port(container: dict[str, Any], port: int | str) -> int:
    """A probe's or Service's port: a number, or the name of one of the container's ports."""
    if isinstance(port, int):
        return port
    return next(p["containerPort"] for p in container["ports"] if p["name"] == port)


@dataclass
class Pod:
    """One played replica: podman pod `pod`, its server container, its address on the pods' network."""

    name: str
    ip: str
    image: str

    @property
    def pod(self) -> str:
        return f"{self.name}-pod-0"

    @property
    def container(self) -> str:
        return f"{self.pod}-server"

    @property
    def volume(self) -> str:
        return f"{self.name}-tmp"

    def url(self, port: int, path: str = "") -> str:
        return f"http://{self.ip}:{port}{path}"


@dataclass
class Cluster:
    """Network, Redis, Secrets, Service and replicas of one rendered release; `close()` removes them all."""

    helm: str
    server_image: str
    redis_image: str
    release: str = field(default_factory=lambda: f"img{secrets.token_hex(3)}")
    pods: list[Pod] = field(default_factory=list)
    _created: list[tuple[str, ...]] = field(default_factory=list)
    endpoints_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="aif-endpoints-")))
    _docs: list[dict[str, Any]] = field(default_factory=list)
    auth_secret: str = ""
    endpoint_listeners: list[Callable[[set[str]], None]] = field(default_factory=list)
    stopped: dict[str, tuple[float, str]] = field(default_factory=dict)  # pod -> (stop seconds, its logs)
    subnet: ipaddress.IPv4Network | ipaddress.IPv6Network = field(
        default_factory=lambda: ipaddress.ip_network("0.0.0.0/32")
    )

    # -- rendered objects -------------------------------------------------------------------------
    def render(self, tag: str) -> list[dict[str, Any]]:
        return render(self.helm, self.release, tag)

    @property
    def docs(self) -> list[dict[str, Any]]:
        return self._docs

    @property
    def deployment(self) -> dict[str, Any]:
        return one(self.docs, "Deployment")

    @property
    def server_spec(self) -> dict[str, Any]:
        return self.deployment["spec"]["template"]["spec"]["containers"][0]

    def retag(self, tag: str) -> str:
        """Push the same image under a new tag (a CI pipeline's next release); removed again by close()."""
        ref = f"{self.server_image.rsplit(':', 1)[0]}:{tag}"
        podman("tag", self.server_image, ref)
        self._created.insert(0, ("untag", self.server_image, ref))
        return ref

    def upgrade(self, docs: list[dict[str, Any]]) -> None:
        """`helm upgrade`: the release is now `docs`; Secrets stay as they are (the chart's lookup)."""
        self._docs = docs

    @property
    def port(self) -> int:
        return named_port(self.server_spec, self.server_spec["readinessProbe"]["httpGet"]["port"])

    def ip(self, host: int) -> str:
        return str(self.subnet.network_address + host)

    # -- lifecycle --------------------------------------------------------------------------------
    def start(self) -> Cluster:
        tag = self.server_image.rsplit(":", 1)[1]
        self._docs = self.render(tag)
        auth = one(self.docs, "Secret")
        self.auth_secret = base64.b64decode(auth["data"]["AIFACTORY_AUTH_SECRET"]).decode()
        assert self.server_spec["image"] == self.server_image, "the chart renders this build's image"
        podman("network", "create", self.release)
        self._created.append(("network", "rm", "-f", self.release))
        net = inspect("network", self.release)
        self.subnet = ipaddress.ip_network(net["subnets"][0]["subnet"])
        self.redis_name = f"{self.release}-redis"
        self.redis_ip = self.ip(250)
        podman(
            "run", "-d", "--name", self.redis_name, "--network", self.release, "--ip", self.redis_ip,
            "--read-only", "--cap-drop=ALL", self.redis_image,
        )  # fmt: skip
        self._created.append(("rm", "-f", "-t", "0", self.redis_name))
        # The operator's Secret (the spec's step 2), then every Secret the chart rendered.
        self._secret(f"{self.release}-redis", {"REDIS_URL": f"redis://{self.redis_name}:6379/0"})
        for doc in self.docs:
            if doc["kind"] == "Secret":
                data = {k: base64.b64decode(v).decode() for k, v in doc["data"].items()}
                self._secret(doc["metadata"]["name"], data)
        replicas = self.deployment["spec"]["replicas"]
        self.pods = [self.play(self.deployment, f"{self.deployment['metadata']['name']}-{i}", 10 + i)
                     for i in range(replicas)]  # fmt: skip
        for pod in self.pods:
            self.wait_ready(pod)
        self._start_service()
        return self

    def _secret(self, name: str, data: dict[str, str]) -> None:
        """A podman secret as kube play reads it: a JSON map of base64 values."""
        encoded = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
        podman("secret", "create", name, "-", input=json.dumps(encoded))
        self._created.append(("secret", "rm", name))

    def play(self, deployment: dict[str, Any], name: str, host: int) -> Pod:
        """One replica of `deployment`'s pod template, with only the patches the module docstring lists."""
        doc = copy.deepcopy(deployment)
        doc["metadata"]["name"] = name
        doc["spec"]["replicas"] = 1
        spec = doc["spec"]["template"]["spec"]
        for container in spec["containers"]:
            container.pop("ports", None)
            for mount in container.get("volumeMounts", []):
                mount["name"] = f"{name}-{mount['name']}"
        for volume in spec.get("volumes", []):
            volume["name"] = f"{name}-{volume['name']}"
        pod = Pod(name, self.ip(host), spec["containers"][0]["image"])
        self._created.append(("volume", "rm", "-f", pod.volume))
        self._created.append(("pod", "rm", "-f", "-t", "0", pod.pod))
        podman("kube", "play", "--network", self.release, "--ip", pod.ip, "-", input=yaml.safe_dump(doc))
        return pod

    def probe(self, pod: Pod, kind: str) -> int:
        """Run the rendered `kind` (livenessProbe/readinessProbe) against `pod`: the HTTP status."""
        get = self.server_spec[kind]["httpGet"]
        url = pod.url(named_port(self.server_spec, get["port"]), get["path"])
        try:
            with urllib.request.urlopen(url, timeout=self.server_spec[kind]["timeoutSeconds"]) as resp:
                return resp.status
        except OSError:
            return 0

    def wait_ready(self, pod: Pod, timeout: float = 60) -> None:
        wait_until(
            lambda: self.probe(pod, "livenessProbe") == 200 and self.probe(pod, "readinessProbe") == 200,
            timeout,
            f"{pod.name}'s rendered liveness and readiness probes",
        )

    def stop_pod(self, pod: Pod) -> None:
        """Delete a pod as Kubernetes does: out of the endpoints, SIGTERM to the server, the grace period,
        then the pod's network, then remove it and its emptyDir."""
        self.update_endpoints(leaving=pod)
        grace = self.deployment["spec"]["template"]["spec"].get("terminationGracePeriodSeconds", 30)
        started = time.monotonic()
        # The kubelet stops the app containers first and the sandbox (the network) after: `podman pod stop`
        # stops the infra container at the same time, and the server's closing frames can be lost with it.
        podman("stop", "-t", str(grace), pod.container, timeout=grace + 30)
        podman("pod", "stop", pod.pod)
        logs = podman("logs", pod.container)
        self.stopped[pod.name] = (time.monotonic() - started, logs.stdout + logs.stderr)
        podman("pod", "rm", "-f", pod.pod)
        podman("volume", "rm", "-f", pod.volume, check=False)
        self.pods.remove(pod)
        self.update_endpoints()

    # -- the Service ------------------------------------------------------------------------------
    def _start_service(self) -> None:
        service = one(self.docs, "Service")
        self.service_name = service["metadata"]["name"]
        spec_port = service["spec"]["ports"][0]
        self.service_port = spec_port["port"]
        self.target_port = named_port(self.server_spec, spec_port["targetPort"])
        self.endpoints_dir.chmod(0o755)
        self.update_endpoints()
        podman(
            "run", "-d", "--name", self.service_name, "--network", self.release, "--ip", self.ip(5),
            "--read-only", "--cap-drop=ALL",
            "--sysctl", f"net.ipv4.ip_unprivileged_port_start={self.service_port}",
            "-v", f"{HERE / 'service_proxy.py'}:/svc/service_proxy.py:ro",
            "-v", f"{self.endpoints_dir}:/svc/endpoints:ro",
            self.server_image,
            "python", "/svc/service_proxy.py", str(self.service_port), "/svc/endpoints/ready",
        )  # fmt: skip
        self._created.append(("rm", "-f", "-t", "0", self.service_name))
        wait_until(
            lambda: "service proxy on" in podman("logs", self.service_name).stdout, 30, "the Service proxy"
        )

    def update_endpoints(self, leaving: Pod | None = None) -> None:
        """What the Endpoints controller does: the Service (and every listener, e.g. the ingress) routes to
        the pods that are ready now, never to one that is `leaving` (being deleted)."""
        ready = [p for p in self.pods if p is not leaving and self.probe(p, "readinessProbe") == 200]
        for listener in self.endpoint_listeners:
            listener({f"{p.ip}:{self.port}" for p in ready})
        path = self.endpoints_dir / "ready"
        tmp = path.with_suffix(".new")
        tmp.write_text("".join(f"{p.ip}:{self.target_port}\n" for p in ready))
        tmp.chmod(0o644)
        tmp.rename(path)

    # -- helm test ----------------------------------------------------------------------------------
    def run_hook(self, timeout: float = 120) -> tuple[int, str]:
        """Play the rendered `helm test` Pod unchanged; its exit code and logs once it has finished."""
        pod = one(self.docs, "Pod", hook="test")
        name = pod["metadata"]["name"]
        container = f"{name}-{pod['spec']['containers'][0]['name']}"
        try:
            podman("kube", "play", "--network", self.release, "-", input=yaml.safe_dump(pod))
            code = int(podman("wait", container, timeout=timeout).stdout.strip())
            logs = podman("logs", container)
            return code, logs.stdout + logs.stderr
        finally:
            podman("pod", "rm", "-f", "-t", "0", name, check=False)

    def close(self) -> None:
        for args in reversed(self._created):
            podman(*args, check=False)
