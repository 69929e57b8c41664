"""The Redis side of the history: one stream per channel, appended and published in one Lua script.

Keys share the hash tag `{<channel>}` so they live in one Cluster slot:

    {<channel>}:history   the stream: entry field `e` = the envelope exactly as published
    {<channel>}:epoch     a random token; a new one after FLUSHALL, a replaced Redis, or idle expiry

`PUBLISH_SCRIPT` XADDs each signed message (MAXLEN ~ size), then PUBLISHes it behind a header naming its
stream id and the epoch, `h1.<id>.<epoch>.<signed message>`. One script = atomic: subscription order is
stream order, and a live frame's id is its history id. The header is outside the signature (Redis picks
the id), so receivers let it move their cursor only for a verified envelope that is new by its seq.
`READ_SCRIPT` returns one consistent snapshot: epoch, whether nothing after the given id was trimmed
(trimming cuts the head, so the stream still holding that id proves it), the last id, and a page.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aifactory.envelope import EnvelopeError, decode_with_frame
from aifactory.history import NO_EPOCH, Entry, new_epoch, parse_sid

__all__ = [
    "PUBLISH_SCRIPT",
    "READ_SCRIPT",
    "Snapshot",
    "StreamHistory",
    "StreamKeys",
    "entry_of",
    "read_page",
    "split_published",
]

PUBLISH_SCRIPT = """
local ep = redis.call('GET', KEYS[2])
if not ep then
  ep = ARGV[4]
  redis.call('SET', KEYS[2], ep)
end
for i = 5, #ARGV do
  local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*', 'e', ARGV[i])
  redis.call('PUBLISH', ARGV[1], 'h1.' .. id .. '.' .. ep .. '.' .. ARGV[i])
end
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('EXPIRE', KEYS[2], ARGV[3])
return ep
"""

READ_SCRIPT = """
local ep = redis.call('GET', KEYS[2])
if not ep then
  ep = ARGV[3]
  redis.call('SET', KEYS[2], ep, 'EX', ARGV[4])
end
if redis.call('EXISTS', KEYS[1]) == 0 then
  return {ep, 1, '0-0', {}}
end
local info = redis.call('XINFO', 'STREAM', KEYS[1])
local added, length, last, first = 0, 0, '0-0', '0-0'
for i = 1, #info, 2 do
  local k = info[i]
  if k == 'entries-added' then added = info[i + 1]
  elseif k == 'length' then length = info[i + 1]
  elseif k == 'last-generated-id' then last = info[i + 1]
  elseif k == 'first-entry' and info[i + 1] then first = info[i + 1][1] end
end
local page = redis.call('XRANGE', KEYS[1], '(' .. ARGV[1], '+', 'COUNT', ARGV[2])
local complete = 0
if added == length then complete = 1 end
if first ~= '0-0' then
  local a1, a2 = string.match(ARGV[1], '(%d+)-(%d+)')
  local f1, f2 = string.match(first, '(%d+)-(%d+)')
  a1, a2, f1, f2 = tonumber(a1), tonumber(a2), tonumber(f1), tonumber(f2)
  if f1 < a1 or (f1 == a1 and f2 <= a2) then complete = 1 end
end
return {ep, complete, last, page}
"""

_HEAD = re.compile(rb"h1\.([0-9]{1,20}-[0-9]{1,20})\.([A-Za-z0-9]{1,32})\.")


@dataclass(frozen=True)
class StreamKeys:
    stream: str
    epoch: str

    @classmethod
    def for_channel(cls, channel: str) -> StreamKeys:
        tag = "{" + channel + "}"
        return cls(stream=f"{tag}:history", epoch=f"{tag}:epoch")


def split_published(data: bytes) -> tuple[tuple[int, int] | None, str | None, bytes]:
    """(stream id, epoch, signed message) of what the publish script sent; (None, None, data) otherwise."""
    m = _HEAD.match(data)
    if m is None:
        return None, None, data
    return parse_sid(m.group(1).decode()), m.group(2).decode(), data[m.end() :]


def entry_of(
    sid: tuple[int, int], message: bytes | str, verify: Callable[[bytes | str], bytes]
) -> Entry | None:
    """An Entry from a stored signed message; None for one that is unsigned, forged or malformed."""
    try:
        env, frame = decode_with_frame(verify(message))
    except EnvelopeError:
        return None
    if env.kind != "event" or frame is None:
        return None
    return Entry(sid, env.origin, env.seq, env.scope, env.target, frame)


@dataclass(frozen=True)
class Snapshot:
    """One READ_SCRIPT answer: the epoch; whether every entry after `after` is still kept (the stream
    still holds `after` itself, or never trimmed anything); its last id; a page of entries."""

    epoch: str
    complete: bool
    last: tuple[int, int]
    entries: list[tuple[tuple[int, int], bytes]]


async def read_page(
    client: Any, keys: StreamKeys, after: tuple[int, int], count: int, epoch_candidate: str, ttl: int
) -> Snapshot:
    """Entries after `after` (exclusive), at most `count`, with the stream's epoch and trim mark."""
    raw = await client.eval(
        READ_SCRIPT, 2, keys.stream, keys.epoch, f"{after[0]}-{after[1]}", count, epoch_candidate, ttl
    )
    ep, complete, last, rows = raw
    entries = []
    for sid, fields in rows:
        flat = dict(zip(fields[::2], fields[1::2], strict=True)) if isinstance(fields, list) else fields
        value = flat.get(b"e") if isinstance(flat, dict) else None
        if value is not None:
            entries.append((parse_sid(_text(sid)), value))
    return Snapshot(_text(ep), bool(complete), parse_sid(_text(last)), entries)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


@dataclass
class Replayable:
    """What `StreamHistory.after` read: the epoch, whether nothing after the id was trimmed, entries."""

    epoch: str
    complete: bool
    last: tuple[int, int]
    entries: list[Entry]


class StreamHistory:
    """This replica's view of the stream: its epoch and the last stream id it has delivered locally.

    The bridge's subscriber loop is the only writer of `epoch`/`last_sid` (messages arrive in stream
    order); the publisher calls `append` instead of PUBLISH; resumes and catch-ups call `after`.
    """

    PAGE = 1000

    def __init__(self, channel: str, size: int, ttl: int, verify: Callable[[bytes | str], bytes]) -> None:
        self.channel, self.size, self.ttl = channel, size, ttl
        self.verify = verify
        self.keys = StreamKeys.for_channel(channel)
        self.epoch = NO_EPOCH
        self.last_sid: tuple[int, int] = (0, 0)
        self._scripts: dict[int, Any] = {}

    @property
    def _candidate(self) -> str:
        """A fresh epoch for the scripts to use only if the stream has none (never reuse one: after a
        FLUSHALL the new history must not look like the old)."""
        return new_epoch()

    async def append(self, client: Any, envelopes: list[str]) -> None:
        """XADD + PUBLISH every envelope in one script call (atomic, in order)."""
        k = self.keys
        await client.eval(
            PUBLISH_SCRIPT,
            2,
            k.stream,
            k.epoch,
            self.channel,
            self.size,
            self.ttl,
            self._candidate,
            *envelopes,
        )

    async def after(self, client: Any, sid: tuple[int, int], limit: int) -> Replayable:
        """Every entry after `sid` (at most `limit`, else incomplete), read page by page."""
        first = await read_page(client, self.keys, sid, self.PAGE, self._candidate, self.ttl)
        out = Replayable(first.epoch, first.complete, first.last, [])
        page = first
        while True:
            for entry_sid, envelope in page.entries:
                entry = entry_of(entry_sid, envelope, self.verify)
                if entry is not None:
                    out.entries.append(entry)
            if len(page.entries) < self.PAGE:
                return out
            if len(out.entries) > limit:
                out.complete = False
                return out
            page = await read_page(
                client, self.keys, page.entries[-1][0], self.PAGE, self._candidate, self.ttl
            )
            if page.epoch != out.epoch:
                out.complete = False
                return out
