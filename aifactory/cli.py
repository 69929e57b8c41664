"""`aifactory-server` (click): `serve` (default) runs the web server; `token` mints a JWT for a user.

This is the only place with process concerns: argument parsing, logging setup, exit codes. A bad
setting prints one line on stderr naming the variable and the fix, and exits 2 without a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import re
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal, TypedDict
from urllib.parse import unquote_plus

import click

from aifactory.config import (
    ConfigError,
    Settings,
    dev_secret_file,
    load_or_create_dev_secret,
    load_settings,
)
from aifactory.constants import VERSION

if TYPE_CHECKING:  # uvicorn is imported only when serving, so `token` starts fast
    import uvicorn

EXIT_CONFIG = 2
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_SECRET_PATTERNS = (
    re.compile(r"(?i)(token=)[^&\s\"']+"),
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+"),
    re.compile(r"(rediss?(?:\+sentinel|\+cluster)?://[^:/@\s]*:)[^@\s]+(@)"),
    re.compile(r"(?i)((?:sentinel_)?password=)[^&\s\"']+"),
)
# One query-string pair: separator, key, value. Keys are compared after percent-decoding, because the
# server decodes them too: `?tok%65n=…` is accepted as the token, so it must be redacted as the token.
_QUERY_PAIR = re.compile(r"([?&;])([^=&;\s\"'#?]*)=([^&;\s\"'#]*)")
_SECRET_KEYS = frozenset({"token", "access_token", "password", "sentinel_password", "secret"})


def _query_key(raw: str) -> str:
    """A query key as any decoder could read it: percent/plus-decoded until stable, trimmed, lowercased."""
    key = raw
    for _ in range(4):
        decoded = unquote_plus(key)
        if decoded == key:
            break
        key = decoded
    return key.strip().lower()


def _redact_pair(m: re.Match[str]) -> str:
    if _query_key(m.group(2)) in _SECRET_KEYS and m.group(3):
        return f"{m.group(1)}{m.group(2)}=<redacted>"
    return m.group(0)


def redact(text: str) -> str:
    """Tokens in query strings (any key spelling) and headers, and Redis passwords, replaced by <redacted>."""
    text = _QUERY_PAIR.sub(_redact_pair, text)
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub(
            lambda m: m.group(1) + "<redacted>" + (m.group(2) if m.lastindex == 2 else ""), text
        )
    return text


class SafeOneLineFormatter(logging.Formatter):
    """Each record on one line (tracebacks folded with ` | `), secrets redacted in message and traceback."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record).replace("\n", " | "))


class QuietConnections(logging.Filter):
    """uvicorn logs every socket open/accept/close at INFO; with many clients that is DEBUG material."""

    def __init__(self, level: int) -> None:
        super().__init__()
        self.verbose = level <= logging.DEBUG

    def filter(self, record: logging.LogRecord) -> bool:
        if self.verbose or record.name != "uvicorn.error" or record.levelno > logging.INFO:
            return True
        msg = record.msg if isinstance(record.msg, str) else ""
        return msg not in ("connection open", "connection closed") and '"WebSocket ' not in msg


class NoWireContent(logging.Filter):
    """Drop the WebSocket library's wire traces: `< TEXT '…'` / `> BINARY …` frames (terminal keystrokes and
    output, event payloads) and `< Authorization: …` handshake headers. uvicorn hands websockets its own
    `uvicorn.error` logger, so at LOG_LEVEL=DEBUG these would otherwise reach the log. They are all DEBUG
    records whose format string starts with "< " or "> "; nothing else we log looks like that."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno > logging.DEBUG or not isinstance(record.msg, str):
            return True
        return record.msg[:2] not in ("< ", "> ")


def setup_logging(level: int) -> None:
    """One readable line per record on stderr, for our loggers and uvicorn's alike."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(SafeOneLineFormatter(LOG_FORMAT))
    handler.addFilter(QuietConnections(level))
    handler.addFilter(NoWireContent())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.captureWarnings(True)  # Python warnings become one-line WARNING records too
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        lg = logging.getLogger(name)
        lg.handlers[:] = []
        lg.propagate = True
    # websockets' own protocol chatter is useless at DEBUG level next to ours
    logging.getLogger("websockets").setLevel(max(level, logging.INFO))


def _fail(message: str) -> int:
    print(f"aifactory-server: {message}", file=sys.stderr)
    return EXIT_CONFIG


# The protocol stack every replica runs on; the benchmark's python-socketio peer runs on the same one.
# ws: uvicorn's websockets-sansio protocol plus the transport sink /ws/events writes frames to
# (aifactory.web.ws_protocol); a function so that `token` never imports uvicorn.
class _Protocols(TypedDict):
    ws: type[asyncio.Protocol]
    http: Literal["h11"]
    loop: Literal["asyncio"]


def uvicorn_protocols() -> _Protocols:
    from aifactory.web.ws_protocol import EventsWSProtocol

    return {"ws": EventsWSProtocol, "http": "h11", "loop": "asyncio"}


def uvicorn_config(app: Any, settings: Settings) -> uvicorn.Config:
    """How every replica is served: the one place for uvicorn flags (the benchmarks reuse it).

    Limits (docs/security.md): `http` is h11 plus a request read timeout and a connection ceiling
    (`aifactory.http_guard`; it replaces uvicorn's `limit_concurrency`, which ignores WebSocket upgrades
    and logs a WARNING for every refused request, a log flood under attack). `ws_max_size` caps every
    client WebSocket message at the terminal input cap (uvicorn's default is 16 MiB; the events socket
    refuses far smaller frames itself); uvicorn's websockets-sansio protocol stops reading after each
    message until the app takes it, so that cap bounds the memory one socket can make the server hold.
    """
    import uvicorn

    from aifactory.http_guard import guarded_h11

    protocols = uvicorn_protocols()
    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        ws=protocols["ws"],
        loop=protocols["loop"],
        http=guarded_h11(settings.http_read_timeout, settings.max_connections),
        timeout_keep_alive=settings.keepalive_seconds,
        ws_max_size=settings.terminal_input_max_bytes,
        lifespan="on",
        log_config=None,
        log_level=settings.log_level_no,
        access_log=settings.log_level_no <= logging.DEBUG,
        proxy_headers=True,
        forwarded_allow_ips=os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1"),
        server_header=False,
    )


PR_SET_DUMPABLE = 4


def make_undumpable() -> None:
    """No process of our uid may read /proc/<pid>/environ|mem|fd or ptrace us; call before reading secrets.

    Raises OSError if the kernel refuses: serving with a readable environment is not an option.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"prctl(PR_SET_DUMPABLE, 0) failed: {os.strerror(err)}")


def _graceful_server_class() -> type[uvicorn.Server]:
    import uvicorn

    class _Graceful(uvicorn.Server):
        """SIGTERM (rollout, scale-down): stop accepting, let the app publish its last events and close its
        event sockets with 1012 after their queued frames, then uvicorn's own shutdown."""

        async def shutdown(self, sockets: Any = None) -> None:
            for srv in self.servers:
                srv.close()
            hook = getattr(getattr(self.config.app, "state", None), "drain", None)
            if hook is not None:
                try:
                    await hook()
                except Exception:
                    logging.getLogger("aifactory.server").exception("graceful drain failed")
                await asyncio.sleep(0.2)  # the sockets' own close frames go out before uvicorn's 1012
            await super().shutdown(sockets)

    return _Graceful


def GracefulServer(config: uvicorn.Config) -> uvicorn.Server:
    """uvicorn.Server with the app's drain step before shutdown (built lazily: uvicorn imports late)."""
    return _graceful_server_class()(config)


def cmd_serve() -> int:
    """Run the server until SIGTERM/SIGINT; bad settings exit 2 with one line before anything starts."""
    try:
        make_undumpable()
    except OSError as exc:
        return _fail(str(exc))
    try:
        settings = load_settings()
    except ConfigError as exc:
        return _fail(str(exc))
    from aifactory.audit import AuditError, AuditLog

    try:
        AuditLog(settings.audit_log, "-").check()
    except AuditError as exc:
        return _fail(f"AIFACTORY_AUDIT_LOG: {exc}; set it to a writable file or '-' for stdout (the default)")
    setup_logging(settings.log_level_no)

    from aifactory.web import create_app

    log = logging.getLogger("aifactory.server")
    if settings.dev_secret_path is not None:
        log.warning(
            "AIFACTORY_AUTH_SECRET unset: dev mode with a generated secret kept in %s; mint a token with "
            "`aifactory-server token --user <id> --org <org>` "
            "(set AIFACTORY_AUTH_SECRET for any shared deployment)",
            settings.dev_secret_path,
        )
    server = GracefulServer(uvicorn_config(create_app(settings), settings))
    with contextlib.suppress(KeyboardInterrupt):
        server.run()
    if not server.started:  # lifespan or bind failure: uvicorn already logged why
        return 1
    return 0


def cmd_terminal_host() -> int:
    """The shells' own process (AIFACTORY_TERMINALS=host): needs REDIS_URL and the shared secret."""
    try:
        settings = load_settings()
    except ConfigError as exc:
        return _fail(str(exc))
    if settings.redis_url is None:
        return _fail(
            "terminal-host needs REDIS_URL (Redis is the terminal directory) and AIFACTORY_AUTH_SECRET"
        )
    setup_logging(settings.log_level_no)
    import uvicorn

    from aifactory.terminal_host import create_host_app

    server = uvicorn.Server(uvicorn_config(create_host_app(settings), settings))
    with contextlib.suppress(KeyboardInterrupt):
        server.run()
    return 0 if server.started else 1


def cmd_token(user: str, org: str, role: str, ttl: int) -> int:
    """Print a signed JWT on stdout (AIFACTORY_AUTH_SECRET, else the dev secret file)."""
    from aifactory.auth import ROLES, mint_token
    from aifactory.constants import MAX_ID_LEN

    if role not in ROLES:
        return _fail(f"--role {role!r} is not one of {', '.join(ROLES)}")
    if not (0 < len(user.strip()) <= MAX_ID_LEN and 0 < len(org.strip()) <= MAX_ID_LEN):
        return _fail(f"--user and --org must be non-empty and at most {MAX_ID_LEN} characters")
    secret = os.environ.get("AIFACTORY_AUTH_SECRET", "").strip()
    try:
        if not secret:
            path = dev_secret_file(os.environ)
            secret = load_or_create_dev_secret(path)
            print(
                f"aifactory-server: AIFACTORY_AUTH_SECRET unset; signed with the dev secret in {path}",
                file=sys.stderr,
            )
    except ConfigError as exc:
        return _fail(str(exc))
    print(mint_token(secret, user, org, role, ttl))
    return 0


@click.group(
    "aifactory-server",
    invoke_without_command=True,
    help="AIFactory web server with the Redis pub/sub fan-out bridge. Configured by env vars; see "
    "docs/server.md.",
    epilog='\b\nshell completion: eval "$(_AIFACTORY_SERVER_COMPLETE=bash_source aifactory-server)"',
    context_settings={"help_option_names": ["-h", "--help"]},
)
# The installed distribution's version: the image's and the chart's appVersion (tests check they agree).
@click.version_option(VERSION, prog_name="aifactory-server", message="%(prog)s %(version)s")
@click.pass_context
def cli(ctx: click.Context) -> int | None:
    if ctx.invoked_subcommand is None:  # bare `aifactory-server` serves, as the image's CMD does
        return cmd_serve()
    return None


@cli.command("serve", help="Run the web server (the default).")
def serve() -> int:
    return cmd_serve()


@cli.command("token", help="Print a signed JWT (uses AIFACTORY_AUTH_SECRET, else the dev secret).")
@click.option("--user", required=True, help="User id (claim sub).")
@click.option("--org", default="default", show_default=True, help="Org id (claim org).")
@click.option("--role", default="user", show_default=True, help="user | admin | service.")
@click.option("--ttl", type=int, default=3600, show_default=True, help="Seconds until expiry.")
def token(user: str, org: str, role: str, ttl: int) -> int:
    return cmd_token(user, org, role, ttl)


@cli.command("terminal-host", help="Run a terminal host: owns the shells when AIFACTORY_TERMINALS=host.")
def terminal_host() -> int:
    return cmd_terminal_host()


def main(argv: Sequence[str] | None = None) -> int:
    """Console-script entry point: exit codes as returned; a usage error is one line and exit 2."""
    try:
        rv = cli.main(
            args=list(sys.argv[1:] if argv is None else argv),
            prog_name="aifactory-server",
            standalone_mode=False,
        )
    except click.UsageError as exc:
        return _fail(" ".join(exc.format_message().split()))
    except click.exceptions.Abort:
        return 130
    # a group returns its subcommand's result; --help and completion return their exit code
    return rv if isinstance(rv, int) else 0


if __name__ == "__main__":
    sys.exit(main())
