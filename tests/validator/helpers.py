"""Shared helpers for the validator tests: run the pipeline in-process or the CLI as a real process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

from validator import pipeline
from validator.chart import Chart
from validator.model import Finding

ROOT = Path(__file__).resolve().parents[2]
CLI = [str(Path(sys.executable).with_name("aifactory-validate"))]
EXTERNAL = {"redis": {"enabled": True, "externalSecretName": "aifactory-redis"}}
REQUESTS = {"resources": {"requests": {"cpu": "250m", "memory": "256Mi"}}}


def write_values(tmp_path: Path, values: object, name: str = "values.yaml") -> Path:
    path = tmp_path / name
    path.write_text(values if isinstance(values, str) else yaml.safe_dump(values, sort_keys=False))
    return path


def validate(
    values: object = None,
    tmp_path: Path | None = None,
    sets: list[str] | None = None,
    set_strings: list[str] | None = None,
) -> list[Finding]:
    """Findings of the real pipeline for one values document (dict or YAML text) and --set expressions."""
    files = []
    if values is not None:
        text = values if isinstance(values, str) else yaml.safe_dump(values, sort_keys=False)
        files.append(("values.yaml", text.encode()))
    sets_all = [(e, False) for e in sets or []] + [(e, True) for e in set_strings or []]
    return pipeline.run(Chart(None), files, sets_all).findings


def ids(findings: list[Finding], severity: str | None = None) -> set[str]:
    return {f.rule for f in findings if severity is None or f.severity == severity}


def run_cli(
    *args: str, env: dict[str, str] | None = None, stdin: bytes | None = None
) -> subprocess.CompletedProcess:
    full_env = dict(os.environ, **(env or {}))
    return subprocess.run(
        [*CLI, *args], capture_output=True, cwd=ROOT, env=full_env, input=stdin, timeout=120
    )
