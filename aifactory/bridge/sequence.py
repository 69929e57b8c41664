"""Per-origin sequence bookkeeping: which envelope is new, and how many events a gap lost.

Pure (no Redis, no asyncio) so the gap arithmetic is unit-tested on its own. Every replica numbers its
events 1, 2, 3, ... and consumes a number even for an event it could not publish, so a receiver that sees
seq jump from 4 to 7 knows two events never arrived and tells its clients to resync.

No single envelope may silence an origin: a seq at most `DUPLICATE_WINDOW` below the last one is a
duplicate (dropped), but one far below it means the baseline itself is wrong (a forged or corrupted
`seq 1e18` got in first), so it becomes the new baseline instead of every real event being dropped as a
duplicate until the origin restarts. (Signing, see envelope.py, keeps forged envelopes out in the first
place; this bounds what any one envelope can do to the state.)
"""

from __future__ import annotations

from collections import OrderedDict

__all__ = ["DUPLICATE_WINDOW", "MAX_ORIGINS", "OriginSequences"]

MAX_ORIGINS = 4096  # remembered origins (origins are per-process uuids); the oldest is forgotten first
DUPLICATE_WINDOW = 1024  # how far below the last seq an envelope still counts as a duplicate


class OriginSequences:
    """The last sequence number seen from each origin (bounded, least recently seen evicted first)."""

    def __init__(self, max_origins: int = MAX_ORIGINS, duplicate_window: int = DUPLICATE_WINDOW) -> None:
        self.max_origins = max_origins
        self.duplicate_window = duplicate_window
        self._last: OrderedDict[str, int] = OrderedDict()

    def __len__(self) -> int:
        return len(self._last)

    def last(self, origin: str) -> int | None:
        return self._last.get(origin)

    def advance(self, origin: str, seq: int, *, settled: bool) -> int | None:
        """Record `seq` from `origin`: None if it is not new (a duplicate or late), else the events missed.

        An event carries its own seq; a probe carries the last seq the origin already published or dropped
        (`settled=True`), so seq == last + 1 is a gap of one for a probe but none for an event. The first
        envelope seen from an origin only sets the baseline (0 missed), and so does one more than
        `duplicate_window` below the last seq (the old baseline cannot have been real).
        """
        last = self._last.get(origin)
        missed = 0
        if last is not None:
            if seq <= last:
                if last - seq <= self.duplicate_window:
                    return None
                missed = -1  # re-baseline below
            else:
                missed = seq - last - (0 if settled else 1)
            self._last.move_to_end(origin)
        elif len(self._last) >= self.max_origins:
            self._last.popitem(last=False)
        self._last[origin] = seq
        return max(missed, 0)
