"""A tiny Kubernetes API server on loopback for tests that need a cluster where none runs: real clients
(the kubernetes Python client, real helm) reach it through a kubeconfig. Each test supplies a route for
the resources it cares about; discovery for the kinds the chart renders is built in for helm."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from urllib.parse import parse_qs, urlparse


@dataclass
class Reply:
    status: int
    body: object
    content_type: str = "application/json"


# A route gets the URL path and parsed query of a GET; None means "not mine" (404 unless discovery).
Route = Callable[[str, dict[str, list[str]]], Reply | None]


def status(code: int, reason: str, message: str) -> Reply:
    """A metav1.Status error reply, the shape clients turn into typed errors (e.g. helm's IsNotFound)."""
    body = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": reason, "code": code}
    return Reply(code, {**body, "message": message})


# group/version -> (resource, kind, namespaced) for every kind the chart can render, so helm can map them.
RESOURCES: dict[str, list[tuple[str, str, bool]]] = {
    "v1": [
        ("namespaces", "Namespace", False),
        ("secrets", "Secret", True),
        ("configmaps", "ConfigMap", True),
        ("services", "Service", True),
        ("serviceaccounts", "ServiceAccount", True),
        ("pods", "Pod", True),
    ],
    "apps/v1": [("deployments", "Deployment", True)],
    "policy/v1": [("poddisruptionbudgets", "PodDisruptionBudget", True)],
    "autoscaling/v2": [("horizontalpodautoscalers", "HorizontalPodAutoscaler", True)],
    "networking.k8s.io/v1": [("ingresses", "Ingress", True)],
}


def discovery(path: str) -> Reply | None:
    """Legacy (non-aggregated) discovery: /version, /api, /apis and one APIResourceList per group/version."""
    if path == "/version":
        return Reply(200, {"major": "1", "minor": "30", "gitVersion": "v1.30.0", "platform": "linux/amd64"})
    if path == "/api":
        return Reply(200, {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []})
    groups: dict[str, list[str]] = {}
    for group_version in RESOURCES:
        if "/" in group_version:
            group, version = group_version.split("/")
            groups.setdefault(group, []).append(version)
    if path == "/apis":
        return Reply(
            200,
            {
                "kind": "APIGroupList",
                "apiVersion": "v1",
                "groups": [
                    {
                        "name": group,
                        "versions": [{"groupVersion": f"{group}/{v}", "version": v} for v in versions],
                        "preferredVersion": {
                            "groupVersion": f"{group}/{versions[0]}",
                            "version": versions[0],
                        },
                    }
                    for group, versions in groups.items()
                ],
            },
        )
    group_version = path.removeprefix("/api/") if path == "/api/v1" else path.removeprefix("/apis/")
    if path.startswith(("/api/", "/apis/")) and group_version in RESOURCES:
        resources = [
            {
                "name": name,
                "singularName": kind.lower(),
                "namespaced": namespaced,
                "kind": kind,
                "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"],
            }
            for name, kind, namespaced in RESOURCES[group_version]
        ]
        return Reply(
            200,
            {
                "kind": "APIResourceList",
                "apiVersion": "v1",
                "groupVersion": group_version,
                "resources": resources,
            },
        )
    return None


class FakeKubeAPI:
    """Serves GETs through `route` (then discovery if asked); records every request; refuses writes (405)."""

    def __init__(self, route: Route, *, with_discovery: bool = False) -> None:
        self.route = route
        self.with_discovery = with_discovery
        self.requests: list[tuple[str, str]] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> FakeKubeAPI:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FakeKubeAPI:
        return self.start()

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.stop()

    def write_kubeconfig(self, path: Path, namespace: str) -> Path:
        """A kubeconfig whose only context points at this server with a dummy token."""
        path.write_text(
            f"""apiVersion: v1
kind: Config
clusters: [{{name: fake, cluster: {{server: "{self.url}"}}}}]
users: [{{name: u, user: {{token: t}}}}]
contexts: [{{name: fake, context: {{cluster: fake, user: u, namespace: {namespace}}}}}]
current-context: fake
"""
        )
        return path

    def answer(self, method: str, raw_path: str) -> Reply:
        self.requests.append((method, raw_path))
        if method != "GET":  # every user of this fake only reads
            return status(405, "MethodNotAllowed", f"{method} not served")
        url = urlparse(raw_path)
        reply = self.route(url.path, parse_qs(url.query))
        if reply is None and self.with_discovery:
            reply = discovery(url.path)
        return reply or status(404, "NotFound", "no such path")

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                reply = api.answer(self.command, self.path)
                body = reply.body
                data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
                self.send_response(reply.status)
                self.send_header("Content-Type", reply.content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

        return Handler
