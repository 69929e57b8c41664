"""Server settings read once from the environment; every bad value becomes one ConfigError line.

The chart sets REDIS_URL, REDIS_CHANNEL, AIFACTORY_AUTH_SECRET, PORT and LOG_LEVEL; the AIFACTORY_* knobs
below have safe defaults so a laptop run needs no configuration at all.
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from aifactory.constants import DEFAULT_CHANNEL
from aifactory.sandbox import MODES as SANDBOX_MODES

if TYPE_CHECKING:
    from aifactory.redis_url import RedisTarget

DEFAULT_AUDIT_LOG = "-"  # JSON lines on stdout: works under a read-only root (Kubernetes log convention)
MIN_SECRET_BYTES = 32
TERMINAL_MODES = ("local", "host")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class ConfigError(ValueError):
    """A bad setting; str() is one line naming the variable and the fix (never a secret value)."""


def dev_secret_file(env: Mapping[str, str]) -> Path:
    """Where a secret-less dev server and `aifactory-server token` share their generated secret."""
    explicit = env.get("AIFACTORY_DEV_SECRET_FILE", "").strip()
    if explicit:
        return Path(explicit)
    return Path("/tmp") / f"aifactory-dev-secret-{os.getuid()}"


def load_or_create_dev_secret(path: Path) -> str:
    """Read the dev secret at `path`, creating it (0600, random) first if it does not exist.

    Refuses a file that another user owns or others can read: a planted secret would let them mint tokens.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    except OSError as exc:
        raise ConfigError(
            f"AIFACTORY_DEV_SECRET_FILE: cannot create {path} ({exc.strerror}); "
            "set AIFACTORY_AUTH_SECRET or point AIFACTORY_DEV_SECRET_FILE at a writable path"
        ) from None
    else:
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(48))
    try:
        info = path.stat()
        if info.st_uid != os.getuid() or info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ConfigError(
                f"AIFACTORY_DEV_SECRET_FILE: {path} is not private to this user; "
                "delete it (a new one is generated) or set AIFACTORY_AUTH_SECRET"
            )
        value = path.read_text().strip()
    except OSError as exc:
        raise ConfigError(
            f"AIFACTORY_DEV_SECRET_FILE: cannot read {path} ({exc.strerror}); "
            "delete it or set AIFACTORY_AUTH_SECRET"
        ) from None
    if len(value.encode()) < MIN_SECRET_BYTES:
        raise ConfigError(
            f"AIFACTORY_DEV_SECRET_FILE: {path} holds a secret shorter than {MIN_SECRET_BYTES} bytes; "
            "delete it so a new one is generated"
        )
    return value


@dataclass(frozen=True)
class Settings:
    """Everything the server needs, validated; `auth_secret` is never logged or repr'd."""

    redis_url: str | None = None
    redis_target: RedisTarget | None = None
    channel: str = DEFAULT_CHANNEL
    auth_secret: str = field(default="", repr=False)
    dev_secret_path: Path | None = (
        None  # set when the secret came from the dev file (no AIFACTORY_AUTH_SECRET)
    )
    host: str = "0.0.0.0"
    port: int = 8000
    log_level: str = "INFO"
    audit_log: str = DEFAULT_AUDIT_LOG
    ws_queue: int = 1000
    terminal_shell: str = "/bin/sh"
    terminal_idle_seconds: float = 900.0
    terminal_grace_seconds: float = 30.0
    terminal_max: int = 32
    terminals_mode: str = "local"  # local: shells in this process; host: relayed to terminal hosts
    terminal_host_address: str = ""  # terminal-host only: host:port the web tier dials (directory entry)
    terminal_sandbox: str = "on"
    max_sockets_per_user: int = 32
    task_max_steps: int = 100
    ws_overflow: str = "resync"
    redis_backoff_max: float = 30.0
    http_read_timeout: float = 10.0  # a client must send its whole request (head and body) within this
    keepalive_seconds: int = 5  # idle keep-alive connections are closed after this
    max_connections: int = 4096  # open HTTP + WebSocket connections per replica; beyond: 503 and close
    terminal_input_max_bytes: int = 64 * 1024  # largest client WebSocket message (terminal paste)
    history_size: int = 10_000  # events kept for recovery; 0 = off (frames exactly as without recovery)
    history_ttl: int = 300  # seconds the history outlives the last event
    shutdown_grace: float = 20.0  # SIGTERM: seconds to flush and close sockets with 1012

    @property
    def log_level_no(self) -> int:
        return logging.getLevelNamesMapping()[self.log_level]


def _int(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not an integer; set {name} to a whole number") from None
    if not low <= value <= high:
        raise ConfigError(f"{name}={value} is out of range; set {name} between {low} and {high}")
    return value


def _seconds(env: Mapping[str, str], name: str, default: float, low: float, high: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number of seconds; set {name} to e.g. 30") from None
    if not low <= value <= high:
        raise ConfigError(
            f"{name}={value:g} is out of range; set {name} between {low:g} and {high:g} seconds"
        )
    return value


def _default_shell() -> str:
    return shutil.which("bash") or "/bin/sh"


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Validate the environment; raise ConfigError (one line) for the first bad value."""
    env = os.environ if env is None else env

    port = _int(env, "PORT", 8000, 1, 65535)

    level = env.get("LOG_LEVEL", "").strip().upper() or "INFO"
    if level == "WARN":
        level = "WARNING"
    if level not in LOG_LEVELS:
        raise ConfigError(
            f"LOG_LEVEL={env.get('LOG_LEVEL')!r} is not a log level; "
            f"set LOG_LEVEL to one of {', '.join(LOG_LEVELS)}"
        )

    channel = env.get("REDIS_CHANNEL", "").strip() or DEFAULT_CHANNEL
    if len(channel) > 256 or any(ch.isspace() or not ch.isprintable() for ch in channel):
        raise ConfigError(
            "REDIS_CHANNEL must be at most 256 printable characters without spaces; "
            f"set REDIS_CHANNEL like {DEFAULT_CHANNEL!r}"
        )

    redis_url = env.get("REDIS_URL", "").strip() or None
    target = None
    if redis_url is not None:
        from aifactory.redis_url import RedisUrlError, parse_redis_url

        try:
            target = parse_redis_url(redis_url)
        except RedisUrlError as exc:
            msg = str(exc)
            raise ConfigError(msg if msg.startswith("REDIS_URL") else f"REDIS_URL: {msg}") from None

    secret = env.get("AIFACTORY_AUTH_SECRET", "")
    dev_path: Path | None = None
    if secret.strip():
        secret = secret.strip()
        if len(secret.encode()) < MIN_SECRET_BYTES:
            raise ConfigError(
                f"AIFACTORY_AUTH_SECRET is shorter than {MIN_SECRET_BYTES} bytes; "
                "set it to a long random value, "
                "e.g. `python -c 'import secrets; print(secrets.token_urlsafe(48))'`"
            )
    elif redis_url is not None:
        raise ConfigError(
            "AIFACTORY_AUTH_SECRET is required when REDIS_URL is set "
            "(every replica must verify the same tokens); "
            "set it to the same long random value on all replicas (the chart injects it from a Secret)"
        )
    else:
        dev_path = dev_secret_file(env)
        secret = load_or_create_dev_secret(dev_path)

    host = env.get("AIFACTORY_HOST", "").strip() or "0.0.0.0"
    audit_log = env.get("AIFACTORY_AUDIT_LOG", "").strip() or DEFAULT_AUDIT_LOG
    if audit_log != "-" and Path(audit_log).is_dir():
        raise ConfigError(
            f"AIFACTORY_AUDIT_LOG={audit_log} is a directory; set it to a file path (or '-' for stdout)"
        )

    shell = env.get("AIFACTORY_TERMINAL_SHELL", "").strip() or _default_shell()
    if not (os.path.isabs(shell) and os.access(shell, os.X_OK)):
        raise ConfigError(
            f"AIFACTORY_TERMINAL_SHELL={shell!r} is not an executable absolute path; set it to e.g. /bin/sh"
        )

    overflow = env.get("AIFACTORY_WS_OVERFLOW", "").strip().lower() or "resync"
    if overflow not in ("resync", "disconnect"):
        raise ConfigError(
            f"AIFACTORY_WS_OVERFLOW={overflow!r} is not a policy; set it to resync (drop the backlog, "
            "send a resync frame) or disconnect (close a slow client with 1013)"
        )

    mode = env.get("AIFACTORY_TERMINALS", "").strip().lower() or "local"
    if mode not in TERMINAL_MODES:
        raise ConfigError(
            f"AIFACTORY_TERMINALS={mode!r} is not a mode; set it to local (shells in this replica) or host "
            "(shells on `aifactory-server terminal-host` processes, found through Redis)"
        )
    if mode == "host" and redis_url is None:
        raise ConfigError(
            "AIFACTORY_TERMINALS=host needs REDIS_URL (Redis is the terminal directory); set REDIS_URL or "
            "use AIFACTORY_TERMINALS=local"
        )

    sandbox_mode = env.get("AIFACTORY_TERMINAL_SANDBOX", "").strip().lower() or "on"
    if sandbox_mode not in SANDBOX_MODES:
        raise ConfigError(
            f"AIFACTORY_TERMINAL_SANDBOX={sandbox_mode!r} is not a mode; set it to on (each shell in its own "
            "bubblewrap sandbox) or off (unsandboxed shells that can read the server's secrets)"
        )

    return Settings(
        redis_url=redis_url,
        redis_target=target,
        channel=channel,
        auth_secret=secret,
        dev_secret_path=dev_path,
        host=host,
        port=port,
        log_level=level,
        audit_log=audit_log,
        ws_queue=_int(env, "AIFACTORY_WS_QUEUE", 1000, 2, 1_000_000),
        terminal_shell=shell,
        terminal_idle_seconds=_seconds(env, "AIFACTORY_TERMINAL_IDLE_SECONDS", 900.0, 0.1, 86400.0),
        terminal_grace_seconds=_seconds(env, "AIFACTORY_TERMINAL_GRACE_SECONDS", 30.0, 0.0, 3600.0),
        terminal_max=_int(env, "AIFACTORY_TERMINAL_MAX", 32, 0, 10_000),
        terminals_mode=mode,
        terminal_host_address=env.get("AIFACTORY_TERMINAL_HOST_ADDRESS", "").strip(),
        terminal_sandbox=sandbox_mode,
        max_sockets_per_user=_int(env, "AIFACTORY_MAX_SOCKETS_PER_USER", 32, 1, 100_000),
        task_max_steps=_int(env, "AIFACTORY_TASK_MAX_STEPS", 100, 1, 10_000),
        ws_overflow=overflow,
        redis_backoff_max=_seconds(env, "AIFACTORY_REDIS_BACKOFF_MAX", 30.0, 0.05, 3600.0),
        http_read_timeout=_seconds(env, "AIFACTORY_HTTP_READ_TIMEOUT_SECONDS", 10.0, 0.5, 3600.0),
        keepalive_seconds=_int(env, "AIFACTORY_KEEPALIVE_SECONDS", 5, 1, 3600),
        max_connections=_int(env, "AIFACTORY_MAX_CONNECTIONS", 4096, 16, 1_000_000),
        terminal_input_max_bytes=_int(
            env, "AIFACTORY_TERMINAL_INPUT_MAX_BYTES", 64 * 1024, 4096, 16 * 1024 * 1024
        ),
        history_size=_int(env, "AIFACTORY_HISTORY_SIZE", 10_000, 0, 1_000_000),
        history_ttl=_int(env, "AIFACTORY_HISTORY_TTL", 300, 1, 86_400),
        shutdown_grace=_seconds(env, "AIFACTORY_SHUTDOWN_GRACE_SECONDS", 20.0, 0.0, 3600.0),
    )
