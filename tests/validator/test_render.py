"""--render runs the real helm (3 and 4) with the same inputs and checks every rendered object against the
Kubernetes OpenAPI schema; helm's own failure message comes through cleanly."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.validator.helpers import ROOT, run_cli


@pytest.fixture
def chart_copy(tmp_path: Path) -> Path:
    chart = tmp_path / "chart"
    shutil.copytree(ROOT / "chart", chart)
    return chart


def test_production_example_renders_and_passes_kubernetes_schemas(helm: str) -> None:
    proc = run_cli("examples/production.yaml", "--render", "--helm", helm, "--format", "json")
    assert proc.returncode == 0, proc.stdout.decode() + proc.stderr.decode()
    assert json.loads(proc.stdout)["findings"] == []


def test_render_honours_kube_version_and_set(helm: str) -> None:
    proc = run_cli(
        "examples/hpa.yaml",
        "--render",
        "--helm",
        helm,
        "--kube-version",
        "1.30",
        "--set",
        "autoscaling.maxReplicas=4",
    )
    assert proc.returncode == 0, proc.stdout.decode() + proc.stderr.decode()


def test_helm_failure_is_shown_cleanly(helm: str, chart_copy: Path) -> None:
    (chart_copy / "templates" / "broken.yaml").write_text("x: {{ .Values.nope.deeper }}\n")
    proc = run_cli("--chart", str(chart_copy), "--render", "--helm", helm)
    out = proc.stdout.decode()
    assert proc.returncode == 1
    assert "error [render-helm-failed] helm template failed:" in out
    assert "nil pointer" in out and "Error: " not in out
    assert "Traceback" not in proc.stderr.decode()


def test_objects_violating_the_kubernetes_schema_are_reported(helm: str, chart_copy: Path) -> None:
    (chart_copy / "templates" / "bad.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: bad\ndata:\n  count: 3\n"
    )
    proc = run_cli("--chart", str(chart_copy), "--render", "--helm", helm, "--format", "json")
    assert proc.returncode == 1
    finding = json.loads(proc.stdout)["findings"][0]
    assert finding["rule"] == "render-kube-schema"
    assert "ConfigMap/bad" in finding["message"] and "data.count" in finding["message"]
    assert finding["location"]["source"] == "aifactory/templates/bad.yaml"


def test_render_is_skipped_when_the_values_are_already_invalid(helm: str) -> None:
    proc = run_cli("--set", "redis.enabled=true", "--render", "--helm", helm)
    assert proc.returncode == 1
    assert b"redis-source-missing" in proc.stdout and b"render-helm-failed" not in proc.stdout


def test_missing_helm_is_a_usage_error() -> None:
    proc = run_cli("examples/production.yaml", "--render", "--helm", "/nonexistent/helm")
    assert proc.returncode == 2
    assert b"--helm /nonexistent/helm is not an executable file" in proc.stderr
