"""Bad configuration: one line on stderr naming the variable and the fix, exit 2, never a traceback."""

from __future__ import annotations

import pytest

from harness.app_servers import new_secret, run_server_once

pytestmark = pytest.mark.timeout(60)

SECRET = new_secret()
PASSWORD = "hunter2-very-secret"


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({"PORT": "http"}, "PORT"),
        ({"PORT": "70000"}, "PORT"),
        ({"LOG_LEVEL": "LOUD"}, "LOG_LEVEL"),
        ({"REDIS_URL": "redis://127.0.0.1:6399/0"}, "AIFACTORY_AUTH_SECRET"),
        ({"REDIS_URL": f"http://:{PASSWORD}@redis:6379", "AIFACTORY_AUTH_SECRET": SECRET}, "REDIS_URL"),
        ({"REDIS_URL": f"redis://:{PASSWORD}@redis:notaport", "AIFACTORY_AUTH_SECRET": SECRET}, "REDIS_URL"),
        ({"AIFACTORY_AUTH_SECRET": "short"}, "AIFACTORY_AUTH_SECRET"),
        ({"REDIS_CHANNEL": "has space"}, "REDIS_CHANNEL"),
        ({"AIFACTORY_TERMINAL_SHELL": "sh"}, "AIFACTORY_TERMINAL_SHELL"),
        ({"AIFACTORY_TERMINAL_IDLE_SECONDS": "-1"}, "AIFACTORY_TERMINAL_IDLE_SECONDS"),
        ({"AIFACTORY_WS_OVERFLOW": "explode"}, "AIFACTORY_WS_OVERFLOW"),
        ({"AIFACTORY_HISTORY_SIZE": "-1"}, "AIFACTORY_HISTORY_SIZE"),
        ({"AIFACTORY_HISTORY_SIZE": "lots"}, "AIFACTORY_HISTORY_SIZE"),
        ({"AIFACTORY_HISTORY_TTL": "0"}, "AIFACTORY_HISTORY_TTL"),
        ({"AIFACTORY_SHUTDOWN_GRACE_SECONDS": "-5"}, "AIFACTORY_SHUTDOWN_GRACE_SECONDS"),
        ({"AIFACTORY_TERMINAL_SANDBOX": "maybe"}, "AIFACTORY_TERMINAL_SANDBOX"),
        ({"AIFACTORY_MAX_SOCKETS_PER_USER": "0"}, "AIFACTORY_MAX_SOCKETS_PER_USER"),
        ({"AIFACTORY_AUDIT_LOG": "/tmp"}, "AIFACTORY_AUDIT_LOG"),
        ({"AIFACTORY_AUDIT_LOG": "/nonexistent-dir/audit.jsonl"}, "AIFACTORY_AUDIT_LOG"),
        ({"AIFACTORY_HTTP_READ_TIMEOUT_SECONDS": "0"}, "AIFACTORY_HTTP_READ_TIMEOUT_SECONDS"),
        ({"AIFACTORY_KEEPALIVE_SECONDS": "forever"}, "AIFACTORY_KEEPALIVE_SECONDS"),
        ({"AIFACTORY_MAX_CONNECTIONS": "3"}, "AIFACTORY_MAX_CONNECTIONS"),
        ({"AIFACTORY_TERMINAL_INPUT_MAX_BYTES": "16777217"}, "AIFACTORY_TERMINAL_INPUT_MAX_BYTES"),
    ],
)
def test_bad_setting_exits_2_with_one_line_naming_it(env: dict[str, str], names: str) -> None:
    result = run_server_once(env)
    assert result.returncode == 2, result
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("aifactory-server: ") and names in lines[0]
    assert f"{names}: {names}" not in lines[0]
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert PASSWORD not in result.stderr


@pytest.mark.parametrize(
    "args",
    [
        ("token", "--user", "u", "--role", "root"),
        ("token", "--user", "", "--org", "o"),
        ("token",),  # --user is required
        ("token", "--user", "u", "--ttl", "soon"),
        ("servee",),
        ("--no-such-flag",),
    ],
)
def test_token_command_rejects_bad_arguments_in_one_line(args: tuple[str, ...]) -> None:
    result = run_server_once({"AIFACTORY_AUTH_SECRET": SECRET}, args=args)
    assert result.returncode == 2 and len(result.stderr.splitlines()) == 1 and result.stdout == ""


def test_token_command_signs_with_the_configured_secret() -> None:
    from aifactory.auth import verify_token

    result = run_server_once({"AIFACTORY_AUTH_SECRET": SECRET}, args=("token", "--user", "u1", "--org", "o1"))
    assert result.returncode == 0, result.stderr
    principal = verify_token(SECRET, result.stdout.strip())
    assert (principal.user_id, principal.org_id, principal.role) == ("u1", "o1", "user")


def test_help_and_shell_completion_exit_zero() -> None:
    result = run_server_once({}, args=("--help",))
    assert result.returncode == 0 and "serve" in result.stdout and "token" in result.stdout
    assert "_AIFACTORY_SERVER_COMPLETE=bash_source" in result.stdout
    script = run_server_once({"_AIFACTORY_SERVER_COMPLETE": "bash_source"}, args=())
    assert script.returncode == 0 and "complete -o nosort -F" in script.stdout, script.stderr
