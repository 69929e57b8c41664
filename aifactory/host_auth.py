"""Signing web-tier → terminal-host requests, so only the web tier can attach to a host's shells.

The key is `HMAC-SHA256(AIFACTORY_AUTH_SECRET, LABEL)`: domain-separated from the token key and from the
envelope key, so a leaked host key can mint neither tokens nor events. A request names the user, the
terminal, the host it is meant for (a restarted host has a new id), the caller's token expiry and a
timestamp; the MAC covers all of them. The host accepts a signature for `MAX_SKEW` seconds only, and never
reads a user token at all: a user who reaches a host's port directly has nothing it will accept.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import dataclass

LABEL = b"aifactory terminal-host request v1"
SCHEME = "h1"
MAX_SKEW = 30.0
HEADER = "x-aifactory-host-request"


class HostAuthError(ValueError):
    """The request is not signed by the web tier (str() is the one-line reason sent back)."""


@dataclass(frozen=True)
class HostRequest:
    user: str
    terminal: str
    host: str
    token_exp: int
    ts: int


class HostRequestSigner:
    """Signs (web replica) and verifies (terminal host) attach requests with the derived host key."""

    __slots__ = ("_key",)

    def __init__(self, secret: str) -> None:
        if not secret:
            raise ValueError("a host request signer needs the shared auth secret")
        self._key = hmac.digest(secret.encode(), LABEL, "sha256")

    def __repr__(self) -> str:
        return "HostRequestSigner(<key hidden>)"

    def _mac(self, fields: list[str]) -> str:
        return hmac.new(self._key, "\n".join(fields).encode(), hashlib.sha256).hexdigest()

    def sign(self, *, user: str, terminal: str, host: str, token_exp: int, now: float | None = None) -> str:
        ts = str(int(now if now is not None else time.time()))
        fields = [SCHEME, ts, str(int(token_exp)), host, terminal, user]
        return ".".join([SCHEME, ts, str(int(token_exp)), self._mac(fields)]) + "." + host

    def verify(
        self, header: str | None, *, user: str, terminal: str, now: float | None = None
    ) -> HostRequest:
        if not header:
            raise HostAuthError("unsigned request: terminal hosts accept only the web tier")
        parts = header.split(".", 4)
        if len(parts) != 5 or parts[0] != SCHEME or not parts[1].isdigit() or not parts[2].isdigit():
            raise HostAuthError("malformed request signature")
        _, ts, exp, mac, host = parts
        expected = self._mac([SCHEME, ts, exp, host, terminal, user])
        if not hmac.compare_digest(mac, expected):
            raise HostAuthError("bad request signature")
        if abs((now if now is not None else time.time()) - int(ts)) > MAX_SKEW:
            raise HostAuthError("stale request signature")
        return HostRequest(user=user, terminal=terminal, host=host, token_exp=int(exp), ts=int(ts))
