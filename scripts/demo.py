"""`make demo`: three real replicas with exactly the env the chart renders, fanning events out through Redis.

1. `helm template` the chart with examples/production.yaml (3 replicas, Redis on) and read the Deployment's
   container env. Secret references are resolved locally (a demo redis-server, a generated auth secret)
   and printed as such; PORT is the only value changed, since three local processes cannot share :8000.
2. Start a redis-server and three `aifactory-server` processes with that env; connect one WebSocket
   client to each replica (alice and bob in org-a, carol in org-b).
3. Fire a broadcast, a user event (bob) and an org event (org-b) on replica 1, and show who got what
   plus each replica's startup line.
4. Recovery: carol drops her socket, two events fire, she resumes on replica 2 with `?since=`.
5. Render examples/tiers.yaml: a Deployment per traffic tier (ui, agents) and the Ingress paths to each.
Everything started here is stopped on exit, Ctrl-C or error.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote

import yaml
from websockets.asyncio.client import connect

from aifactory.auth import mint_token
from harness.app_servers import ServerProc, base_env, http_json, new_secret
from harness.ports import free_port
from harness.redis_servers import RedisServer

ROOT = Path(__file__).resolve().parent.parent

HELM = ROOT / ".tools/helm4/helm"
VALUES = ROOT / "examples/production.yaml"
TIERS = ROOT / "examples/tiers.yaml"
STARTUP = "Redis pub/sub"
CLIENTS = [("replica1", "alice", "org-a"), ("replica2", "bob", "org-a"), ("replica3", "carol", "org-b")]
EVENTS = [  # (scope, target, event, who should get it)
    ("broadcast", None, {"type": "demo.broadcast", "text": "hello everyone"}, {"alice", "bob", "carol"}),
    ("user", "bob", {"type": "demo.user", "text": "hi bob"}, {"bob"}),
    ("org", "org-b", {"type": "demo.org", "text": "org-b only"}, {"carol"}),
]
WAIT = 20.0


def say(text: str = "") -> None:
    print(text, flush=True)


def render(values: Path) -> list[dict[str, Any]]:
    """The objects `helm template` renders for one example values file."""
    if not HELM.is_file():
        raise SystemExit(f"demo: {HELM} is missing; run `make demo` (it fetches helm)")
    cmd = [
        str(HELM),
        "template",
        "aifactory",
        str(ROOT / "chart"),
        "-f",
        str(values),
        "--namespace",
        "aifactory",
    ]
    say(f"$ {' '.join(Path(c).name if c == str(HELM) else c for c in cmd)}")
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"demo: helm template failed:\n{done.stderr}")
    return [d for d in yaml.safe_load_all(done.stdout) if d]


def chart_env() -> list[dict[str, Any]]:
    """The server container's env list, as `helm template` renders it for examples/production.yaml."""
    deployment = next(d for d in render(VALUES) if d.get("kind") == "Deployment")
    replicas = deployment["spec"].get("replicas")
    container = next(c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == "server")
    say(f"  rendered Deployment {deployment['metadata']['name']}: replicas={replicas}")
    return container.get("env", [])


def show_tiers() -> None:
    """examples/tiers.yaml: one release, a Deployment per traffic tier, the Ingress routing paths to tiers."""
    docs = render(TIERS)
    for d in docs:
        if d["kind"] == "Deployment":
            replicas = d["spec"].get("replicas", "HPA")
            say(f"  Deployment {d['metadata']['name']}: replicas={replicas}")
    routes = sorted(
        (p["path"], p["backend"]["service"]["name"])
        for d in docs
        if d["kind"] == "Ingress"
        for rule in d["spec"]["rules"]
        for p in rule["http"]["paths"]
    )
    say("  Ingress: " + ", ".join(f"{path} -> {svc}" for path, svc in routes))


def resolve_env(env: list[dict[str, Any]], redis_url: str, secret: str) -> dict[str, str]:
    """Turn the rendered env into concrete values, printing where every value comes from."""
    resolved: dict[str, str] = {}
    local = {
        "REDIS_URL": (redis_url, "the demo redis-server started below"),
        "AIFACTORY_AUTH_SECRET": (secret, "generated for this demo, not printed"),
    }
    say("  pod env the chart renders, and what the demo gives the servers:")
    for item in env:
        name = item["name"]
        if "value" in item:
            resolved[name] = str(item["value"])
            say(f"    {name}={item['value']}")
        elif "secretKeyRef" in item.get("valueFrom", {}):
            ref = item["valueFrom"]["secretKeyRef"]
            if name not in local:
                raise SystemExit(f"demo: no local value for {name} (Secret {ref['name']}/{ref['key']})")
            value, origin = local[name]
            resolved[name] = value
            shown = value if name == "REDIS_URL" else "<generated>"
            say(f"    {name} <- Secret {ref['name']}/{ref['key']}: resolved locally to {shown} ({origin})")
        else:
            raise SystemExit(f"demo: env {name} uses {item.get('valueFrom')}, which the demo cannot resolve")
    return resolved


async def run(servers: list[ServerProc], secret: str) -> bool:
    sockets = {}
    for (name, user, org), server in zip(CLIENTS, servers, strict=True):
        ws = await connect(server.ws_url(token=mint_token(secret, user, org)), open_timeout=WAIT)
        hello = json.loads(await asyncio.wait_for(ws.recv(), WAIT))
        sockets[user] = ws
        say(f"  {user:<5} ({org}) connected to {name} = replica {hello['replica']}")
    service = mint_token(secret, "demo", "ops", "service")
    say("\nFiring on replica1 (POST /api/events with a service token):")
    for scope, target, event, _ in EVENTS:
        body = {"scope": scope, "event": event} | ({"target": target} if target else {})
        status, reply = await asyncio.to_thread(
            http_json, "POST", servers[0].http + "/api/events", body, service
        )
        if status != 202:
            raise SystemExit(f"demo: POST /api/events answered {status}: {reply}")
        say(f"  {scope:<9} {target or '':<6} {json.dumps(event)}")
    marker = uuid.uuid4().hex  # fired last: once a client has it, it has everything fired before
    await asyncio.to_thread(
        http_json,
        "POST",
        servers[0].http + "/api/events",
        {"scope": "broadcast", "event": {"type": "demo.done", "marker": marker}},
        service,
    )
    received: dict[str, list[str]] = {}
    for user, ws in sockets.items():
        got = received.setdefault(user, [])

        async def drain(ws: Any = ws, got: list[str] = got) -> None:
            while True:
                frame = json.loads(await ws.recv())
                if frame.get("marker") == marker:
                    return
                got.append(frame.get("type", "?"))

        await asyncio.wait_for(drain(), WAIT)
        await ws.close()
    say("\nWho received what:")
    ok = True
    for scope, target, event, audience in EVENTS:
        got_it = {user for user, types in received.items() if event["type"] in types}
        match = got_it == audience and all(received[u].count(event["type"]) == 1 for u in got_it)
        ok &= match
        label = f"{scope}{':' + target if target else ''}"
        say(
            f"  {label:<12} -> {', '.join(sorted(got_it)) or 'nobody':<18} "
            f"{'OK' if match else 'UNEXPECTED (wanted ' + ', '.join(sorted(audience)) + ')'}"
        )
    return ok


async def show_recovery(servers: list[ServerProc], secret: str) -> bool:
    """carol drops her socket, two events fire meanwhile, she resumes on another replica with `since`."""
    token = mint_token(secret, "carol", "org-b")
    service = mint_token(secret, "demo", "ops", "service")
    ws = await connect(servers[2].ws_url(token=token), open_timeout=WAIT)
    await asyncio.wait_for(ws.recv(), WAIT)  # hello
    await asyncio.to_thread(
        http_json,
        "POST",
        servers[0].http + "/api/events",
        {"scope": "org", "target": "org-b", "event": {"type": "demo.before"}},
        service,
    )
    last = json.loads(await asyncio.wait_for(ws.recv(), WAIT))
    await ws.close()
    say(f"  carol saw demo.before with _offset {last['_offset']!r}, then dropped her socket")
    for n in (1, 2):
        await asyncio.to_thread(
            http_json,
            "POST",
            servers[0].http + "/api/events",
            {"scope": "org", "target": "org-b", "event": {"type": f"demo.missed.{n}"}},
            service,
        )
    say("  while she was away replica1 fired demo.missed.1 and demo.missed.2")
    url = servers[1].ws_url(token=token) + "&since=" + quote(last["_offset"])
    async with connect(url, open_timeout=WAIT) as ws:
        hello = json.loads(await asyncio.wait_for(ws.recv(), WAIT))
        got = [json.loads(await asyncio.wait_for(ws.recv(), WAIT))["type"] for _ in range(hello["replayed"])]
    say(
        f"  she reconnected to replica2 with since=: hello recovered={hello['recovered']} "
        f"replayed={hello['replayed']} -> {', '.join(got)}"
    )
    return bool(hello["recovered"]) and got == ["demo.missed.1", "demo.missed.2"]


def main() -> int:
    def interrupted(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupted)
    workdir = Path(tempfile.mkdtemp(prefix="aifactory-demo-"))
    redis = RedisServer()
    servers: list[ServerProc] = []
    try:
        say("== 1. Render the chart with examples/production.yaml")
        env = chart_env()
        secret = new_secret()
        chart = resolve_env(env, redis.url, secret)

        say(f"\n== 2. Start redis-server on 127.0.0.1:{redis.port} and three aifactory-server replicas")
        redis.start()
        for i in range(3):
            server_env = base_env(workdir) | chart
            server = ServerProc(name=f"replica{i + 1}", env=server_env, workdir=workdir, port=free_port())
            servers.append(server.start())
        say(
            "  local-only additions: PORT=<free port> per replica (pods each have their own IP, here they "
            f"share one), AIFACTORY_HOST=127.0.0.1, audit log and dev files under {workdir}"
        )
        for server in servers:
            server.wait_ready()
            server.wait_bridge("connected")
        say("  each replica's startup line:")
        for server in servers:
            line = next(ln for ln in server.log_text().splitlines() if STARTUP in ln)
            say(f"    {server.name} (:{server.port}): {line.split(': ', 1)[1]}")

        say("\n== 3. One WebSocket client per replica")
        ok = asyncio.run(run(servers, secret))
        say(
            "\n"
            + (
                "Every event reached exactly its audience, across replicas."
                if ok
                else "Some deliveries were wrong."
            )
        )
        say("\n== 4. Recovery: a client that reconnects anywhere with ?since= gets what it missed")
        ok &= asyncio.run(show_recovery(servers, secret))
        say("\n== 5. Traffic tiers: examples/tiers.yaml (ui and agents scale apart, one bus)")
        show_tiers()
        say(f"\nServer logs: {workdir}/replica*.log")
        return 0 if ok else 1
    except KeyboardInterrupt:
        say("\ndemo: interrupted")
        return 130
    except (OSError, RuntimeError, TimeoutError, AssertionError) as exc:
        say(f"\ndemo failed: {exc}")
        return 1
    finally:
        say("== Stopping everything the demo started")
        for server in servers:
            server.stop()
        redis.stop()


if __name__ == "__main__":
    sys.exit(main())
