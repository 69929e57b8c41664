"""Append-only JSON-lines audit log, written by routes BEFORE they touch the event bus.

If the record cannot be written the route fails and nothing is emitted: an event that happened must
have its audit line. One write() per line with O_APPEND keeps lines whole when replicas share a file.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from datetime import UTC, datetime
from typing import Any

from aifactory.auth import Principal


class AuditError(OSError):
    """The audit record could not be written; the caller must not emit the event."""


class AuditLog:
    """Writes one JSON object per line to `path` ('-' = stdout)."""

    def __init__(self, path: str, replica_id: str) -> None:
        self.path = path
        self.replica_id = replica_id
        self._lock = threading.Lock()

    def check(self) -> None:
        """Fail fast at startup (AuditError) when the log cannot be appended to, instead of 503s later."""
        if self.path == "-":
            return
        try:
            os.close(os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600))
        except OSError as exc:
            raise AuditError(f"cannot append to {self.path} ({exc.strerror or exc})") from None

    def record(self, action: str, actor: Principal, **details: Any) -> dict[str, Any]:
        """Write and flush one record synchronously; raise AuditError if that is impossible."""
        entry: dict[str, Any] = {
            "ts": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "replica": self.replica_id,
            "action": action,
            "actor": {"sub": actor.user_id, "org": actor.org_id, "role": actor.role},
            **details,
        }
        line = (json.dumps(entry, separators=(",", ":"), default=str) + "\n").encode()
        with self._lock:
            try:
                if self.path == "-":
                    sys.stdout.buffer.write(line)
                    sys.stdout.buffer.flush()
                else:
                    fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
                    try:
                        os.write(fd, line)
                    finally:
                        os.close(fd)
            except OSError as exc:
                raise AuditError(f"cannot write audit log {self.path}: {exc.strerror or exc}") from None
        return entry
