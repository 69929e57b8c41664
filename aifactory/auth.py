"""HS256 JWT tokens: mint for `aifactory-server token`, verify for every socket and API call.

Claims: sub (user id), org (org id), role (user|admin|service), exp. The algorithm is pinned so a token
cannot pick its own (no `none`, no RS/HS confusion). Errors name the problem, never the token.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import jwt

from aifactory.constants import MAX_ID_LEN

ALGORITHM = "HS256"
ROLES = ("user", "admin", "service")
EMITTER_ROLES = frozenset({"admin", "service"})
DEFAULT_TTL = 3600


class AuthError(Exception):
    """Why a token was refused, safe to send to the client and to log."""


@dataclass(frozen=True)
class Principal:
    """Who is calling: the verified claims of a token."""

    user_id: str
    org_id: str
    role: str
    exp: float

    @property
    def can_emit(self) -> bool:
        return self.role in EMITTER_ROLES


def mint_token(secret: str, user_id: str, org_id: str, role: str = "user", ttl: float = DEFAULT_TTL) -> str:
    """A signed token for `user_id` in `org_id` valid for `ttl` seconds (negative ttl = already expired)."""
    if role not in ROLES:
        raise ValueError(f"role {role!r} is not one of {', '.join(ROLES)}")
    if not user_id or not org_id:
        raise ValueError("user and org must be non-empty")
    claims = {"sub": user_id, "org": org_id, "role": role, "exp": int(time.time() + ttl)}
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def verify_token(secret: str, token: str | None) -> Principal:
    """The caller of a valid token; AuthError for a missing, expired, forged or incomplete one."""
    if not token:
        raise AuthError("missing token (use ?token= or an Authorization: Bearer header)")
    try:
        claims = jwt.decode(
            token, secret, algorithms=[ALGORITHM], options={"require": ["sub", "org", "role", "exp"]}
        )
    except jwt.ExpiredSignatureError:
        raise AuthError("token expired") from None
    except jwt.MissingRequiredClaimError as exc:
        raise AuthError(f"token lacks the {exc.claim!r} claim") from None
    except jwt.InvalidSignatureError:
        raise AuthError("token signature is invalid") from None
    except jwt.PyJWTError:
        raise AuthError("token is malformed") from None
    sub, org, role = claims.get("sub"), claims.get("org"), claims.get("role")
    if not (
        isinstance(sub, str)
        and 0 < len(sub) <= MAX_ID_LEN
        and isinstance(org, str)
        and 0 < len(org) <= MAX_ID_LEN
    ):
        raise AuthError(f"token sub and org must be non-empty strings of at most {MAX_ID_LEN} characters")
    if role not in ROLES:
        raise AuthError(f"token role must be one of {', '.join(ROLES)}")
    return Principal(user_id=sub, org_id=org, role=role, exp=float(claims["exp"]))


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, else None."""
    if not authorization:
        return None
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()
