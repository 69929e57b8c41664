"""Log a recurring problem without flooding: the first occurrence at once, then one summary per interval."""

from __future__ import annotations

import logging
import time
from typing import Any

__all__ = ["ThrottledLog"]


class ThrottledLog:
    """Log the first call at once, then at most one record per `interval` seconds, counting the rest."""

    def __init__(
        self, logger: logging.LoggerAdapter[logging.Logger], level: int, interval: float = 60.0
    ) -> None:
        self.logger, self.level, self.interval = logger, level, interval
        self._last = float("-inf")
        self._suppressed = 0

    def __call__(self, msg: str, *args: object, **kwargs: Any) -> None:
        now = time.monotonic()
        if now - self._last < self.interval:
            self._suppressed += 1
            return
        suffix = f" ({self._suppressed} more since last report)" if self._suppressed else ""
        self._last, self._suppressed = now, 0
        self.logger.log(self.level, msg + suffix, *args, **kwargs)
