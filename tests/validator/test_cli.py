"""The CLI as users and CI run it: exit codes, output formats, --strict, --help, and no secret leaks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.validator.helpers import ROOT, run_cli, write_values

PROD = str(ROOT / "examples/production.yaml")


def test_valid_file_exits_zero_with_a_one_line_summary() -> None:
    proc = run_cli(PROD)
    assert proc.returncode == 0, proc.stdout
    assert proc.stdout.decode().strip().startswith("OK: ")


def test_warnings_pass_but_fail_under_strict(tmp_path: Path) -> None:
    path = write_values(tmp_path, {"replicaCount": 3})
    normal = run_cli(str(path))
    assert normal.returncode == 0
    assert b"warning [multi-replica-without-redis]" in normal.stdout
    strict = run_cli(str(path), "--strict")
    assert strict.returncode == 1
    assert b"error [multi-replica-without-redis]" in strict.stdout


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--no-such-option"], b"unrecognized arguments"),
        (["does-not-exist.yaml"], b"does-not-exist.yaml does not exist"),
        (["--set", "redis.enabled"], b"bad --set"),
        (["--set", "a[x]=1"], b"bad --set"),
        (["--chart", "/nonexistent"], b"not a Helm chart"),
        (["--format", "xml", PROD], b"'xml' is not one of"),
        ([str(ROOT)], b"is a directory"),
    ],
)
def test_usage_errors_exit_two_with_one_clear_line(args: list[str], needle: bytes) -> None:
    proc = run_cli(*args)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert needle in proc.stderr
    assert b"Traceback" not in proc.stderr


def test_help_reads_well() -> None:
    proc = run_cli("--help")
    assert proc.returncode == 0
    out = proc.stdout.decode()
    for word in ("--set", "--strict", "--format", "--render", "--cluster", "exit codes", "docs/validator.md"):
        assert word in out


def test_list_rules_names_every_rule_with_its_severity() -> None:
    from validator.rules import RULES

    out = run_cli("--list-rules").stdout.decode()
    for r in RULES:
        assert r.id in out


def test_json_output_has_the_documented_shape(tmp_path: Path) -> None:
    path = write_values(tmp_path, "replicaCount: 3\nredis:\n  enabled: true\n")
    proc = run_cli(str(path), "--format", "json")
    assert proc.returncode == 1
    doc = json.loads(proc.stdout)
    assert set(doc) == {"version", "valid", "strict", "chart", "files", "summary", "findings"}
    assert doc["valid"] is False and doc["summary"]["errors"] >= 1
    finding = next(f for f in doc["findings"] if f["rule"] == "redis-source-missing")
    assert set(finding) == {"rule", "severity", "path", "message", "fix", "location"}
    assert finding["location"] == {"source": str(path), "line": 3, "column": 12}
    assert finding["path"] == "redis.enabled"


def test_github_format_emits_workflow_annotations(tmp_path: Path) -> None:
    path = write_values(tmp_path, "redis:\n  enabled: true\n")
    lines = run_cli(str(path), "--format", "github").stdout.decode().splitlines()
    line = next(x for x in lines if "redis-source-missing" in x)
    assert line.startswith(
        f"::error file={path},line=2,col=12,title=aifactory-validate [redis-source-missing]::"
    )


def test_sarif_output_is_sarif_2_1_0(tmp_path: Path) -> None:
    path = write_values(tmp_path, {"replicaCount": 3})
    doc = json.loads(run_cli(str(path), "--format", "sarif").stdout)
    assert doc["version"] == "2.1.0"
    run = doc["runs"][0]
    assert run["tool"]["driver"]["name"] == "aifactory-validate"
    result = run["results"][0]
    assert result["ruleId"] == "multi-replica-without-redis" and result["level"] == "warning"
    region = result["locations"][0]["physicalLocation"]["region"]
    assert region == {"startLine": 1, "startColumn": 15}
    assert {r["id"] for r in run["tool"]["driver"]["rules"]} == {"multi-replica-without-redis"}


def test_files_then_sets_merge_in_helm_order(tmp_path: Path) -> None:
    base = write_values(tmp_path, {"redis": {"enabled": True}}, "base.yaml")
    prod = write_values(tmp_path, {"redis": {"externalSecretName": "s"}}, "prod.yaml")
    assert run_cli(str(base)).returncode == 1
    assert run_cli(str(base), "-f", str(prod)).returncode == 0
    assert run_cli(str(base), str(prod), "--set", "redis.externalSecretName=null").returncode == 1


def test_password_never_appears_in_any_output(tmp_path: Path) -> None:
    secret = "Sup3rS3cretPw"
    path = write_values(
        tmp_path,
        {"replicaCount": 2, "redis": {"enabled": True, "url": f"redis://:{secret}@localhost:99999/0"}},
    )
    for fmt in ("text", "json", "github", "sarif"):
        proc = run_cli(str(path), "--format", fmt, "--set", f"redis.url=redis://:{secret}@h:6379/x")
        assert proc.returncode == 1
        assert secret.encode() not in proc.stdout + proc.stderr, fmt


def test_works_outside_the_repository(tmp_path: Path) -> None:
    """The console script finds its chart without the repo as working directory."""
    path = write_values(tmp_path, {"replicaCount": 1})
    import subprocess

    from tests.validator.helpers import CLI

    proc = subprocess.run([*CLI, str(path)], capture_output=True, cwd=tmp_path, timeout=60)
    assert proc.returncode == 0, proc.stdout


def test_module_entry_point_matches_console_script() -> None:
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "validator", PROD], capture_output=True, cwd=ROOT, timeout=60
    )
    assert proc.returncode == 0 and proc.stdout.startswith(b"OK: ")


def test_each_validates_files_independently(tmp_path: Path) -> None:
    url = write_values(tmp_path, {"redis": {"enabled": True, "url": "redis://r:6379/0"}}, "a.yaml")
    secret = write_values(tmp_path, {"redis": {"enabled": True, "externalSecretName": "s"}}, "b.yaml")
    assert b"redis-source-ambiguous" in run_cli(str(url), str(secret)).stdout  # merged: one release
    proc = run_cli("--each", str(url), str(secret))
    assert proc.returncode == 0, proc.stdout


def test_pre_commit_hooks_run_the_console_script_per_file() -> None:
    import re
    import shlex

    import yaml

    hooks = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())
    assert {h["id"] for h in hooks} == {"aifactory-validate", "aifactory-validate-strict"}
    for hook in hooks:
        entry = shlex.split(hook["entry"])
        assert entry[0] == "aifactory-validate" and "--each" in entry and hook["language"] == "python"
        for path in (
            "deploy/aifactory-values.yaml",
            "values-aifactory-prod.yml",
            "env/aifactory.values.yaml",
        ):
            assert re.search(hook["files"], path) and not re.search(hook["exclude"], path), path
        for path in (
            "charts/redis/values.yaml",  # another chart's values
            "values.yaml",
            "deploy/values-prod.yaml",  # generic: users opt in with their own `files:` pattern
            ".github/workflows/aifactory-ci.yaml",  # "aifactory" alone is no values file
            "k8s/aifactory-deployment.yaml",
        ):
            assert not re.search(hook["files"], path), path
        assert re.search(hook["exclude"], "chart/values.yaml")
        proc = run_cli(*entry[1:], "examples/production.yaml", "examples/hpa.yaml")
        assert proc.returncode == 0, proc.stdout


def test_docs_describe_every_finding_id() -> None:
    import re

    from validator.rules import RULES

    docs = (ROOT / "docs/validator.md").read_text()
    source = " ".join(p.read_text() for p in (ROOT / "validator").rglob("*.py"))
    emitted = set(re.findall(r'"((?:yaml|values|schema|render|cluster)-[a-z0-9-]+)"', source))
    for rule_id in emitted | {r.id for r in RULES}:
        assert f"`{rule_id}`" in docs, rule_id


def test_installed_layout_uses_the_chart_shipped_inside_the_package(tmp_path: Path) -> None:
    """pyproject force-includes chart/ as validator/_chart in the wheel; that copy wins over any repo."""
    import shutil
    import subprocess
    import sys

    site = tmp_path / "site"
    shutil.copytree(ROOT / "validator", site / "validator", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "aifactory", site / "aifactory", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "chart", site / "validator" / "_chart")
    work = tmp_path / "elsewhere"
    work.mkdir()
    (work / "values.yaml").write_text("redis:\n  enabled: true\n")
    probe = "from validator.chart import Chart; print(Chart(None).directory)"
    env = {"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=work, env=env)
    assert out.stdout.strip() == str(site / "validator" / "_chart"), out.stderr
    proc = subprocess.run(
        [sys.executable, "-m", "validator", "values.yaml"], capture_output=True, text=True, cwd=work, env=env
    )
    assert proc.returncode == 1 and "redis-source-missing" in proc.stdout, proc.stdout + proc.stderr
