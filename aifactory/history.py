"""Event history for recovery: the `_offset` codec, the replay planner and the in-process ring.

Framework-free and Redis-free (the Redis Streams store is `aifactory.stream`). See docs/recovery.md for
the whole design; in short, every event frame a replica R hands to its sockets carries

    "_offset": "<epoch>:<sid>:<origin>:<seq>"

- epoch: names one history (one Redis stream, or one process's ring); a flushed or replaced Redis has a
  new epoch, so an offset from the old one is never trusted;
- sid: the last stream id R had delivered (remote events and R's own echoes arrive in stream order);
- origin, seq: R's replica id and R's own last event sequence number. R delivers its own events
  synchronously, before they reach the stream, so they are tracked by seq, not by stream id.

Resuming from an offset anywhere = the entries after `sid`, minus R's events with seq <= the offset's seq,
filtered to the client's audience; a hole in any origin's seq means an event never reached the history,
and the client gets `resync` instead of a silent gap (`plan_replay`).
"""

from __future__ import annotations

import re
import secrets
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass

__all__ = [
    "DEFAULT_HISTORY_SIZE",
    "DEFAULT_HISTORY_TTL",
    "HISTORY_RESYNC_FRAME",
    "Entry",
    "Offset",
    "OffsetError",
    "Ring",
    "new_epoch",
    "parse_offset",
    "parse_sid",
    "plan_replay",
    "with_offset",
]

DEFAULT_HISTORY_SIZE = 10_000
DEFAULT_HISTORY_TTL = 300
HISTORY_RESYNC_FRAME = '{"type":"resync","reason":"history"}'
NO_EPOCH = "0"  # stamped before any history is known: never matches a real epoch
MAX_OFFSET_LEN = 200

_OFFSET = re.compile(r"([A-Za-z0-9]{1,32}):([0-9]{1,20})-([0-9]{1,20}):([A-Za-z0-9-]{1,64}):([0-9]{1,20})")


class OffsetError(ValueError):
    """A `since` value that is not an offset this server wrote."""


def new_epoch() -> str:
    """A fresh random epoch (alphanumeric, so it is safe in an offset and in a Lua string)."""
    return secrets.token_hex(8)


def parse_sid(sid: str) -> tuple[int, int]:
    """A Redis stream id "ms-n" as a comparable tuple."""
    ms, _, n = sid.partition("-")
    return int(ms), int(n or 0)


@dataclass(frozen=True, slots=True)
class Offset:
    epoch: str
    sid: tuple[int, int]
    origin: str
    seq: int

    def encode(self) -> str:
        return f"{self.epoch}:{self.sid[0]}-{self.sid[1]}:{self.origin}:{self.seq}"


def parse_offset(text: str) -> Offset:
    """Parse a client's `since`; OffsetError for anything this server could not have written."""
    m = _OFFSET.fullmatch(text) if len(text) <= MAX_OFFSET_LEN else None
    if m is None:
        raise OffsetError("malformed offset")
    epoch, ms, n, origin, seq = m.groups()
    return Offset(epoch, (int(ms), int(n)), origin, int(seq))


def with_offset(frame: str, offset: str) -> str:
    """The event frame with `"_offset"` appended as its last top-level key (one concat, once per event)."""
    if frame == "{}":
        return '{"_offset":"' + offset + '"}'
    return frame[:-1] + ',"_offset":"' + offset + '"}'


@dataclass(frozen=True, slots=True)
class Entry:
    """One event in the history: its stream id, where it was fired, who gets it, its bare JSON."""

    sid: tuple[int, int]
    origin: str
    seq: int
    scope: str
    target: str | None
    frame: str


def plan_replay(
    entries: Iterable[Entry],
    offset: Offset,
    *,
    self_origin: str,
    self_seq: int,
    accept: Callable[[str, str | None], bool],
    until: tuple[int, int] | None = None,
) -> list[tuple[Entry, int]] | None:
    """The entries (after `offset.sid`, in stream order) a client resuming from `offset` has not seen.

    Skips the offset origin's events it already saw (seq <= offset.seq), this replica's events newer
    than `self_seq` and other origins' entries after `until` (those reach the client live). None when
    some origin's seq has a hole: an event that never reached the history, which the client may have
    needed, so it must resync. Each entry comes with the offset origin's last seq up to it, so a frame's
    own `_offset` can say exactly what the client has seen once it has that frame.
    """
    out: list[tuple[Entry, int]] = []
    last: dict[str, int] = {offset.origin: offset.seq}
    for e in entries:
        if e.origin == self_origin:
            if e.seq > self_seq:
                continue
        elif until is not None and e.sid > until:
            continue
        prev = last.get(e.origin)
        if prev is not None:
            if e.seq <= prev:
                continue
            if e.seq != prev + 1:
                return None
        last[e.origin] = e.seq
        if accept(e.scope, e.target):
            out.append((e, last[offset.origin]))
    if self_origin in last and self_origin == offset.origin and last[self_origin] < self_seq:
        return None  # own events the stream never got (caller checks drops; this catches the tail)
    return out


class Ring:
    """In-process history for a replica without Redis: the last `size` own events, at most `ttl` s old.

    Its entries are only this process's events, with stream ids (0, seq), so offsets and `plan_replay`
    work exactly as with Redis; `epoch` is new per process, so offsets from a previous run are refused.
    """

    def __init__(self, size: int, ttl: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.size, self.ttl, self.clock = size, ttl, clock
        self.epoch = new_epoch()
        self._entries: deque[tuple[float, Entry]] = deque()
        self._last_seq = 0

    def __len__(self) -> int:
        return len(self._entries)

    def append(self, entry: Entry) -> None:
        now = self.clock()
        self._entries.append((now, entry))
        self._last_seq = entry.seq
        while len(self._entries) > self.size:
            self._entries.popleft()
        self._expire(now)

    def _expire(self, now: float) -> None:
        while self._entries and now - self._entries[0][0] > self.ttl:
            self._entries.popleft()

    def after(self, seq: int) -> list[Entry] | None:
        """Entries with seq > `seq`, oldest first; None when some of them were trimmed or expired."""
        self._expire(self.clock())
        if seq > self._last_seq:
            return None  # not an offset of this ring
        if not self._entries:
            return [] if seq == self._last_seq else None
        first = self._entries[0][1].seq
        if seq < first - 1:
            return None
        return [e for _, e in self._entries][seq - first + 1 :]
