"""Parse REDIS_URL into a `RedisTarget` (single instance, Sentinel or Cluster).

One parser for the server's bridge and the validator's rules, so both accept and refuse exactly the same
URLs. It is stdlib-only on purpose: the validator imports it on its cold-start path, so redis-py must not be
imported here. Every error is one line that names what is wrong and how to fix it, and never contains the
password. Syntax reference: docs/redis-url.md.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from urllib.parse import parse_qsl, quote, unquote

__all__ = ["RedisTarget", "RedisUrlError", "parse_redis_url"]

_SCHEMES: dict[str, tuple[str, bool]] = {
    "redis": ("single", False),
    "rediss": ("single", True),
    "unix": ("single", False),
    "redis+sentinel": ("sentinel", False),
    "rediss+sentinel": ("sentinel", True),
    "redis+cluster": ("cluster", False),
    "rediss+cluster": ("cluster", True),
}
_DEFAULT_PORT = {"single": 6379, "sentinel": 26379, "cluster": 6379}
_FORMS = "redis://, rediss://, unix://, redis+sentinel://, rediss+sentinel://, redis+cluster:// or rediss+cluster://"

# Query options we understand, with how to convert them (mirrors redis-py's from_url parsers).
_BOOL_WORDS = {
    "1": True,
    "true": True,
    "yes": True,
    "on": True,
    "0": False,
    "false": False,
    "no": False,
    "off": False,
}
_INT_OPTIONS = {"db", "max_connections", "protocol"}
_FLOAT_OPTIONS = {"socket_timeout", "socket_connect_timeout", "health_check_interval"}
_BOOL_OPTIONS = {"socket_keepalive", "retry_on_timeout", "ssl_check_hostname"}
_STR_OPTIONS = {
    "client_name",
    "ssl_cert_reqs",
    "ssl_ca_certs",
    "ssl_ca_path",
    "ssl_certfile",
    "ssl_keyfile",
    "username",
    "sentinel_username",
}
_SECRET_OPTIONS = {"password", "sentinel_password"}
_KNOWN_OPTIONS = _INT_OPTIONS | _FLOAT_OPTIONS | _BOOL_OPTIONS | _STR_OPTIONS | _SECRET_OPTIONS
_SSL_CERT_REQS = {"none", "optional", "required"}
_HOSTNAME = re.compile(r"^[A-Za-z0-9_.\-]+$")


class RedisUrlError(ValueError):
    """A REDIS_URL that cannot work; the message is one line, names the fix, and never holds the password."""


@dataclass(frozen=True)
class RedisTarget:
    """Where and how to reach Redis. `password` and `sentinel_password` are hidden from repr."""

    kind: str  # "single" | "sentinel" | "cluster"
    scheme: str
    hosts: tuple[tuple[str, int], ...] = ()
    unix_path: str | None = None
    db: int = 0
    service_name: str | None = None
    tls: bool = False
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    sentinel_username: str | None = None
    sentinel_password: str | None = field(default=None, repr=False)
    options: dict[str, object] = field(default_factory=dict)

    def redacted(self) -> str:
        """The URL in canonical form with every secret replaced by `***` — the only form we ever log."""
        userinfo = ""
        if self.username or self.password:
            user = quote(self.username or "", safe="")
            userinfo = f"{user}:***@" if self.password else f"{user}@"
        if self.unix_path is not None:
            location = self.unix_path
        else:
            location = ",".join(f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in self.hosts)
        path = ""
        if self.kind == "sentinel":
            path = f"/{quote(self.service_name or '', safe='')}/{self.db}"
        elif self.kind == "single" and self.unix_path is None:
            path = f"/{self.db}"
        query: list[str] = []
        if self.unix_path is not None and self.db:
            query.append(f"db={self.db}")
        if self.sentinel_username:
            query.append(f"sentinel_username={quote(self.sentinel_username, safe='')}")
        if self.sentinel_password:
            query.append("sentinel_password=***")
        query += [f"{k}={quote(str(v), safe='')}" for k, v in sorted(self.options.items())]
        suffix = ("?" + "&".join(query)) if query else ""
        return f"{self.scheme}://{userinfo}{location}{path}{suffix}"

    def __str__(self) -> str:
        return self.redacted()


def _str_or_none(value: object) -> str | None:
    return None if value is None else str(value)


def _fail(message: str) -> RedisUrlError:
    return RedisUrlError(f"REDIS_URL: {message}")


def _split_hostport(item: str, kind: str, index: int) -> tuple[str, int]:
    """`host`, `host:port` or `[v6]:port` → (host, port); the default port depends on the kind."""
    where = f"host #{index + 1}" if kind != "single" else "host"
    if not item:
        raise _fail(
            f"{where} is empty; write host:port (percent-encode '@', '/', ':' or ',' in the password)"
        )
    port_text = ""
    if item.startswith("["):
        end = item.find("]")
        if end == -1:
            raise _fail(f"{where}: IPv6 address is missing its closing ']'; write [addr]:port")
        host, rest = item[1:end], item[end + 1 :]
        if rest:
            if not rest.startswith(":"):
                raise _fail(f"{where}: expected ':port' after the IPv6 address; write [addr]:port")
            port_text = rest[1:]
    elif item.count(":") == 1:
        host, port_text = item.split(":")
    elif ":" in item:
        raise _fail(f"{where}: bare IPv6 addresses need brackets; write [addr]:port")
    else:
        host = item
    if not host or not (_HOSTNAME.match(host) or ":" in host):
        raise _fail(
            f"{where} is not a valid host name; write host:port "
            "(percent-encode '@', '/', ':' or ',' in the password)"
        )
    if port_text == "" and ":" in item and not item.startswith("["):
        raise _fail(f"{where}: port is empty; write host:port, e.g. {host}:{_DEFAULT_PORT[kind]}")
    if port_text == "":
        return host, _DEFAULT_PORT[kind]
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise _fail(f"{where}: port must be a number between 1 and 65535 (percent-encode special characters)")
    return host, int(port_text)


def _parse_db(text: str, source: str) -> int:
    if not text.isdigit():
        raise _fail(f"database {source} must be a non-negative integer, e.g. /0")
    return int(text)


def _parse_query(query: str, kind: str) -> dict[str, object]:
    opts: dict[str, object] = {}
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError:
        raise _fail("query string is malformed; write ?name=value&name2=value2") from None
    for name, raw in pairs:
        if name not in _KNOWN_OPTIONS:
            known = ", ".join(sorted(_KNOWN_OPTIONS - _SECRET_OPTIONS))
            raise _fail(f"unknown query option '{name}'; supported: {known}, password, sentinel_password")
        if name in opts:
            raise _fail(f"query option '{name}' is given twice; keep one")
        if name in _SECRET_OPTIONS:
            opts[name] = raw
            continue
        value: object
        if name in _INT_OPTIONS:
            if not raw.isdigit():
                raise _fail(f"query option '{name}' must be a non-negative integer")
            value = int(raw)
        elif name in _FLOAT_OPTIONS:
            try:
                value = float(raw)
            except ValueError:
                raise _fail(f"query option '{name}' must be a number of seconds, e.g. {name}=5") from None
            if value < 0:
                raise _fail(f"query option '{name}' must not be negative")
        elif name in _BOOL_OPTIONS:
            if raw.lower() not in _BOOL_WORDS:
                raise _fail(f"query option '{name}' must be true or false")
            value = _BOOL_WORDS[raw.lower()]
        else:
            value = raw
        opts[name] = value
    if "ssl_cert_reqs" in opts and str(opts["ssl_cert_reqs"]).lower() not in _SSL_CERT_REQS:
        raise _fail("query option 'ssl_cert_reqs' must be none, optional or required")
    if kind != "sentinel" and ("sentinel_password" in opts or "sentinel_username" in opts):
        raise _fail("sentinel_password/sentinel_username only apply to redis+sentinel:// URLs; remove them")
    return opts


def parse_redis_url(url: str) -> RedisTarget:
    """Parse REDIS_URL; raise RedisUrlError (one line, no password) when it cannot work."""
    if not isinstance(url, str) or not url.strip():
        raise _fail("is empty; set it to e.g. redis://host:6379/0, or unset it to run without Redis")
    url = url.strip()
    if any(c.isspace() for c in url):
        raise _fail("contains whitespace; remove it (percent-encode spaces in the password as %20)")
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise _fail(f"has no scheme; start it with one of {_FORMS}")
    scheme = scheme.lower()
    if scheme not in _SCHEMES:
        shown = scheme if re.fullmatch(r"[a-z0-9+.\-]{1,32}", scheme) else "?"
        raise _fail(f"unsupported scheme '{shown}'; use one of {_FORMS}")
    kind, tls = _SCHEMES[scheme]
    rest, _, query = rest.partition("?")
    if "@" in query:
        raise _fail("has '@' after '?'; percent-encode '?' in the password as %3F")
    if "#" in query or "#" in rest:
        raise _fail("contains '#'; percent-encode it as %23 (e.g. in the password)")
    opts = _parse_query(query, kind)

    # userinfo ends at the LAST '@' before the path, so a password may contain an unencoded '@'
    if scheme == "unix":
        at_pos = rest.rfind("@")
        netloc, path = rest[: at_pos + 1], rest[at_pos + 1 :]
        if path and not path.startswith("/"):
            raise _fail(
                "unix:// takes an absolute socket path, not a host; write unix:///path/to/redis.sock?db=0"
            )
    else:
        slash = rest.find("/", rest.rfind("@") + 1)
        netloc, path = (rest, "") if slash == -1 else (rest[:slash], rest[slash:])
    userinfo, at, hostlist = netloc.rpartition("@")
    username = password = None
    if at:
        user_raw, colon, pass_raw = userinfo.partition(":")
        username = unquote(user_raw) or None
        password = unquote(pass_raw) if colon and pass_raw else None
    if "password" in opts:
        if password is not None:
            raise _fail("password is given both in the URL and as ?password=; keep one")
        password = str(opts.pop("password")) or None
    if "username" in opts:
        if username is not None:
            raise _fail("username is given both in the URL and as ?username=; keep one")
        username = str(opts.pop("username")) or None
    sentinel_password = _str_or_none(opts.pop("sentinel_password", None))
    sentinel_username = _str_or_none(opts.pop("sentinel_username", None))
    if tls is False and any(k.startswith("ssl_") for k in opts):
        raise _fail(f"ssl_* options need TLS; use rediss{scheme[5:]}:// instead of {scheme}://")

    raw_db = opts.pop("db", None)
    db_from_query = raw_db if isinstance(raw_db, int) else None  # _parse_query made ?db= an int
    # the fields every kind shares; each branch below fills in where Redis is (dataclasses.replace)
    base = RedisTarget(kind=kind, scheme=scheme, tls=tls, username=username, password=password, options=opts)

    if scheme == "unix":
        if path in ("", "/"):
            raise _fail("unix:// needs a socket path; write unix:///path/to/redis.sock?db=0")
        db = db_from_query if db_from_query is not None else 0
        return replace(base, unix_path=unquote(path), db=db)

    if not hostlist:
        raise _fail(
            f"has no host; write {scheme}://host:{_DEFAULT_PORT[kind]} "
            "(percent-encode '@', '/', ':' or ',' in the password)"
        )
    items = hostlist.split(",")
    if kind == "single" and len(items) > 1:
        raise _fail(f"{scheme}:// takes one host; for several use redis+sentinel:// or redis+cluster://")
    hosts = tuple(_split_hostport(item, kind, i) for i, item in enumerate(items))
    segments = [unquote(s) for s in path.split("/")[1:]] if path else []
    if segments and segments[-1] == "":
        segments.pop()

    if kind == "single":
        if len(segments) > 1:
            raise _fail("path must be just the database number, e.g. redis://host:6379/0")
        if segments and db_from_query is not None:
            raise _fail("database is given both in the path and as ?db=; keep one")
        db = _parse_db(segments[0], "in the path") if segments else db_from_query or 0
        return replace(base, hosts=hosts, db=db)

    if kind == "sentinel":
        if not segments or not segments[0]:
            raise _fail(
                "redis+sentinel:// needs the master's service name; "
                "write redis+sentinel://h1:26379,h2:26379/mymaster/0"
            )
        if len(segments) > 2:
            raise _fail("path must be /<service_name>[/<db>], e.g. /mymaster/0")
        if len(segments) == 2 and db_from_query is not None:
            raise _fail("database is given both in the path and as ?db=; keep one")
        db = _parse_db(segments[1], "in the path") if len(segments) == 2 else db_from_query or 0
        return replace(
            base,
            hosts=hosts,
            db=db,
            service_name=segments[0],
            sentinel_username=sentinel_username,
            sentinel_password=sentinel_password,
        )

    # cluster: Redis Cluster only has database 0
    db_text = segments[0] if segments else None
    if len(segments) > 1:
        raise _fail("redis+cluster:// takes no path (Redis Cluster has only database 0)")
    db = _parse_db(db_text, "in the path") if db_text is not None else db_from_query or 0
    if db != 0:
        raise _fail("Redis Cluster only supports database 0; remove the database number")
    return replace(base, hosts=hosts, db=0)
