"""rediss:// against a real TLS-only redis-server (certificates from a throwaway CA): fan-out works with the
CA configured, and certificate verification is really on without it."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from harness.redis_servers import RedisServer
from tests.bus.conftest import ReplicaFactory, records, recv, wait_until

PASSWORD = "tls-only-pw"


@pytest.fixture
def tls_redis(tmp_path: Path) -> Iterator[tuple[RedisServer, Path]]:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    ca_file, cert_file, key_file = tmp_path / "ca.pem", tmp_path / "cert.pem", tmp_path / "key.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    cert.private_key_pem.write_to_path(str(key_file))
    server = RedisServer(password=PASSWORD)
    server.extra_args = ["--port", "0", "--tls-port", str(server.port)]  # TLS only: no plaintext port
    server.extra_args += ["--tls-cert-file", str(cert_file), "--tls-key-file", str(key_file)]
    server.extra_args += ["--tls-ca-cert-file", str(ca_file), "--tls-auth-clients", "no"]
    server.start()
    yield server, ca_file
    server.stop()


async def test_rediss_fanout_with_the_ca(
    tls_redis: tuple[RedisServer, Path], replicas: ReplicaFactory
) -> None:
    server, ca_file = tls_redis
    url = f"rediss://:{PASSWORD}@127.0.0.1:{server.port}/0?ssl_ca_certs={ca_file}"
    a, b = await replicas(url), await replicas(url)
    alice_b = b.client("alice", "acme")
    a.bus.send_to_org("acme", {"type": "over-tls"})
    assert await recv(alice_b) == {"type": "over-tls"}


async def test_rediss_verifies_the_certificate(
    tls_redis: tuple[RedisServer, Path], replicas: ReplicaFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="aifactory")
    server, _ = tls_redis
    a = await replicas(f"rediss://:{PASSWORD}@127.0.0.1:{server.port}/0", wait=False)  # no CA given
    plain = await replicas(f"redis://:{PASSWORD}@127.0.0.1:{server.port}/0", wait=False)  # no TLS at all
    await wait_until(lambda: records(caplog, a, logging.ERROR) != [], "the TLS handshake to be refused")
    await wait_until(lambda: records(caplog, plain, logging.ERROR) != [], "plaintext to be refused")
    assert a.bus.state == plain.bus.state == "connecting"  # never connected
    [error] = records(caplog, a, logging.ERROR)
    assert "certificate verify failed" in error.getMessage() or "SSL" in error.getMessage()
    assert PASSWORD not in caplog.text
