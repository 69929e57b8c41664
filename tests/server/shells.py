"""Reading a terminal's output and naming its shell from the host (inside its sandbox a shell is pid 2)."""

from __future__ import annotations

import asyncio
import os
import re
import uuid

from websockets.asyncio.client import ClientConnection

from harness.app_servers import ServerSet

WAIT = 20.0


async def read_until(ws: ClientConnection, pattern: str, seen: list[str] | None = None) -> re.Match[str]:
    """Read output frames until `pattern` matches the accumulated text."""
    seen = seen if seen is not None else []

    async def loop() -> re.Match[str]:
        while not (found := re.search(pattern, "".join(seen))):  # may already be in what an earlier call read
            seen.append(await ws.recv())
        return found

    try:
        return await asyncio.wait_for(loop(), WAIT)
    except TimeoutError:
        raise AssertionError(
            f"{pattern!r} never appeared in the terminal output: {''.join(seen)!r}"
        ) from None


def _stat_fields(pid: int | str) -> list[str]:
    with open(f"/proc/{pid}/stat") as fh:
        return fh.read().rsplit(")", 1)[1].split()  # state ppid pgrp session ...


def host_pid(session: int, ns_pid: int) -> int:
    """The host pid of the process that calls itself `ns_pid` inside the sandbox led by `session`."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = _stat_fields(entry)
            with open(f"/proc/{entry}/status") as fh:
                nspid = next(line.split()[1:] for line in fh if line.startswith("NSpid:"))
        except (OSError, StopIteration):
            continue
        if int(fields[3]) == session and int(nspid[-1]) == ns_pid:
            return int(entry)
    raise AssertionError(f"no process {ns_pid} in the sandbox of session {session}")


def leader_pid(server: ServerSet, term: str) -> int:
    """The server's child for terminal `term` (bwrap, the session leader), from its last 'opened' line."""
    log = server[0].wait_for_log(f"terminal {term} opened for ")
    return int(re.findall(rf"terminal {re.escape(term)} opened for \S+ \(pid (\d+)\)", log)[-1])


async def shell_pid(ws: ClientConnection, server: ServerSet, term: str) -> int:
    """The host pid of the shell on `ws` (inside its PID namespace the shell sees another number)."""
    tag = uuid.uuid4().hex[:8]
    await ws.send(f"echo pid-{tag}-$$-end\n")
    ns_pid = int((await read_until(ws, rf"pid-{tag}-(\d+)-end"))[1])
    return host_pid(leader_pid(server, term), ns_pid)
