"""The image's runtime contract without docker: uid 10001, read-only root filesystem, only /tmp writable.

The server runs in a private mount namespace where `/` is remounted read-only and /tmp is a fresh tmpfs
(what the chart's securityContext + emptyDir give the pod), as the image's non-root user.
"""

from __future__ import annotations

import asyncio
import json
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.asyncio.client import connect

from aifactory.constants import DISABLED_LINE, TERMINAL_PATH
from harness.app_servers import ServerProc, ServerSet, http_json, new_secret
from tests.conftest import ROOT
from tests.server.wsclient import EventClient

pytestmark = pytest.mark.timeout(60)

APP_VIEW = "/mnt/app"  # PYTHONPATH inside the sandbox: holds only the aifactory package
VENV_VIEW = "/mnt/venv"


def sandbox_script() -> str:
    """Shell run as root in a private mount namespace; it ends by exec-ing the server as uid 10001.

    The checkout may sit in a directory only root can enter (CI clones into fresh mode-700 folders, maybe
    under /tmp, which the new tmpfs hides), so the package and the virtualenv are bound read-only under a
    world-readable tmpfs on /mnt; then `/` goes read-only and /tmp becomes an empty tmpfs, as in the pod.
    """
    venv = Path(sys.prefix)
    python = Path(VENV_VIEW) / Path(sys.executable).relative_to(venv)
    views = {str(ROOT / "aifactory"): f"{APP_VIEW}/aifactory", str(venv): VENV_VIEW}
    steps = ["mount -t tmpfs -o mode=755 tmpfs /mnt"]
    for source, view in views.items():
        steps += [
            f"mkdir -p {view}",
            f"mount --bind {shlex.quote(source)} {view}",
            f"mount -o remount,bind,ro {view}",
        ]
    steps += [
        "mount -o remount,ro /mnt",
        "mount -o remount,bind,ro /",
        "mount -t tmpfs -o mode=1777 tmpfs /tmp",
        f"exec setpriv --reuid 10001 --regid 10001 --clear-groups {python} -m aifactory.cli serve",
    ]
    return " && ".join(steps)


@pytest.fixture(scope="module")
def sandboxed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerSet]:
    for tool in ("unshare", "setpriv"):  # util-linux, part of every Debian base: missing = broken setup
        assert shutil.which(tool), f"{tool} not found"
    workdir = tmp_path_factory.mktemp("readonly")
    secret = new_secret()
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": "/tmp",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONPATH": APP_VIEW,
        "AIFACTORY_HOST": "127.0.0.1",
        "AIFACTORY_AUTH_SECRET": secret,
        "LOG_LEVEL": "INFO",
    }
    server = ServerProc(name="readonly", env=env, workdir=workdir)
    env["PORT"] = str(server.port)
    with open(server.log_path, "ab") as log:
        server.proc = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c", sandbox_script()],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd="/",
            start_new_session=True,
        )
    servers = ServerSet([server], secret)
    try:
        server.wait_ready()
        yield servers
    finally:
        servers.stop()


async def test_serves_emits_audits_and_runs_terminals_with_a_read_only_root(sandboxed: ServerSet) -> None:
    server = sandboxed[0]
    client = await EventClient.connect(server.ws_url(token=sandboxed.token("alice", "org-a")))
    status, body = http_json(
        "POST",
        server.http + "/api/events",
        {"scope": "broadcast", "event": {"type": "ro"}},
        token=sandboxed.token("svc", "ops", "service"),
    )
    assert status == 202, body  # 202 means the audit record was written (stdout, the default)
    await client.wait_for(lambda f: f.get("type") == "ro")
    await client.close()

    async with connect(server.ws_url(f"{TERMINAL_PATH}/ro", token=sandboxed.token("alice", "org-a"))) as ws:
        # the shell's uid; writing under / refused; /tmp writable (arithmetic: the echoed input never matches)
        await ws.send(
            "echo uid-$(id -u); touch /etc/x 2>/dev/null || echo ro-$((1+1)); "
            "touch /tmp/ok && echo tmp-$((2+2))\n"
        )
        seen = ""
        while not all(s in seen for s in ("uid-10001", "ro-2", "tmp-4")):
            seen += await asyncio.wait_for(ws.recv(), 20)

    log = server.log_text()
    audit = [json.loads(line) for line in log.splitlines() if line.startswith('{"ts":')]
    assert [r["action"] for r in audit] == ["event.emit", "terminal.open"], "audit lines on stdout by default"
    assert "Read-only file system" not in log and "Permission denied" not in log and "Traceback" not in log
    assert DISABLED_LINE in log
    assert not Path("/etc/x").exists()
