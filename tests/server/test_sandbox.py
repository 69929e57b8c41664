"""aifactory.sandbox with the real bubblewrap: what a command inside the sandbox can and cannot see."""

from __future__ import annotations

import dataclasses
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from aifactory import sandbox

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def workspace_root() -> Iterator[str]:
    root = sandbox.make_workspace_root()
    try:
        yield root
    finally:
        for entry in os.listdir(root):
            sandbox.remove_tree(os.path.join(root, entry))
        os.rmdir(root)


def run_inside(root: str, script: str, term_id: str = "t1") -> tuple[int, str, str]:
    """Run `script` with /bin/sh in a fresh terminal sandbox; (exit status, output, host workspace path)."""
    spec = sandbox.find_spec("/bin/sh")
    workspace = sandbox.make_workspace(root, term_id, sandbox.sandbox_uid())
    cmd = sandbox.sandbox_command(
        spec,
        term_id=term_id,
        user_id="alice",
        replica_id="r1",
        workspace=workspace,
        command=("/bin/sh", "-c", script),
    )
    done = subprocess.run(
        cmd.argv,
        env=cmd.env,
        capture_output=True,
        timeout=30,
        preexec_fn=lambda: sandbox.drop_privileges(cmd.uid),
        check=False,
    )
    return done.returncode, (done.stdout + done.stderr).decode(errors="replace"), workspace


def test_env_is_exactly_the_shell_env_even_for_bwraps_own_process(workspace_root: str) -> None:
    os.environ["AIFACTORY_SANDBOX_TEST_CANARY"] = "leaked"  # the caller's env must not get through
    try:
        code, out, _ = run_inside(workspace_root, "env; echo ---; tr '\\0' '\\n' < /proc/1/environ")
    finally:
        del os.environ["AIFACTORY_SANDBOX_TEST_CANARY"]
    assert code == 0, out
    inner, _, pid1 = out.partition("---")
    names = {line.split("=", 1)[0] for line in inner.split() if "=" in line}
    assert names <= set(sandbox.shell_env("t1", "alice", "r1", sandbox.WORKSPACE)) | {"PWD", "SHLVL", "_"}
    assert "leaked" not in out
    assert "AIFACTORY_TERMINAL_USER=alice" in inner and "HOME=/workspace" in inner
    assert "leaked" not in pid1 and "AIFACTORY_AUTH" not in pid1


def test_only_the_workspace_is_writable_and_the_host_is_out_of_view(workspace_root: str) -> None:
    script = (
        "touch /workspace/mine && echo ws-ok; "
        "touch /usr/x 2>/dev/null || echo usr-ro; touch /etc/x 2>/dev/null || echo etc-ro; "
        "echo tmp-entries=$(ls -A /tmp | wc -l); "
        f"test -e {workspace_root} || echo host-path-hidden; "
        "echo pids=$(ls /proc | grep -c '^[0-9]'); echo host=$(hostname); "
        "unshare -U true 2>/dev/null || echo no-nested-userns; "
        "grep -E 'Max (processes|core file size)' /proc/self/limits | tr -s ' '; ls /dev/pts"
    )
    code, out, workspace = run_inside(workspace_root, script)
    assert code == 0, out
    for line in ("ws-ok", "usr-ro", "etc-ro", "tmp-entries=0", "host-path-hidden", "no-nested-userns"):
        assert line in out.split(), out
    assert f"host={sandbox.HOSTNAME}" in out
    assert "Max processes 256 256 processes" in out and "Max core file size 0 0 bytes" in out, out
    assert int(out.split("pids=")[1].split()[0]) <= 5, out  # bwrap's init, sh, a subshell, ls, grep
    assert out.split()[-1] == "ptmx", out  # a private devpts: no other terminal's /dev/pts/N
    assert Path(workspace, "mine").exists()


def test_a_root_caller_never_hands_uid_0_to_the_shell(workspace_root: str) -> None:
    code, out, workspace = run_inside(workspace_root, "id -u; touch /workspace/owned")
    assert code == 0, out
    expected = sandbox.UID_WHEN_ROOT if os.geteuid() == 0 else os.geteuid()
    assert out.split()[0] == str(expected)
    assert Path(workspace, "owned").stat().st_uid == expected, "the host uid of the shell's files"


FORK_BOMB = """python3 -c '
import os, time
children = 0
try:
    while children < 400:
        if os.fork() == 0:
            time.sleep(30)
            os._exit(0)
        children += 1
except OSError as exc:
    print("refused", exc.errno, flush=True)
print("forked", children, flush=True)
os.killpg(0, 9)
'"""


def test_process_limit_stops_a_fork_bomb_inside_one_sandbox_only(workspace_root: str) -> None:
    _code, out, _ = run_inside(workspace_root, FORK_BOMB)
    assert "refused 11" in out, out  # EAGAIN from RLIMIT_NPROC
    forked = int(out.split("forked")[1].split()[0])
    assert 240 <= forked < 256, out  # 256 minus bwrap's init, sh and python themselves
    code, out, _ = run_inside(workspace_root, "sleep 0 & wait && echo other-shell-forks", term_id="t2")
    assert code == 0 and "other-shell-forks" in out, out


def test_remove_tree_deletes_unreadable_dirs_and_never_follows_links(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep").write_text("x")
    ws = tmp_path / "ws"
    (ws / "a" / "b").mkdir(parents=True)
    (ws / "a" / "b" / "f").write_text("x")
    (ws / "link").symlink_to(outside)
    os.chmod(ws / "a" / "b", 0)
    os.chmod(ws / "a", 0)
    outside.chmod(0o500)
    sandbox.remove_tree(str(ws))
    assert not ws.exists()
    assert (outside / "keep").exists() and (outside.stat().st_mode & 0o777) == 0o500


def test_without_a_fresh_proc_the_sandbox_mounts_an_empty_proc_and_nothing_else_changes(
    workspace_root: str,
) -> None:
    spec = sandbox.find_spec("/bin/sh")
    full = sandbox.sandbox_command(spec, term_id="t", user_id="u", replica_id="r", workspace=workspace_root)
    bare = sandbox.sandbox_command(
        dataclasses.replace(spec, fresh_proc=False),
        term_id="t",
        user_id="u",
        replica_id="r",
        workspace=workspace_root,
    )
    assert "--proc" in full.argv and "--proc" not in bare.argv
    assert bare.argv[bare.argv.index("--dir") + 1] == "/proc"
    assert set(full.argv) - set(bare.argv) == {"--proc"} and set(bare.argv) - set(full.argv) == {"--dir"}
