"""`helm lint --strict` per example, NOTES.txt warnings (Helm 3 and 4), the generated values reference."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import jsonschema
import pytest
import yaml

from aifactory.constants import DISABLED_LINE
from tests.chart.cases import EXAMPLE_FILES
from tests.chart.rendering import helm_major
from tests.conftest import CHART, HELM_BINARIES, ROOT, run_helm

QUOTED_LOG_LINE = DISABLED_LINE


@pytest.mark.parametrize("example", EXAMPLE_FILES, ids=[p.stem for p in EXAMPLE_FILES])
def test_example_passes_strict_lint(helm: str, example: Path) -> None:
    proc = run_helm(helm, "lint", "--strict", str(CHART), "-f", str(example))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "[WARNING]" not in proc.stdout and "[ERROR]" not in proc.stdout, proc.stdout


def test_schema_is_a_valid_draft_07_schema_and_accepts_the_defaults() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text(encoding="utf-8"))
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    jsonschema.Draft7Validator.check_schema(schema)
    defaults = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))
    errors = [e.message for e in jsonschema.Draft7Validator(schema).iter_errors(defaults)]
    assert not errors, errors


@pytest.fixture(scope="session")
def notes_probe_chart(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the chart whose extra template renders NOTES.txt's exact text as a YAML string.

    Helm 3.17 needs a cluster even for `install --dry-run=client`, and `helm template` never prints NOTES;
    wrapping the unchanged NOTES.txt in a named template lets Helm 3's own engine render it offline.
    """
    chart = tmp_path_factory.mktemp("notes") / "aifactory"
    shutil.copytree(CHART, chart)
    body = (CHART / "templates" / "NOTES.txt").read_text(encoding="utf-8")
    (chart / "templates" / "notes-probe.yaml").write_text(
        '{{- define "aifactory.notesProbe" }}' + body + "{{ end }}\n"
        'notes: {{ include "aifactory.notesProbe" . | toJson }}\n',
        encoding="utf-8",
    )
    return chart


def notes_via_install(helm4: str, *args: str) -> str:
    """NOTES.txt as `helm install` prints it (Helm 4 renders it offline with --dry-run=client)."""
    proc = run_helm(helm4, "install", "aifactory", str(CHART), "--dry-run=client", "-n", "aifactory", *args)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split("NOTES:", 1)[1]


def notes_via_probe(helm_bin: str, probe: Path, *args: str) -> str:
    proc = run_helm(helm_bin, "template", "aifactory", str(probe), "-n", "aifactory",
                    "--show-only", "templates/notes-probe.yaml", *args)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return yaml.safe_load(proc.stdout)["notes"]


@pytest.fixture
def notes(helm: str, notes_probe_chart: Path) -> Callable[..., str]:
    """NOTES text on both Helm versions: Helm 4 through `helm install`, Helm 3 through the probe chart."""
    if helm_major(helm) >= 4:
        return lambda *args: notes_via_install(helm, *args)
    return lambda *args: notes_via_probe(helm, notes_probe_chart, *args)


def test_notes_probe_renders_what_helm_install_prints(helm4: str, notes_probe_chart: Path) -> None:
    args = ("--set", "replicaCount=3", "--set", "ingress.enabled=true")
    assert notes_via_probe(helm4, notes_probe_chart, *args).strip() == notes_via_install(helm4, *args).strip()


def test_notes_warn_about_replicas_without_redis(notes: Callable[..., str]) -> None:
    text = notes("--set", "replicaCount=3")
    assert "WARNING: up to 3 replicas run with redis.enabled=false" in text
    assert QUOTED_LOG_LINE in text


def test_notes_warn_about_hpa_without_redis(notes: Callable[..., str]) -> None:
    text = notes("--set", "autoscaling.enabled=true", "--set", "resources.requests.cpu=100m")
    assert "WARNING: up to 10 replicas run with redis.enabled=false" in text
    assert QUOTED_LOG_LINE in text


def test_notes_warn_about_inline_url(notes: Callable[..., str]) -> None:
    text = notes("--set", "redis.enabled=true", "--set", "redis.url=redis://:pw-xyz@r:6379/0")
    assert "WARNING: redis.url is set inline" in text
    assert "pw-xyz" not in text


def test_notes_warn_about_ingress_without_terminal_affinity(notes: Callable[..., str]) -> None:
    text = notes("--set", "replicaCount=2", "--set", "ingress.enabled=true")
    assert "without terminal affinity" in text


def test_notes_warn_about_hpa_without_requests(notes: Callable[..., str]) -> None:
    """The defaults carry requests; an operator who clears them is still warned."""
    text = notes("--set", "autoscaling.enabled=true", "--set", "redis.enabled=true",
                 "--set", "redis.externalSecretName=aifactory-redis", "--set", "resources=null")  # fmt: skip
    assert "resources.requests.cpu is not set" in text


def test_hpa_with_chart_defaults_is_quiet(notes: Callable[..., str]) -> None:
    """README's `autoscaling.enabled: true` path works with the default resources.requests."""
    text = notes("--set", "autoscaling.enabled=true", "--set", "redis.enabled=true",
                 "--set", "redis.externalSecretName=aifactory-redis")  # fmt: skip
    assert "WARNING" not in text, text


def test_notes_say_single_replica_mode_only_for_one_replica(notes: Callable[..., str]) -> None:
    assert "Redis pub/sub: disabled (single-replica mode)." in notes()
    text = notes("--set", "replicaCount=3")
    assert "single-replica" not in text
    assert "Redis pub/sub: disabled (in-process broadcasts only)." in text


def test_notes_warn_about_ingress_values_while_the_ingress_is_off(notes: Callable[..., str]) -> None:
    """The spec's own values block sets ingress.annotations without ingress.enabled: it must not be silent."""
    text = notes("-f", str(ROOT / "examples" / "production.yaml"), "--set", "ingress.enabled=false")
    assert "WARNING: ingress.className, ingress.tls are set but ingress.enabled=false" in text
    text = notes("--set-string", "ingress.annotations.nginx\\.ingress\\.kubernetes\\.io/affinity=cookie")
    assert "WARNING: ingress.annotations is set but ingress.enabled=false" in text


def test_notes_warn_about_redis_source_while_redis_is_off(notes: Callable[..., str]) -> None:
    text = notes("--set", "redis.externalSecretName=aifactory-redis")
    assert "WARNING: redis.externalSecretName is set but redis.enabled=false" in text
    text = notes("--set", "redis.url=redis://:pw-xyz@r:6379/0")
    assert "WARNING: redis.url is set but redis.enabled=false" in text
    assert "pw-xyz" not in text


def test_notes_list_the_tiers_and_routes(notes: Callable[..., str]) -> None:
    text = notes("-f", str(ROOT / "examples" / "tiers.yaml"))
    assert "agents: HPA 2..10 replica(s), Deployment aifactory-agents" in text
    assert "ui: 3 replica(s), Deployment aifactory-ui" in text
    assert "/api/tasks -> agents" in text and "/ -> ui" in text


def test_notes_warn_about_nginx_affinity_without_ingress(notes: Callable[..., str]) -> None:
    text = notes("--set", "ingress.terminalAffinity.enabled=true")
    assert "has no effect while ingress.enabled=false" in text


@pytest.mark.parametrize(
    "example",
    ["laptop", "production", "hpa", "shared-redis-second-deployment", "tiers", "operator-conventions"],
)
def test_notes_are_quiet_for_good_setups(notes: Callable[..., str], example: str) -> None:
    text = notes("-f", str(ROOT / "examples" / f"{example}.yaml"))
    assert "WARNING" not in text, text


def test_values_reference_is_up_to_date() -> None:
    spec = importlib.util.spec_from_file_location("gen_values_docs", ROOT / "scripts" / "gen_values_docs.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    committed = (ROOT / "docs" / "values.md").read_text(encoding="utf-8")
    assert module.render() == committed, "docs/values.md is stale: run `make docs` and commit it"
    readme = (CHART / "README.md").read_text(encoding="utf-8")
    assert module.render_readme() == readme, "chart/README.md is stale: run `make docs` and commit it"
    assert "| `tiers` |" in readme and "| `networkPolicy.enabled` |" in readme


def test_values_reference_covers_every_schema_leaf() -> None:
    text = (ROOT / "docs" / "values.md").read_text(encoding="utf-8")
    for key in (
        "redis.externalSecretName",
        "ingress.terminalAffinity.controller",
        "autoscaling.behavior",
        "extraEnv",
    ):
        assert f"| `{key}` |" in text


def test_docs_check_mode_exits_nonzero_when_stale(tmp_path: Path) -> None:
    """The `--check` flag of the generator is a real gate (exit 1) when the output differs."""
    script = (ROOT / "scripts" / "gen_values_docs.py").read_text(encoding="utf-8")
    copy = tmp_path / "scripts" / "gen_values_docs.py"
    copy.parent.mkdir()
    copy.write_text(script, encoding="utf-8")
    (tmp_path / "scripts" / "templates").symlink_to(ROOT / "scripts" / "templates")
    (tmp_path / "chart").symlink_to(CHART)
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "values.md").write_text("stale\n", encoding="utf-8")
    proc = subprocess.run([sys.executable, str(copy), "--check"], capture_output=True, text=True)
    assert proc.returncode == 1
    assert "stale" in proc.stderr


def test_the_matrix_really_covers_helm_3_and_helm_4() -> None:
    """Schema engines differ between majors (gojsonschema vs santhosh-tekuri): both must be exercised."""
    assert sorted(helm_major(HELM_BINARIES[name]) for name in HELM_BINARIES) == [3, 4]
