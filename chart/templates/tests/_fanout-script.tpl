{{- /*
The Python run by the `helm test` pod (the server image itself, so websockets and aifactory.auth are there).
Subscribe on every replica (connect through the Service until each replica has said hello), fire one
broadcast on one replica, and require that every replica's socket receives it exactly then. No braces pairs
below: this file is a Helm template.
*/ -}}
{{- define "aifactory.test.fanoutScript" -}}
import asyncio, json, os, sys, urllib.request, uuid
from websockets.asyncio.client import connect
from aifactory.auth import mint_token

urls = [u.rstrip("/") for u in os.environ["AIFACTORY_URLS"].split(",") if u.strip()]
want = int(os.environ["EXPECTED_REPLICAS"])
patience = float(os.environ.get("FANOUT_TIMEOUT", "15"))
secret = os.environ["AIFACTORY_AUTH_SECRET"]
user = mint_token(secret, "helm-test", "helm-test", "user", 300)
emitter = mint_token(secret, "helm-test", "helm-test", "service", 300)


def say(msg):
    print("helm-test:", msg, flush=True)


async def subscribe_everywhere():
    sockets = dict()
    for attempt in range(40 * want):
        base = urls[attempt % len(urls)].replace("http", "ws", 1)
        ws = await connect(base + "/ws/events?token=" + user, open_timeout=10)
        hello = json.loads(await asyncio.wait_for(ws.recv(), 10))
        if hello["replica"] in sockets:
            await ws.close()
        else:
            sockets[hello["replica"]] = ws
            say("subscribed on replica " + hello["replica"])
        if len(sockets) >= want:
            break
    return sockets


def fire(marker):
    body = json.dumps(dict(scope="broadcast", event=dict(type="helm-test", marker=marker))).encode()
    req = urllib.request.Request(urls[0] + "/api/events", data=body, method="POST")
    req.add_header("Content-Type", "application/json")
    req.add_header("Authorization", "Bearer " + emitter)
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())["replica"]


async def received(replica, ws, marker):
    async def wait():
        while True:
            if json.loads(await ws.recv()).get("marker") == marker:
                return
    try:
        await asyncio.wait_for(wait(), patience)
        say("OK   replica %s received it" % replica)
        return True
    except Exception as exc:
        say("FAIL replica %s did not receive it (%s): is redis.enabled=true?" % (replica, type(exc).__name__))
        return False
    finally:
        await ws.close()


async def main():
    sockets = await subscribe_everywhere()
    if len(sockets) < want:
        say("FAIL: reached %d of %d replicas through %s" % (len(sockets), want, urls))
        return 1
    marker = uuid.uuid4().hex
    origin = await asyncio.to_thread(fire, marker)
    say("fired a broadcast on replica " + origin)
    results = await asyncio.gather(*(received(r, ws, marker) for r, ws in sockets.items()))
    failed = results.count(False)
    say("PASS: fan-out reached all %d replicas" % len(sockets) if not failed else "FAIL: %d replica(s) missed it" % failed)
    return 1 if failed else 0


sys.exit(asyncio.run(main()))
{{- end }}
