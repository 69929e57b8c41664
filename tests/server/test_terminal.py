"""/ws/terminal/{id}: a real PTY shell per user, refused to others, reattachable briefly, always reaped."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from aifactory.constants import TERMINAL_PATH, WS_POLICY_VIOLATION, WS_TAKEN_OVER
from harness.app_servers import ServerSet, start_servers
from tests.server.shells import WAIT, host_pid, leader_pid, read_until, shell_pid
from tests.server.wsclient import refused

pytestmark = pytest.mark.timeout(90)


@pytest.fixture(scope="module")
def term_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerSet]:
    servers = start_servers(
        1,
        workdir=tmp_path_factory.mktemp("term"),
        extra_env={"AIFACTORY_TERMINAL_GRACE_SECONDS": "1", "AIFACTORY_TERMINAL_SHELL": "/bin/sh"},
    )
    try:
        yield servers
    finally:
        servers.stop()


def wait_reaped(pid: int) -> None:
    """The server reaped the shell: not even a zombie is left with that pid."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    raise AssertionError(f"shell pid {pid} still exists (not killed or not reaped)")


def wait_dead(pid: int) -> None:
    """A process that is not our child is gone or at least a zombie (killed, waiting for init to reap it)."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as fh:
                if fh.read().rsplit(")", 1)[1].split()[0] == "Z":
                    return
        except FileNotFoundError:
            return
        time.sleep(0.05)
    raise AssertionError(f"background job {pid} survived its terminal")


def term_url(server: ServerSet, term: str, user: str) -> str:
    return server[0].ws_url(f"{TERMINAL_PATH}/{term}", token=server.token(user, "org-a"))


async def test_owner_gets_a_real_pty_shell_without_the_servers_secrets(term_server: ServerSet) -> None:
    async with connect(term_url(term_server, "t-real", "alice")) as ws:
        await ws.send(
            "test -t 0 && tty; "
            "echo sum-$((40+2)) [${AIFACTORY_AUTH_SECRET:-none}] user=$AIFACTORY_TERMINAL_USER\n"
        )
        seen: list[str] = []
        await read_until(ws, r"/dev/console\r\n", seen)  # the sandbox's name for its own PTY
        await read_until(ws, r"sum-42 \[none\] user=alice", seen)


async def test_another_user_is_refused_the_terminal(term_server: ServerSet) -> None:
    async with connect(term_url(term_server, "t-owned", "alice")) as ws:
        await shell_pid(ws, term_server, "t-owned")
        code, reason = await refused(term_url(term_server, "t-owned", "mallory"))
        assert code == WS_POLICY_VIOLATION and "another user" in reason
        await ws.send("echo still-mine\n")
        await read_until(ws, r"(?m)^still-mine")


async def test_same_user_reattaches_within_grace_and_sees_the_same_shell(term_server: ServerSet) -> None:
    async with connect(term_url(term_server, "t-back", "alice")) as ws:
        pid = await shell_pid(ws, term_server, "t-back")
        await ws.send("export MARK=kept; echo replay-$((6*7))\n")
        await read_until(ws, "replay-42")
    async with connect(term_url(term_server, "t-back", "alice")) as ws:
        seen: list[str] = []
        await read_until(ws, "replay-42", seen)  # recent output replayed on reattach
        assert await shell_pid(ws, term_server, "t-back") == pid
        await ws.send("echo mark=$MARK\n")
        await read_until(ws, "mark=kept")
    wait_dead(pid)
    wait_reaped(leader_pid(term_server, "t-back"))


async def test_disconnect_closes_and_reaps_the_shell_after_grace(term_server: ServerSet) -> None:
    async with connect(term_url(term_server, "t-gone", "alice")) as ws:
        pid = await shell_pid(ws, term_server, "t-gone")
        await ws.send("sleep 1000 & echo bg-$!-end\n")
        leader = leader_pid(term_server, "t-gone")
        background = host_pid(leader, int((await read_until(ws, r"bg-(\d+)-end"))[1]))
    wait_reaped(leader)  # the server's own child: not even a zombie left
    wait_dead(pid)
    wait_dead(background)
    term_server[0].wait_for_log(
        f"terminal t-gone of alice closed (client did not reconnect); pid {leader} reaped"
    )


async def test_exit_closes_the_socket_normally_and_reaps(term_server: ServerSet) -> None:
    async with connect(term_url(term_server, "t-exit", "alice")) as ws:
        await shell_pid(ws, term_server, "t-exit")
        pid = leader_pid(term_server, "t-exit")
        await ws.send("exit\n")
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(read_until(ws, "never-printed"), WAIT)
        assert closed.value.rcvd is not None
        assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (1000, "terminal closed: shell exited")
    wait_reaped(pid)


async def test_a_second_connection_takes_over_the_first(term_server: ServerSet) -> None:
    async with connect(term_url(term_server, "t-take", "alice")) as first:
        pid = await shell_pid(first, term_server, "t-take")
        async with connect(term_url(term_server, "t-take", "alice")) as second:
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(read_until(first, "never-printed"), WAIT)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == WS_TAKEN_OVER
            assert await shell_pid(second, term_server, "t-take") == pid


async def test_terminal_socket_closes_when_its_token_expires_and_the_shell_waits_for_reattach(
    term_server: ServerSet,
) -> None:
    short = term_server.token("alice", "org-a", ttl=2)
    async with connect(term_server[0].ws_url(f"{TERMINAL_PATH}/t-exp", token=short)) as ws:
        pid = await shell_pid(ws, term_server, "t-exp")
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(read_until(ws, "never-printed"), WAIT)
        assert closed.value.rcvd is not None
        assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (WS_POLICY_VIOLATION, "token expired")
    async with connect(term_url(term_server, "t-exp", "alice")) as ws:  # a fresh token, the same shell
        assert await shell_pid(ws, term_server, "t-exp") == pid


async def test_invalid_terminal_id_is_refused(term_server: ServerSet) -> None:
    code, _ = await refused(term_url(term_server, "x" * 65, "alice"))
    assert code == WS_POLICY_VIOLATION


async def test_idle_terminal_is_closed_and_reaped(tmp_path_factory: pytest.TempPathFactory) -> None:
    servers = start_servers(
        1,
        workdir=tmp_path_factory.mktemp("idle"),
        extra_env={"AIFACTORY_TERMINAL_IDLE_SECONDS": "1", "AIFACTORY_TERMINAL_SHELL": "/bin/sh"},
    )
    try:
        async with connect(term_url(servers, "t-idle", "alice")) as ws:
            await shell_pid(ws, servers, "t-idle")
            pid = leader_pid(servers, "t-idle")
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(read_until(ws, "never-printed"), WAIT)
            assert closed.value.rcvd is not None
            assert closed.value.rcvd.reason == "terminal closed: idle timeout"
        wait_reaped(pid)
    finally:
        servers.stop()
