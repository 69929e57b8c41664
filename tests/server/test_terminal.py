"""/ws/terminal/{id}: a real PTY shell per user, refused to others, reattachable briefly, always reaped."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from aifactory.constants import TERMINAL_PATH, WS_BAD_CONTROL, WS_POLICY_VIOLATION, WS_TAKEN_OVER
from harness.app_servers import ServerSet, start_servers
from harness.terminal_client import TerminalClient
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
            b"test -t 0 && tty; "
            b"echo sum-$((40+2)) [${AIFACTORY_AUTH_SECRET:-none}] user=$AIFACTORY_TERMINAL_USER\n"
        )
        seen: list[str] = []
        await read_until(ws, r"/dev/console\r\n", seen)  # the sandbox's name for its own PTY
        await read_until(ws, r"sum-42 \[none\] user=alice", seen)


async def test_another_user_is_refused_the_terminal(term_server: ServerSet) -> None:
    async with connect(term_url(term_server, "t-owned", "alice")) as ws:
        await shell_pid(ws, term_server, "t-owned")
        code, reason = await refused(term_url(term_server, "t-owned", "mallory"))
        assert code == WS_POLICY_VIOLATION and "another user" in reason
        await ws.send(b"echo still-mine\n")
        await read_until(ws, r"(?m)^still-mine")


async def test_same_user_reattaches_within_grace_and_sees_the_same_shell(term_server: ServerSet) -> None:
    async with connect(term_url(term_server, "t-back", "alice")) as ws:
        pid = await shell_pid(ws, term_server, "t-back")
        await ws.send(b"export MARK=kept; echo replay-$((6*7))\n")
        await read_until(ws, "replay-42")
    async with connect(term_url(term_server, "t-back", "alice")) as ws:
        seen: list[str] = []
        await read_until(ws, "replay-42", seen)  # recent output replayed on reattach
        assert await shell_pid(ws, term_server, "t-back") == pid
        await ws.send(b"echo mark=$MARK\n")
        await read_until(ws, "mark=kept")
    wait_dead(pid)
    wait_reaped(leader_pid(term_server, "t-back"))


async def test_disconnect_closes_and_reaps_the_shell_after_grace(term_server: ServerSet) -> None:
    async with connect(term_url(term_server, "t-gone", "alice")) as ws:
        pid = await shell_pid(ws, term_server, "t-gone")
        await ws.send(b"sleep 1000 & echo bg-$!-end\n")
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
        await ws.send(b"exit\n")
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


# ---- the framed wire protocol (docs/terminals.md) ------------------------------------------------


async def test_ready_comes_first_and_output_is_binary(term_server: ServerSet) -> None:
    client = TerminalClient(term_url(term_server, "t-ready", "alice"))
    ready = await client.connect()
    assert ready["terminal"] == "t-ready" and ready["new"] is True and ready["offset"] == 0
    await client.send("echo pid-$$-end\n")
    ns_pid = int((await client.read_until(r"pid-(\d+)-end"))[1])
    assert ready["pid"] == leader_pid(term_server, "t-ready")  # the server's child: the sandbox's leader
    assert host_pid(ready["pid"], ns_pid) != ready["pid"]  # the shell runs inside that sandbox
    await client.close()


async def test_a_paste_that_looks_like_a_resize_reaches_the_shell(term_server: ServerSet) -> None:
    """The old in-band bug: bytes starting with {"type":"resize" were swallowed as a resize."""
    client = TerminalClient(term_url(term_server, "t-paste", "alice"))
    await client.connect()
    await client.send('{"type":"resize","rows":5,"cols":7}\n')
    await client.send("stty size; echo size-done\n")
    await client.read_until(r"\b24 80\s+size-done")
    assert '{"type":"resize","rows":5,"cols":7}' in client.text()  # the PTY echoed the pasted line
    await client.close()


async def test_a_differently_spaced_resize_resizes_and_types_nothing(term_server: ServerSet) -> None:
    """The old bug's other half: '{"type": "resize", ...}' with spaces was typed into the shell."""
    client = TerminalClient(term_url(term_server, "t-resize", "alice"))
    await client.connect()
    await client.control({"rows": 33, "type": "resize", "cols": 101})
    await client.ws.send('{ "type" : "resize", "rows" : 40, "cols" : 120 }')  # type: ignore[union-attr]
    await client.send("stty size\n")
    await client.read_until(r"\b40 120\b")
    assert "resize" not in client.text()
    await client.close()


async def test_input_control_message_types_text(term_server: ServerSet) -> None:
    client = TerminalClient(term_url(term_server, "t-input", "alice"))
    await client.connect()
    await client.control({"type": "input", "data": "echo via-$((6*7))\n"})
    await client.read_until(r"via-42")
    await client.close()


@pytest.mark.parametrize(
    "frame",
    ["echo typed-as-text", '{"type":"resize","rows":0,"cols":80}', '{"type":"bogus"}', "[1]"],
)
async def test_a_bad_control_frame_closes_1007_and_the_shell_lives_on(
    term_server: ServerSet, frame: str
) -> None:
    client = TerminalClient(term_url(term_server, "t-bad", "alice"))
    pid = (await client.connect())["pid"]
    await client.ws.send(frame)  # type: ignore[union-attr]
    assert await client.wait_closed() == WS_BAD_CONTROL
    assert (await client.connect())["pid"] == pid
    await client.close()


async def test_reattach_with_offset_replays_only_the_missing_bytes_and_resends_unseen_input(
    term_server: ServerSet,
) -> None:
    client = TerminalClient(term_url(term_server, "t-offset", "alice"))
    first = await client.connect()
    await client.send("echo one-$((1+0))\n")
    await client.read_until(r"one-1")
    await client.ws.close()  # type: ignore[union-attr]
    await client.wait_closed()
    client.sent += b"echo two-$((1+1))\n"  # typed while disconnected: never reached the shell
    again = await client.connect()  # asserts the replay starts exactly at our offset (no gap, no repeat)
    assert again["pid"] == first["pid"] and again["new"] is False
    assert again["input_offset"] == len(client.sent) - len(b"echo two-$((1+1))\n")
    await client.read_until(r"two-2")
    assert client.text().count("one-1") == 1  # not replayed twice
    await client.close()


async def test_a_bad_offset_is_refused(term_server: ServerSet) -> None:
    code, _ = await refused(term_url(term_server, "t-off", "alice") + "&offset=-1")
    assert code == WS_POLICY_VIOLATION
