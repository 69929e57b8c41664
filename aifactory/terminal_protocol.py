"""The `/ws/terminal/{id}` wire protocol: binary frames carry bytes, text frames carry typed JSON control.

Why: the old protocol sent keystrokes and output as text and recognised a resize by the text prefix
`{"type":"resize"`, so a paste starting with that prefix was swallowed as a resize and a differently spaced
resize was typed into the shell. Now the frame type decides (as ttyd and terminado do):

- client → server, binary: bytes for the shell, written verbatim (never parsed).
- client → server, text: one JSON object with a "type": `resize` {rows, cols} or `input` {data: string}
  (for clients that cannot send binary). Anything else closes the socket with WS_BAD_CONTROL (1007).
- server → client, binary: the shell's output bytes, verbatim (the client decodes UTF-8 itself).
- server → client, text: `ready` {terminal, pid, new, offset, input_offset, replica} once per attach.

Offsets make reconnects exact: the client connects with `?offset=N` (output bytes it already has); the
replay starts there (or at the oldest byte still in the scrollback, which `ready.offset` then says), and
`ready.input_offset` counts the input bytes the shell has received, so the client resends only the rest.
Framework-free: docs/terminals.md describes it for client authors.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

MAX_ROWS_COLS = 999
MAX_CONTROL_CHARS = 64 * 1024


class ControlError(ValueError):
    """A text frame that is not a valid control message; str() is the one-line close reason."""


@dataclass(frozen=True)
class Resize:
    rows: int
    cols: int


@dataclass(frozen=True)
class Input:
    data: bytes


def _dimension(msg: dict[str, Any], name: str) -> int:
    value = msg.get(name)
    if type(value) is not int or not 0 < value <= MAX_ROWS_COLS:
        raise ControlError(f"resize.{name} must be an integer 1-{MAX_ROWS_COLS}")
    return value


def parse_control(text: str) -> Resize | Input:
    """One client text frame → a control message, or ControlError."""
    if len(text) > MAX_CONTROL_CHARS:
        raise ControlError("control message too long")
    try:
        msg = json.loads(text)
    except ValueError:
        raise ControlError("text frames must be JSON control messages; send bytes as binary") from None
    if not isinstance(msg, dict):
        raise ControlError("a control message is a JSON object with a type")
    kind = msg.get("type")
    if kind == "resize":
        return Resize(_dimension(msg, "rows"), _dimension(msg, "cols"))
    if kind == "input":
        data = msg.get("data")
        if not isinstance(data, str):
            raise ControlError("input.data must be a string")
        return Input(data.encode())
    raise ControlError("unknown control message type; expected resize or input")


def parse_offset(raw: str | None) -> int | None:
    """The `?offset=` query value: output bytes the client already has (None: replay everything)."""
    if raw is None or raw == "":
        return None
    if not raw.isdigit() or len(raw) > 18:
        raise ControlError("offset must be a non-negative integer")
    return int(raw)


def ready(*, terminal: str, pid: int, new: bool, offset: int, input_offset: int, replica: str) -> str:
    """The server's first text frame on every attach."""
    return json.dumps(
        {
            "type": "ready",
            "terminal": terminal,
            "pid": pid,
            "new": new,
            "offset": offset,
            "input_offset": input_offset,
            "replica": replica,
        }
    )
