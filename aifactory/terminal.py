"""Per-replica PTY shells behind /ws/terminal/{id}; framework-free (the web layer only pumps frames).

A terminal belongs to the user who first opened its id and lives only on this replica (the ingress
sticky cookie brings the browser back here). Disconnecting starts a grace period during which the same
user may reattach (and gets the recent output replayed); after it, or after the idle timeout, or when
the shell exits, the process group is hung up, killed if needed, and reaped.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import fcntl
import logging
import os
import pty
import re
import signal
import struct
import termios
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from aifactory import sandbox
from aifactory.constants import (
    WS_GOING_AWAY,
    WS_INTERNAL_ERROR,
    WS_NORMAL,
    WS_POLICY_VIOLATION,
    WS_TAKEN_OVER,
    WS_TRY_AGAIN_LATER,
)

log = logging.getLogger("aifactory.terminal")

TERMINAL_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
SCROLLBACK_BYTES = 64 * 1024
OUTPUT_QUEUE_CHUNKS = 256
READ_CHUNK = 65536


class TerminalRefused(Exception):
    """The socket may not use this terminal; `code` is the WebSocket close code to send."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


REFUSAL_LOG_INTERVAL = 60.0  # at most one refusal line per reason per minute: refusals cannot flood the log
SANDBOX_UNAVAILABLE = "terminals are disabled on this replica: the shell sandbox cannot be created"


def _child_setup(uid: int | None) -> Callable[[], None]:
    """Runs in the child between fork and exec (after setsid): own the PTY, then give up the server's uid."""

    def setup() -> None:
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)
        sandbox.drop_privileges(uid)

    return setup


class RateLimitedLog:
    """One INFO line per key per `interval`; the next one says how many were suppressed meanwhile."""

    def __init__(self, logger: logging.Logger, interval: float) -> None:
        self.logger = logger
        self.interval = interval
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def info(self, key: str, msg: str, *args: object) -> None:
        now = time.monotonic()
        if now - self._last.get(key, -self.interval) < self.interval:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return
        self._last[key] = now
        skipped = self._suppressed.pop(key, 0)
        suffix = f" ({skipped} more like it in the last {self.interval:.0f}s not logged)" if skipped else ""
        self.logger.info(msg + suffix, *args)


def _session_members(sid: int) -> list[int]:
    """Pids in session `sid` (the shell's): background jobs live in their own process groups."""
    members = []
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else ():
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                fields = fh.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid:  # fields after "comm)": state ppid pgrp session ...
            members.append(int(entry))
    return members


def _signal_session(sid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(sid, sig)
    for pid in _session_members(sid):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def _set_winsize(fd: int, rows: int, cols: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


@dataclass(eq=False)
class Attachment:
    """One socket's view of a terminal: a bounded queue of output chunks; None means 'closed: reason'."""

    queue: asyncio.Queue[bytes | None] = field(default_factory=lambda: asyncio.Queue(OUTPUT_QUEUE_CHUNKS))
    close_reason: str = ""
    close_code: int = WS_NORMAL


@dataclass(eq=False)
class Terminal:
    """One shell on a PTY."""

    id: str
    owner: str
    proc: asyncio.subprocess.Process
    master: int
    workspace: str | None = None  # the sandbox's only writable directory, deleted with the terminal
    last_activity: float = field(default_factory=time.monotonic)
    attachment: Attachment | None = None
    scrollback: collections.deque[bytes] = field(default_factory=collections.deque)
    scrollback_size: int = 0
    paused: bool = False
    closed: bool = False
    grace_handle: asyncio.TimerHandle | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def touch(self) -> None:
        self.last_activity = time.monotonic()


class TerminalManager:
    """All terminals of this replica, keyed by id."""

    def __init__(
        self,
        shell: str,
        replica_id: str,
        idle_seconds: float,
        grace_seconds: float,
        max_terminals: int,
        sandbox_mode: str = "on",
    ) -> None:
        self.shell = shell
        self.replica_id = replica_id
        self.idle_seconds = idle_seconds
        self.grace_seconds = grace_seconds
        self.max_terminals = max_terminals
        self.sandbox_mode = sandbox_mode
        self.sandbox: sandbox.SandboxSpec | None = None
        self.unavailable: str | None = None  # why terminals are refused (1011) on this replica
        self.workspace_root: str | None = None
        self.terminals: dict[str, Terminal] = {}
        self._opening: dict[str, tuple[str, asyncio.Future[Terminal]]] = {}  # reserved slots (id → owner)
        self._reaper: asyncio.Task[None] | None = None
        self._closing: set[asyncio.Task[None]] = set()
        self.refusals = RateLimitedLog(log, REFUSAL_LOG_INTERVAL)

    # ---- lifecycle --------------------------------------------------------------------------
    def start(self) -> None:
        """Prove the sandbox works (one ERROR and 1011 refusals if not; never a silent fallback)."""
        if self.sandbox_mode == "off":
            log.warning(
                "AIFACTORY_TERMINAL_SANDBOX=off: terminal shells run unsandboxed as the server's uid and "
                "can read its secrets (/proc/<pid>/environ is one read away), the audit log and each "
                "other's terminals; use only where every terminal user is trusted with the deployment"
            )
        else:
            try:
                self.workspace_root = sandbox.make_workspace_root()
                self.sandbox = sandbox.probe(sandbox.find_spec(self.shell), self.workspace_root)
                if not self.sandbox.fresh_proc:
                    log.warning(
                        "terminal sandbox without a fresh /proc: this container masks parts of /proc "
                        "(procMount: Default), so shells get an empty /proc (ps and top show nothing); "
                        "the rest of the sandbox holds. procMount: Unmasked (with hostUsers: false) gives "
                        "shells their own /proc"
                    )
            except (sandbox.SandboxUnavailable, OSError) as exc:
                self.unavailable = str(exc)
                log.error(
                    "terminal sandbox unavailable, terminals are refused with 1011: %s. The pod must allow "
                    "user namespaces (a seccomp profile allowing unshare/clone with namespace flags, see "
                    "docs/security.md#shells), or set AIFACTORY_TERMINAL_SANDBOX=off to run shells "
                    "unsandboxed (they can then read the server's secrets)",
                    exc,
                )
        self._reaper = asyncio.get_running_loop().create_task(self._reap_idle(), name="terminal-idle-reaper")

    async def stop(self) -> None:
        if self._reaper:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
        await asyncio.gather(
            *(self.close(t, "server shutting down", WS_GOING_AWAY) for t in list(self.terminals.values()))
        )
        await asyncio.gather(*self._closing, return_exceptions=True)
        if self.workspace_root is not None:
            for entry in os.listdir(self.workspace_root):
                sandbox.remove_tree(os.path.join(self.workspace_root, entry))
            with contextlib.suppress(OSError):
                os.rmdir(self.workspace_root)

    async def _reap_idle(self) -> None:
        period = max(0.05, min(self.idle_seconds / 4, 5.0))
        while True:
            await asyncio.sleep(period)
            now = time.monotonic()
            for term in list(self.terminals.values()):
                if now - term.last_activity >= self.idle_seconds:
                    log.info(
                        "terminal %s of %s idle for %.0fs: closing", term.id, term.owner, self.idle_seconds
                    )
                    self._spawn_close(term, "idle timeout")

    # ---- attach / detach ----------------------------------------------------------------------
    async def attach(
        self, term_id: str, user_id: str, on_open: Callable[[], None] | None = None
    ) -> tuple[Terminal, Attachment]:
        """Open terminal `term_id` for `user_id`, or reattach to it; raise TerminalRefused otherwise.

        A new terminal's slot is reserved before anything is awaited (so AIFACTORY_TERMINAL_MAX holds under
        concurrent opens), then `on_open` runs (the audit record: raising there refuses the open), then the
        shell is spawned. Nothing is recorded for refused opens.
        """
        try:
            term = await self._open(term_id, user_id, on_open)
        except TerminalRefused as exc:
            self.refusals.info(exc.reason, "terminal %s refused for %s: %s", term_id, user_id, exc.reason)
            raise
        if term.grace_handle is not None:
            term.grace_handle.cancel()
            term.grace_handle = None
        if term.attachment is not None:  # a newer connection of the same user takes the terminal over
            self._end_attachment(term, "terminal attached from another connection", WS_TAKEN_OVER)
        att = Attachment()
        replay = b"".join(term.scrollback)
        if replay:
            att.queue.put_nowait(replay)
        term.attachment = att
        term.touch()
        self._resume(term)
        return term, att

    async def _open(self, term_id: str, user_id: str, on_open: Callable[[], None] | None) -> Terminal:
        if not TERMINAL_ID.match(term_id):
            raise TerminalRefused(WS_POLICY_VIOLATION, "terminal id must be 1-64 of A-Z a-z 0-9 _ . -")
        if self.unavailable is not None:
            raise TerminalRefused(WS_INTERNAL_ERROR, SANDBOX_UNAVAILABLE)
        term = self.terminals.get(term_id)
        if term is not None:
            if term.owner != user_id:
                raise TerminalRefused(WS_POLICY_VIOLATION, "terminal belongs to another user")
            return term
        opening = self._opening.get(term_id)
        if opening is not None:  # the same id is starting right now: share its outcome
            owner, started = opening
            if owner != user_id:
                raise TerminalRefused(WS_POLICY_VIOLATION, "terminal belongs to another user")
            try:
                return await asyncio.shield(started)
            except Exception:
                raise TerminalRefused(WS_INTERNAL_ERROR, "could not start a shell on this replica") from None
        if len(self.terminals) + len(self._opening) >= self.max_terminals:
            raise TerminalRefused(WS_TRY_AGAIN_LATER, "too many terminals on this replica; try again later")
        started = asyncio.get_running_loop().create_future()
        started.add_done_callback(lambda f: f.cancelled() or f.exception())  # a waiter may not exist
        self._opening[term_id] = (user_id, started)  # the slot is ours before the first await
        try:
            if on_open is not None:
                on_open()
            term = await self._spawn(term_id, user_id)
        except BaseException as exc:
            if isinstance(exc, Exception):
                started.set_exception(exc)
            else:
                started.cancel()
            raise
        finally:
            del self._opening[term_id]
        started.set_result(term)
        return term

    def detach(self, term: Terminal, att: Attachment) -> None:
        """The socket went away: keep the shell for the grace period so the same user can come back."""
        if term.attachment is not att or term.closed:
            return
        term.attachment = None
        self._resume(term)  # keep draining the PTY into the scrollback while nobody watches
        if self.grace_seconds <= 0:
            self._spawn_close(term, "client disconnected")
        else:
            term.grace_handle = asyncio.get_running_loop().call_later(
                self.grace_seconds, self._spawn_close, term, "client did not reconnect"
            )

    # ---- I/O ------------------------------------------------------------------------------------
    async def write(self, term: Terminal, data: bytes) -> None:
        """Send keystrokes to the shell without blocking the event loop."""
        term.touch()
        view = memoryview(data)
        while view and not term.closed:
            try:
                written = os.write(term.master, view)
            except BlockingIOError:
                await asyncio.sleep(0.01)
                continue
            except OSError:
                return
            view = view[written:]

    def resize(self, term: Terminal, rows: int, cols: int) -> None:
        if not term.closed and 0 < rows < 1000 and 0 < cols < 1000:
            _set_winsize(term.master, rows, cols)

    def output_consumed(self, term: Terminal) -> None:
        """Called by the socket pump after each chunk: resume reading once the queue has room."""
        att = term.attachment
        if term.paused and att is not None and att.queue.qsize() < OUTPUT_QUEUE_CHUNKS // 2:
            self._resume(term)

    # ---- internals ------------------------------------------------------------------------------
    async def _spawn(self, term_id: str, user_id: str) -> Terminal:
        master, slave = pty.openpty()
        workspace = None
        try:
            _set_winsize(master, 24, 80)
            if self.sandbox is not None:
                assert self.workspace_root is not None
                uid = sandbox.sandbox_uid()
                workspace = sandbox.make_workspace(self.workspace_root, term_id, uid)
                cmd = sandbox.sandbox_command(
                    self.sandbox,
                    term_id=term_id,
                    user_id=user_id,
                    replica_id=self.replica_id,
                    workspace=workspace,
                )
                argv, env, cwd = cmd.argv, cmd.env, "/"
                if uid is not None:
                    os.fchown(slave, uid, -1)
            else:  # AIFACTORY_TERMINAL_SANDBOX=off: the operator accepted an unsandboxed shell
                home = os.environ.get("HOME", "/tmp")
                env = sandbox.shell_env(term_id, user_id, self.replica_id, home)
                env["PATH"] = os.environ.get("PATH", env["PATH"])
                argv, cwd, uid = [self.shell, "-i"], home if os.path.isdir(home) else "/", None
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=slave,
                stdout=slave,
                stderr=slave,
                env=env,  # never the server's own env: it holds the auth secret and the Redis password
                cwd=cwd,
                start_new_session=True,
                preexec_fn=_child_setup(uid),
            )
        except BaseException:
            os.close(master)
            if workspace is not None:
                sandbox.remove_tree(workspace)
            raise
        finally:
            os.close(slave)
        os.set_blocking(master, False)
        term = Terminal(id=term_id, owner=user_id, proc=proc, master=master, workspace=workspace)
        self.terminals[term_id] = term
        asyncio.get_running_loop().add_reader(master, self._on_readable, term)
        log.info("terminal %s opened for %s (pid %d)", term_id, user_id, proc.pid)
        return term

    def _on_readable(self, term: Terminal) -> None:
        try:
            data = os.read(term.master, READ_CHUNK)
        except BlockingIOError:
            return
        except OSError:  # EIO: the shell and everything on the PTY has gone
            data = b""
        if not data:
            self._pause(term)
            self._spawn_close(term, "shell exited")
            return
        term.touch()
        term.scrollback.append(data)
        term.scrollback_size += len(data)
        while term.scrollback_size > SCROLLBACK_BYTES and len(term.scrollback) > 1:
            term.scrollback_size -= len(term.scrollback.popleft())
        att = term.attachment
        if att is not None:
            att.queue.put_nowait(data)
            if (
                att.queue.qsize() >= OUTPUT_QUEUE_CHUNKS - 1
            ):  # slow reader: let the PTY push back on the shell
                self._pause(term)

    def _pause(self, term: Terminal) -> None:
        if not term.paused and not term.closed:
            asyncio.get_running_loop().remove_reader(term.master)
            term.paused = True

    def _resume(self, term: Terminal) -> None:
        if term.paused and not term.closed:
            asyncio.get_running_loop().add_reader(term.master, self._on_readable, term)
            term.paused = False

    def _end_attachment(self, term: Terminal, reason: str, code: int) -> None:
        att = term.attachment
        term.attachment = None
        if att is not None:
            att.close_reason, att.close_code = reason, code
            with contextlib.suppress(asyncio.QueueFull):
                att.queue.put_nowait(None)
            if att.queue.full():  # make room for the sentinel: the socket is closing anyway
                with contextlib.suppress(asyncio.QueueEmpty):
                    att.queue.get_nowait()
                att.queue.put_nowait(None)

    def _spawn_close(self, term: Terminal, reason: str) -> None:
        if term.closed:
            return
        task = asyncio.get_running_loop().create_task(self.close(term, reason))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def close(self, term: Terminal, reason: str, code: int = WS_NORMAL) -> None:
        """Hang up the shell's process group, kill it if it lingers, reap it, and tell the socket."""
        if term.closed:
            return
        term.closed = True
        if term.grace_handle is not None:
            term.grace_handle.cancel()
        if self.terminals.get(term.id) is term:
            del self.terminals[term.id]
        if not term.paused:
            asyncio.get_running_loop().remove_reader(term.master)
        self._end_attachment(term, f"terminal closed: {reason}", code)
        with contextlib.suppress(OSError):
            os.close(term.master)
        for sig in (signal.SIGHUP, signal.SIGKILL):
            _signal_session(term.pid, sig)
            try:
                await asyncio.wait_for(term.proc.wait(), timeout=2.0)
                break
            except TimeoutError:
                continue
        _signal_session(term.pid, signal.SIGKILL)  # background jobs that ignored the hangup
        if term.workspace is not None:
            sandbox.remove_tree(term.workspace)
        log.info("terminal %s of %s closed (%s); pid %d reaped", term.id, term.owner, reason, term.pid)
