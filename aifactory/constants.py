"""Facts the server, the validator, the deploy tools and the tests must agree on, each typed once.

Stdlib-only and import-light on purpose: the validator (`aifactory-validate`) and the HAProxy generator
import it on their cold-start paths, so nothing here may pull in redis-py, Starlette or the bus.
"""

from __future__ import annotations

import re

__all__ = [
    "DEFAULT_CHANNEL",
    "DISABLED_LINE",
    "ENABLED_LINE",
    "ENABLED_LINE_RE",
    "EVENTS_PATH",
    "MAX_ID_LEN",
    "TERMINAL_PATH",
    "VERSION",
    "WS_BAD_CONTROL",
    "WS_GOING_AWAY",
    "WS_INTERNAL_ERROR",
    "WS_MESSAGE_TOO_BIG",
    "WS_NORMAL",
    "WS_POLICY_VIOLATION",
    "WS_SERVICE_RESTART",
    "WS_TAKEN_OVER",
    "WS_TERMINAL_LOST",
    "WS_TRY_AGAIN_LATER",
]

# The release version: pyproject.toml and chart/Chart.yaml (version, appVersion) must match it.
VERSION = "1.1.0"

# The Redis pub/sub channel every replica shares unless REDIS_CHANNEL (chart: redis.channel) says otherwise.
DEFAULT_CHANNEL = "aifactory:events"

# The longest user, org and target id: the envelope carries ids up to this length across replicas.
MAX_ID_LEN = 256

# WebSocket paths. The chart's ingress pins TERMINAL_PATH with the affinity cookie (cookie Path attribute);
# EVENTS_PATH stays free to balance because Redis fan-out delivers every event on every replica.
EVENTS_PATH = "/ws/events"
TERMINAL_PATH = "/ws/terminal"

# The two startup lines of logger "aifactory.bus" (exactly one per process). Operators grep for them as a
# smoke check (`aifactory-validate --cluster` asks each pod's /readyz instead, which cannot scroll away);
# ENABLED_LINE takes (replica, channel).
ENABLED_LINE = "Redis pub/sub enabled — replica %s on channel '%s'"
DISABLED_LINE = "Redis pub/sub disabled (REDIS_URL unset) — in-process broadcasts only"
_head, _middle, _tail = ENABLED_LINE.split("%s")
# Matches a logged ENABLED_LINE; group 1 is the replica uuid, group 2 the channel.
ENABLED_LINE_RE = re.compile(re.escape(_head) + r"(\S+)" + re.escape(_middle) + r"([^']*)" + re.escape(_tail))

# WebSocket close codes the server sends (RFC 6455 section 7.4; 4000-4999 are application codes).
WS_NORMAL = 1000  # the terminal's shell ended or was closed
WS_GOING_AWAY = 1001  # the server is shutting down
WS_POLICY_VIOLATION = 1008  # bad or expired token, not your terminal, bad terminal id
WS_MESSAGE_TOO_BIG = 1009  # a client frame over the socket's limit (events: 4 KiB; terminal: 64 KiB)
WS_INTERNAL_ERROR = 1011  # audit log unavailable, no shell could be started
WS_SERVICE_RESTART = 1012  # the replica is shutting down: resume (with `since`) on another one
WS_TRY_AGAIN_LATER = 1013  # client too slow, too many terminals
WS_BAD_CONTROL = 1007  # a terminal text frame that is not a valid control message (docs/terminals.md)
WS_TAKEN_OVER = 4409  # the terminal was attached from another connection
# The terminal host that ran this shell restarted or is gone: the shell is lost, open a new terminal.
WS_TERMINAL_LOST = 4410
