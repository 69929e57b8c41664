"""`--render`: run the real `helm template` with the same inputs, then check every rendered object
against the Kubernetes OpenAPI schema (kubernetes-validate, strict) of `--kube-version`.

Only this path imports kubernetes_validate (and through it jsonschema). helm's own failure message is
shown cleanly (one finding, "Error: " prefix and blank lines dropped).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field

from validator.model import ERROR, WARNING, Finding, Loc

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SUMMARIES = {
    "render-helm-failed": "helm template failed on values the validator accepted",
    "render-kube-schema": "a rendered object violates the Kubernetes OpenAPI schema (strict)",
    "render-kube-unknown-kind": "no Kubernetes schema for a rendered apiVersion/kind in --kube-version",
    "render-invalid-yaml": "helm rendered a document that is not YAML",
}


@dataclass(frozen=True)
class RenderOptions:
    """What `--render` needs from the command line: the release, the same inputs helm gets, the tools."""

    release: str = "aifactory"
    files: list[str] = field(default_factory=list)
    sets: list[str] = field(default_factory=list)
    set_strings: list[str] = field(default_factory=list)
    helm: str | None = None
    kube_version: str | None = None


class RenderUsageError(Exception):
    """No helm binary, or kubernetes-validate missing: a usage error."""


def find_helm(explicit: str | None) -> str:
    """--helm PATH, else $AIFACTORY_HELM4, else the repo's .tools/helm4/helm, else `helm` on PATH."""
    candidates = [explicit, os.environ.get("AIFACTORY_HELM4"), os.path.join(_REPO, ".tools/helm4/helm")]
    for path in candidates:
        if path and os.path.isfile(path) and os.access(path, os.X_OK):
            return path
        if path and path is explicit:
            raise RenderUsageError(f"--helm {path} is not an executable file")
    found = shutil.which("helm")
    if found:
        return found
    raise RenderUsageError("--render needs helm: pass --helm PATH, set $AIFACTORY_HELM4, or put helm on PATH")


def helm_command(
    helm: str,
    release: str,
    chart_dir: str,
    files: list[str],
    sets: list[str],
    set_strings: list[str],
    kube_version: str,
) -> list[str]:
    cmd = [helm, "template", release, chart_dir, "--kube-version", kube_version]
    for name in files:
        cmd += ["-f", name]
    for expr in sets:
        cmd += ["--set", expr]
    for expr in set_strings:
        cmd += ["--set-string", expr]
    return cmd


def clean_helm_error(stderr: str) -> str:
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    lines = [line[len("Error: ") :] if line.startswith("Error: ") else line for line in lines]
    return " | ".join(lines) or "helm failed without a message"


def split_documents(text: str) -> list[tuple[str, str]]:
    """Rendered stream -> [(template source, document text)] using helm's `# Source:` comments."""
    docs: list[tuple[str, str]] = []
    current: list[str] = []
    source = "rendered manifest"
    for line in [*text.splitlines(), "---"]:
        if line.startswith("---"):
            body = "\n".join(current)
            if body.strip():
                docs.append((source, body))
            current, source = [], "rendered manifest"
            continue
        if line.startswith("# Source: "):
            source = line[len("# Source: ") :].strip()
        current.append(line)
    return docs


def check_objects(rendered: str, kube_version: str) -> list[Finding]:
    """Validate every rendered object; one finding per invalid object (the first violation)."""
    import kubernetes_validate
    import yaml

    findings: list[Finding] = []
    for source, body in split_documents(rendered):
        try:
            obj = yaml.load(body, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        except yaml.YAMLError as exc:
            findings.append(
                Finding(
                    "render-invalid-yaml",
                    ERROR,
                    f"helm rendered invalid YAML: {exc}".replace("\n", " "),
                    "fix the template",
                    "",
                    Loc(source),
                )
            )
            continue
        if not isinstance(obj, dict):
            continue
        name = f"{obj.get('kind')}/{(obj.get('metadata') or {}).get('name')}"
        try:
            kubernetes_validate.validate(obj, kube_version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            where = ".".join(str(p) for p in exc.absolute_path) or "(object)"
            detail = exc.message if obj.get("kind") != "Secret" else f"fails {exc.validator!r}"
            findings.append(
                Finding(
                    "render-kube-schema",
                    ERROR,
                    f"{name}: {where}: {detail} (Kubernetes {kube_version} OpenAPI schema, strict)",
                    "fix the values that feed this field (or the template)",
                    "",
                    Loc(source),
                )
            )
        except kubernetes_validate.SchemaNotFoundError as exc:
            findings.append(
                Finding(
                    "render-kube-unknown-kind",
                    WARNING,
                    f"{name}: {exc.message}",
                    "check apiVersion/kind against --kube-version",
                    "",
                    Loc(source),
                )
            )
    return findings


def default_kube_version() -> str:
    import kubernetes_validate

    version: str = kubernetes_validate.latest_version()
    return version


def render_and_check(options: RenderOptions, chart_dir: str) -> list[Finding]:
    """helm template with the same inputs, then every object against the Kubernetes schema."""
    try:
        import kubernetes_validate  # noqa: F401 - fail early with a usage message
    except ImportError:
        raise RenderUsageError(
            "--render needs kubernetes-validate: pip install 'aifactory-deploy[render]'"
        ) from None
    helm = find_helm(options.helm)
    kube_version = options.kube_version or default_kube_version()
    cmd = helm_command(
        helm, options.release, chart_dir, options.files, options.sets, options.set_strings, kube_version
    )
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RenderUsageError(f"cannot run {helm}: {exc}") from None
    if proc.returncode != 0:
        return [
            Finding(
                "render-helm-failed",
                ERROR,
                f"helm template failed: {clean_helm_error(proc.stderr)}",
                "fix what helm reports (the values above passed the validator's own checks)",
                "",
                Loc(f"helm template ({os.path.basename(helm)})"),
            )
        ]
    return check_objects(proc.stdout, kube_version)
