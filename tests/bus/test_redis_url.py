"""REDIS_URL parser: every accepted form, redis-py parity for the forms redis-py knows, and one-line errors
that name the fix and never contain the password."""

from __future__ import annotations

import string
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from redis.connection import parse_url as redis_py_parse_url

from aifactory.redis_url import RedisTarget, RedisUrlError, parse_redis_url

SECRET = "Sup3r-S3cret"


@pytest.mark.parametrize(
    "url",
    [
        f"redis://:{SECRET}@redis.aifactory.svc:6379/0",
        "redis://localhost:6379/0",
        "redis://localhost",
        "redis://h?db=4",
        "rediss://user:p%40ss@h:6380/2",
        "redis://[::1]:7000/1",
        f"unix://u:{SECRET}@/tmp/redis.sock?db=3",
        "unix:///var/run/redis.sock",
    ],
)
def test_single_forms_match_redis_py(url: str) -> None:
    """redis://, rediss:// and unix:// mean exactly what redis-py's own parser says they mean."""
    ours = parse_redis_url(url)
    theirs = redis_py_parse_url(url)
    assert ours.kind == "single"
    assert ours.password == theirs.get("password")
    assert ours.username == theirs.get("username")
    assert ours.db == theirs.get("db", 0)
    if "path" in theirs:
        assert ours.unix_path == theirs["path"] and ours.hosts == ()
    else:
        assert ours.hosts == ((theirs["host"], theirs.get("port", 6379)),)
    assert ours.tls == url.startswith("rediss://")


def test_sentinel_form() -> None:
    t = parse_redis_url(
        f"redis+sentinel://:{SECRET}@s1:26379,s2,[fd00::1]:26380/mymaster/2?sentinel_password=sp"
    )
    assert t.kind == "sentinel"
    assert t.hosts == (("s1", 26379), ("s2", 26379), ("fd00::1", 26380))
    assert (t.service_name, t.db, t.password, t.sentinel_password, t.tls) == (
        "mymaster",
        2,
        SECRET,
        "sp",
        False,
    )
    assert parse_redis_url("rediss+sentinel://s1/mymaster").tls is True
    assert parse_redis_url("redis+sentinel://s1/mymaster").db == 0


def test_cluster_form() -> None:
    t = parse_redis_url(f"redis+cluster://app:{SECRET}@n1:7000,n2:7001?socket_timeout=2.5")
    assert t.kind == "cluster"
    assert t.hosts == (("n1", 7000), ("n2", 7001))
    assert (t.username, t.password, t.db, t.options) == ("app", SECRET, 0, {"socket_timeout": 2.5})
    assert parse_redis_url("rediss+cluster://n1").hosts == (("n1", 6379),)
    assert parse_redis_url("redis+cluster://n1/0").db == 0


def test_query_options_are_typed() -> None:
    t = parse_redis_url("rediss://h/0?socket_connect_timeout=3&ssl_cert_reqs=none&socket_keepalive=false")
    assert t.options == {"socket_connect_timeout": 3.0, "ssl_cert_reqs": "none", "socket_keepalive": False}


def test_password_hidden_from_repr_str_and_redacted() -> None:
    t = parse_redis_url(f"redis+sentinel://user:{SECRET}@s1:26379/mymaster/0?sentinel_password={SECRET}x")
    for text in (repr(t), str(t), t.redacted()):
        assert SECRET not in text
    assert t.redacted() == "redis+sentinel://user:***@s1:26379/mymaster/0?sentinel_password=***"
    assert parse_redis_url("redis://h:1/0").redacted() == "redis://h:1/0"
    assert parse_redis_url("unix://:pw@/tmp/r.sock?db=2").redacted() == "unix://:***@/tmp/r.sock?db=2"


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("", "is empty"),
        ("   ", "is empty"),
        ("localhost:6379", "has no scheme"),
        ("http://h:6379", "unsupported scheme 'http'"),
        (f"redis://:{SECRET}@", "has no host"),
        (f"redis://:{SECRET}@h:abc/0", "port must be a number"),
        (f"redis://:{SECRET}@h:70000/0", "port must be a number"),
        (f"redis://:{SECRET}@h:/0", "port is empty"),
        (f"redis://:{SECRET}@h/zero", "database in the path must be a non-negative integer"),
        (f"redis://:{SECRET}@h/0/1", "path must be just the database number"),
        (f"redis://:{SECRET}@h1,h2/0", "takes one host"),
        (f"redis://:{SECRET}@h/0?db=1", "both in the path and as ?db="),
        (f"redis://:{SECRET}@h/0?bogus=1", "unknown query option 'bogus'"),
        (f"redis://:{SECRET}@h/0?socket_timeout=soon", "'socket_timeout' must be a number"),
        (f"redis://:{SECRET}@h/0?socket_keepalive=maybe", "must be true or false"),
        (f"redis://:{SECRET}@h/0?ssl_cert_reqs=none", "ssl_* options need TLS"),
        (f"rediss://:{SECRET}@h/0?ssl_cert_reqs=sometimes", "must be none, optional or required"),
        (f"redis://:{SECRET}@h/0?password=x", "both in the URL and as ?password="),
        (f"redis://:{SECRET}@h/0?sentinel_password=x", "only apply to redis+sentinel://"),
        (f"redis://:{SECRET}@h:1:2/0", "bare IPv6 addresses need brackets"),
        (f"redis://:{SECRET}@[::1/0", "closing ']'"),
        (f"redis://:{SECRET}@bad_host!/0", "not a valid host name"),
        (f"redis+sentinel://:{SECRET}@s1:26379,s2:26379", "needs the master's service name"),
        (f"redis+sentinel://:{SECRET}@s1:26379,/mymaster", "host #2 is empty"),
        (f"redis+sentinel://:{SECRET}@s1/mymaster/x", "database in the path"),
        (f"redis+sentinel://:{SECRET}@s1/a/0/extra", "/<service_name>[/<db>]"),
        (f"redis+cluster://:{SECRET}@n1:7000/3", "only supports database 0"),
        (f"redis+cluster://:{SECRET}@n1:7000/0/1", "takes no path"),
        ("unix://", "needs a socket path"),
        (f"unix://:{SECRET}@host/path", "absolute socket path"),
        ("redis://:pa#ss@h/0", "percent-encode it as %23"),
        ("redis://:pa?ss@h/0", "percent-encode '?' in the password as %3F"),
        ("redis://:pa ss@h/0", "contains whitespace"),
    ],
)
def test_errors_are_one_line_name_the_fix_and_hide_the_password(url: str, fragment: str) -> None:
    with pytest.raises(RedisUrlError) as info:
        parse_redis_url(url)
    message = str(info.value)
    assert fragment in message
    assert message.startswith("REDIS_URL: ")
    assert "\n" not in message
    assert SECRET not in message and "pa#ss" not in message and "pa?ss" not in message
    assert isinstance(info.value, ValueError)


_PASSWORD_CHARS = string.ascii_letters + string.digits + "!$&'()*+,;=:@/?#[]%-._~ "


@settings(max_examples=300, deadline=None)
@given(
    middle=st.text(alphabet=_PASSWORD_CHARS, min_size=0, max_size=20),
    template=st.sampled_from(
        [
            "redis://:{p}@h:6379/0",
            "redis://user:{p}@h:63x79/0",
            "rediss://:{p}@h/0?ssl_cert_reqs=bad",
            "redis+sentinel://:{p}@s1:26379,s2:26379/mymaster/0",
            "redis+sentinel://:{p}@s1:26379,s2:26379",
            "redis+cluster://:{p}@n1:7000,n2:7001/5",
            "unix://:{p}@/tmp/r.sock?db=x",
            "redis://:{p}@h/0?nope=1",
        ]
    ),
)
def test_password_never_leaks_even_unencoded(middle: str, template: str) -> None:
    """Whatever an operator pastes unencoded into the password, no message or redaction shows any end of it.
    The password is framed by markers that never occur in our messages, so a partial leak is caught too."""
    password = f"Zq9{middle}9qZ"
    url = template.format(p=password)
    try:
        target = parse_redis_url(url)
    except RedisUrlError as exc:
        shown = str(exc)
    else:
        shown = target.redacted() + repr(target)
    assert "Zq9" not in shown and "9qZ" not in shown


def test_import_is_stdlib_only() -> None:
    """The validator imports the parser on its cold-start path: it must not pull in redis-py or prometheus."""
    heavy = "{'redis', 'prometheus_client', 'starlette'}"
    code = "import sys, aifactory.redis_url\n"
    code += f"print(sorted(m for m in sys.modules if m.split('.')[0] in {heavy}))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_target_is_frozen() -> None:
    t = parse_redis_url("redis://h/0")
    assert isinstance(t, RedisTarget)
    with pytest.raises(AttributeError):
        t.db = 3  # type: ignore[misc]
