"""The rendered Service, as kube-proxy would run it: a TCP round-robin over the ready endpoints.

Runs inside a container named like the Service, on the pods' network, so `http://<service>:<port>` from
the helm test pod resolves (aardvark-dns) and lands on the replicas as it would in a cluster. Endpoints are
re-read from a file on every connection: the test rewrites it as pods become ready or go away, exactly
what the Endpoints controller does for kube-proxy. Stdlib only (it runs on the server image's Python).
Usage: python service_proxy.py PORT ENDPOINTS_FILE   (one host:port per line)
"""

import asyncio
import itertools
import sys

PORT = int(sys.argv[1])
ENDPOINTS = sys.argv[2]
counter = itertools.count()


def endpoints() -> list[str]:
    with open(ENDPOINTS) as f:
        return [line.strip() for line in f if line.strip()]


async def pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        writer.close()


async def accept(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
    ready = endpoints()
    if not ready:
        client_w.close()
        return
    host, port = ready[next(counter) % len(ready)].rsplit(":", 1)
    try:
        up_r, up_w = await asyncio.wait_for(asyncio.open_connection(host, int(port)), 5)
    except (OSError, TimeoutError):
        client_w.close()
        return
    await asyncio.gather(pump(client_r, up_w), pump(up_r, client_w))


async def main() -> None:
    server = await asyncio.start_server(accept, "0.0.0.0", PORT)
    print(f"service proxy on :{PORT}", flush=True)
    async with server:
        await server.serve_forever()


asyncio.run(main())
