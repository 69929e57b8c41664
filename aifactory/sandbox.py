"""The per-terminal sandbox: a bubblewrap (`bwrap`) command line, and the startup probe that proves it works.

Why: a shell that runs as the server's uid can read `/proc/<server>/environ` (the auth secret, the Redis
password) and write into other users' PTYs. Each shell instead gets its own user, PID, mount, IPC, UTS and
cgroup namespaces, a private `/dev` (fresh devpts), a read-only view of `/usr` and `/etc`, a private tmpfs
`/tmp`, and exactly one writable directory: its own workspace, mounted at `/workspace`. Nothing of the
server's (its /proc, its /tmp, the audit log, the dev secret, log files) is mounted.

`sandbox_command` is a pure function (terminal, user, workspace → argv, env, uid) so a separate
terminal-host process can build the very same sandbox; `probe` runs it once at startup.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

MODES = ("on", "off")
WORKSPACE = "/workspace"  # where the terminal's own directory appears inside the sandbox
HOSTNAME = "aifactory-terminal"
# A root server never hands uid 0 to a shell (even inside a user namespace, kuid 0 owns root's 0600 files).
UID_WHEN_ROOT = 65534
SANDBOX_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
TMP_BYTES = 64 * 1024 * 1024
PROBE_TIMEOUT = 15.0
# Top-level directories mirrored read-only (or as the same symlink on merged-/usr systems).
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc")


@dataclass(frozen=True)
class Limits:
    """Resource limits set inside the sandbox (after its user namespace exists, so they count per shell).

    RLIMIT_NPROC is accounted per (user namespace, uid): 256 processes stop a fork bomb in this shell
    without touching other shells or the server. Memory as a whole is bounded by the pod's cgroup only.
    """

    processes: int = 256
    address_space_bytes: int = 4 * 1024**3  # per process
    file_size_bytes: int = 1024**3  # per file written
    open_files: int = 1024
    core_bytes: int = 0  # no core dumps (they would land in the workspace)

    def prlimit_args(self) -> list[str]:
        pairs = (
            ("nproc", self.processes),
            ("as", self.address_space_bytes),
            ("fsize", self.file_size_bytes),
            ("nofile", self.open_files),
            ("core", self.core_bytes),
        )
        return [f"--{name}={value}:{value}" for name, value in pairs]  # soft = hard: no raising them back


@dataclass(frozen=True)
class SandboxSpec:
    """The fixed parts of every sandbox on this host (tools, shell, limits)."""

    bwrap: str
    prlimit: str
    shell: str
    limits: Limits = field(default_factory=Limits)
    # False where the runtime masks /proc (procMount: Default) so no procfs can be mounted: an empty /proc
    fresh_proc: bool = True


@dataclass(frozen=True)
class SandboxCommand:
    """What to exec: `argv` with exactly `env` (bwrap's own /proc/1/environ is visible inside), as `uid`."""

    argv: list[str]
    env: dict[str, str]
    uid: int | None  # drop to this uid/gid before exec (None: keep the server's own, unprivileged)


class SandboxUnavailable(RuntimeError):
    """The sandbox cannot be created here; str() is one line saying why and what the operator can do."""


def shell_env(term_id: str, user_id: str, replica_id: str, home: str) -> dict[str, str]:
    """The whole environment of a shell: never anything of the server's own (secret, Redis password)."""
    return {
        "PATH": SANDBOX_PATH,
        "HOME": home,
        "TERM": "xterm-256color",
        "LANG": "C.UTF-8",
        "AIFACTORY_TERMINAL_ID": term_id,
        "AIFACTORY_TERMINAL_USER": user_id,
        "AIFACTORY_REPLICA_ID": replica_id,
    }


def _mapped(id_map: str, value: int) -> bool:
    """Whether `value` is mapped in this process's user namespace (/proc/self/uid_map or gid_map)."""
    try:
        with open(f"/proc/self/{id_map}") as fh:
            ranges = [tuple(map(int, line.split())) for line in fh if line.strip()]
    except OSError:
        return False
    return any(inside <= value < inside + count for inside, _outside, count in ranges)


def sandbox_uid() -> int | None:
    """The uid sandboxes run as: the server's own when unprivileged, `nobody` when it is root.

    A root that is root only of its own user namespace (e.g. under `unshare --map-root-user`) may have no
    `nobody` to become; its uid 0 is an unprivileged host uid already, so it keeps it.
    """
    if os.geteuid() != 0:
        return None
    if _mapped("uid_map", UID_WHEN_ROOT) and _mapped("gid_map", UID_WHEN_ROOT):
        return UID_WHEN_ROOT
    return None


def _system_mounts(shell: str) -> list[str]:
    args: list[str] = []
    for path in SYSTEM_DIRS:
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            args += ["--ro-bind", path, path]
    real_shell = os.path.realpath(shell)
    if not any(real_shell.startswith(d + "/") for d in SYSTEM_DIRS if not os.path.islink(d)):
        args += ["--ro-bind", shell, shell]  # a shell outside /usr (e.g. /opt/...) still has to exist inside
    return args


def sandbox_command(
    spec: SandboxSpec,
    *,
    term_id: str,
    user_id: str,
    replica_id: str,
    workspace: str,
    command: Sequence[str] | None = None,
) -> SandboxCommand:
    """The bwrap command line for one terminal: pure (reads only which top-level dirs are symlinks)."""
    env = shell_env(term_id, user_id, replica_id, WORKSPACE)
    argv = [
        spec.bwrap,
        "--unshare-user",
        "--disable-userns",  # no nested user namespaces: the kernel surface stays what we chose
        "--unshare-pid",
        "--unshare-ipc",
        "--unshare-uts",
        "--unshare-cgroup-try",
        "--hostname",
        HOSTNAME,
        "--die-with-parent",
        *_system_mounts(spec.shell),
        *(("--proc", "/proc") if spec.fresh_proc else ("--dir", "/proc")),
        "--dev",
        "/dev",
        "--size",
        str(TMP_BYTES),
        "--tmpfs",
        "/tmp",
        "--bind",
        workspace,
        WORKSPACE,
        "--chdir",
        WORKSPACE,
        "--clearenv",
    ]
    for name, value in env.items():
        argv += ["--setenv", name, value]
    argv += [spec.prlimit, *spec.limits.prlimit_args(), "--", *(command or (spec.shell, "-i"))]
    return SandboxCommand(argv=argv, env=dict(env), uid=sandbox_uid())


def drop_privileges(uid: int | None) -> None:
    """In the child before exec: become `uid` (its own group, no supplementary groups)."""
    if uid is None:
        return
    os.setgroups([])
    os.setgid(uid)
    os.setuid(uid)


def make_workspace_root(parent: str | None = None) -> str:
    """This server's private directory of workspaces; traversable (not listable) by `nobody` when root."""
    root = tempfile.mkdtemp(prefix="aifactory-terminals-", dir=parent)
    if sandbox_uid() is not None:
        os.chmod(root, 0o711)
    return root


def make_workspace(root: str, term_id: str, uid: int | None) -> str:
    """A fresh private directory for one terminal, owned by the uid its sandbox runs as."""
    path = tempfile.mkdtemp(prefix=f"{term_id}-", dir=root)
    if uid is not None:
        os.chown(path, uid, uid)
    return path


def remove_tree(path: str) -> None:
    """Delete a workspace even if its (dead) shell made directories unreadable; never follows links."""
    if not os.path.isdir(path) or os.path.islink(path):
        return
    os.chmod(path, 0o700)
    for dirpath, dirnames, _files in os.walk(path):
        for name in dirnames:
            sub = os.path.join(dirpath, name)
            if not os.path.islink(sub):
                os.chmod(sub, 0o700)
    shutil.rmtree(path, ignore_errors=True)


def find_spec(shell: str) -> SandboxSpec:
    """Locate bwrap and prlimit on PATH; SandboxUnavailable names the missing one."""
    tools = {}
    for tool, package in (("bwrap", "bubblewrap"), ("prlimit", "util-linux")):
        found = shutil.which(tool)
        if not found:
            raise SandboxUnavailable(f"{tool} not found on PATH (install the {package} package)")
        tools[tool] = found
    return SandboxSpec(bwrap=tools["bwrap"], prlimit=tools["prlimit"], shell=shell)


MASKED_PROC = "Can't mount proc"  # bwrap's error where the container runtime masks parts of /proc


def probe(spec: SandboxSpec, workspace_root: str) -> SandboxSpec:
    """Create one throwaway sandbox as a terminal would; the spec that works, else SandboxUnavailable.

    Where a fresh /proc is refused (a masked /proc), the sandbox is kept with an empty /proc instead: every
    other guarantee holds, only tools that read /proc (ps, top) see nothing. The caller says so in the log.
    """
    try:
        _run_probe(spec, workspace_root)
        return spec
    except SandboxUnavailable as exc:
        if MASKED_PROC not in str(exc):
            raise
    without_proc = replace(spec, fresh_proc=False)
    _run_probe(without_proc, workspace_root)
    return without_proc


def _run_probe(spec: SandboxSpec, workspace_root: str) -> None:
    workspace = make_workspace(workspace_root, "probe", sandbox_uid())
    try:
        cmd = sandbox_command(
            spec,
            term_id="probe",
            user_id="probe",
            replica_id="probe",
            workspace=workspace,
            command=(spec.shell, "-c", f"test -w {WORKSPACE}"),
        )
        try:
            done = subprocess.run(
                cmd.argv,
                env=cmd.env,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=PROBE_TIMEOUT,
                preexec_fn=lambda: drop_privileges(cmd.uid),
            )
        except (OSError, subprocess.SubprocessError) as exc:
            raise SandboxUnavailable(f"{spec.bwrap} could not run ({exc})") from None
        if done.returncode != 0:
            lines = (done.stderr or done.stdout).decode(errors="replace").strip().splitlines()
            why = lines[-1] if lines else f"exit status {done.returncode}"
            raise SandboxUnavailable(f"bwrap cannot create the terminal sandbox: {why}")
    finally:
        remove_tree(workspace)
