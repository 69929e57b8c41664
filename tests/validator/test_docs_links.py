"""What users are pointed at exists: SARIF helpUri anchors are real headings of docs/validator.md whose
section documents the rule, every finding id has a description, install lines name our own distribution,
the pre-commit `rev:` is a real tag or a commit placeholder, and shell completion works in a real bash."""

from __future__ import annotations

import json
import re
import subprocess
import tomllib
from pathlib import Path

from tests.validator.helpers import CLI, ROOT, run_cli, write_values

DOCS = ROOT / "docs/validator.md"
DIST = "aifactory-deploy"


def github_slug(heading: str) -> str:
    """GitHub's heading anchor: lower-case, punctuation dropped (keeps - and _), spaces to -."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def sections(markdown: str) -> dict[str, str]:
    """anchor -> the text under that heading (up to the next heading of the same or a higher level)."""
    lines = markdown.splitlines()
    heads = [
        (i, len(m.group(1)), m.group(2))
        for i, line in enumerate(lines)
        if (m := re.match(r"(#+) (.*)", line))
    ]
    out = {}
    for n, (i, level, title) in enumerate(heads):
        end = next((j for j, lv, _ in heads[n + 1 :] if lv <= level), len(lines))
        out[github_slug(title)] = "\n".join(lines[i:end])
    return out


def emitted_ids() -> set[str]:
    from validator.rules import RULES

    source = " ".join(p.read_text() for p in (ROOT / "validator").rglob("*.py"))
    found = set(re.findall(r'"((?:yaml|values|schema|render|cluster)-[a-z0-9-]+)"', source))
    return found | {r.id for r in RULES}


def test_every_finding_id_has_a_description_and_a_help_anchor_that_documents_it() -> None:
    from validator.report import help_anchor, rule_docs

    docs = rule_docs()
    by_anchor = sections(DOCS.read_text())
    for rule_id in sorted(emitted_ids()):
        assert docs.get(rule_id, rule_id) != rule_id, f"{rule_id} has no description"
        anchor = help_anchor(rule_id)
        assert anchor in by_anchor, f"{rule_id}: #{anchor} is not a heading of docs/validator.md"
        assert f"`{rule_id}`" in by_anchor[anchor], f"{rule_id} is not documented under #{anchor}"


def test_sarif_rules_carry_descriptions_and_anchors(tmp_path: Path) -> None:
    path = write_values(tmp_path, "replicaCount: three\nbogus: 1\n")
    doc = json.loads(run_cli(str(path), "--format", "sarif").stdout)
    rules = {r["id"]: r for r in doc["runs"][0]["tool"]["driver"]["rules"]}
    assert set(rules) == {"schema-type", "schema-unknown-key"}
    for rule in rules.values():
        assert rule["shortDescription"]["text"] != rule["id"]
        assert rule["helpUri"].endswith("docs/validator.md#schema")


def test_install_lines_name_our_distribution_never_the_unrelated_one() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["name"] == DIST
    texts = [p.read_text() for p in [ROOT / "README.md", *(ROOT / "docs").glob("*.md")]]
    texts += [p.read_text() for p in (ROOT / "validator").rglob("*.py")]
    for text in texts:
        assert not re.search(r"pip install ['\"]?aifactory(\[|['\" ]|$| @)", text, re.M)
    assert "pip install ." in DOCS.read_text() and f"{DIST} @ git+" in DOCS.read_text()


def test_pre_commit_rev_in_the_docs_is_a_tag_that_exists_or_a_commit_placeholder() -> None:
    revs = re.findall(r"^\s*rev: (\S.*)$", DOCS.read_text(), re.M)
    assert revs
    tags = subprocess.run(["git", "tag", "--list"], capture_output=True, text=True, cwd=ROOT).stdout.split()
    for rev in revs:
        assert rev in tags or rev == "<commit sha>", rev


def test_bash_completion_completes_options_in_a_real_shell() -> None:
    script = subprocess.run(
        CLI, capture_output=True, text=True, env={"_AIFACTORY_VALIDATE_COMPLETE": "bash_source", "PATH": ""}
    )
    assert script.returncode == 0 and "complete " in script.stdout, script.stderr
    probe = (
        f"{script.stdout}\nCOMP_WORDS=(aifactory-validate --form); COMP_CWORD=1; "
        '_aifactory_validate_completion aifactory-validate; printf "%s\\n" "${COMPREPLY[@]}"'
    )
    bin_dir = str(Path(CLI[0]).parent)
    out = subprocess.run(
        ["bash", "-c", probe], capture_output=True, text=True, env={"PATH": f"{bin_dir}:/usr/bin:/bin"}
    )
    assert out.stdout.split() == ["--format"], out.stdout + out.stderr
    probe = probe.replace("(aifactory-validate --form)", "(aifactory-validate --format s)").replace(
        "COMP_CWORD=1", "COMP_CWORD=2"
    )
    out = subprocess.run(
        ["bash", "-c", probe], capture_output=True, text=True, env={"PATH": f"{bin_dir}:/usr/bin:/bin"}
    )
    assert out.stdout.split() == ["sarif"], out.stdout + out.stderr


def test_the_built_wheel_is_our_distribution_and_validates_with_its_own_chart(tmp_path: Path) -> None:
    """docs/validator.md: build a wheel from a checkout and install it; it carries the chart inside."""
    import sys

    def pip(*args: str) -> None:
        proc = subprocess.run(
            [sys.executable, "-m", "pip", *args, "-q"], capture_output=True, text=True, timeout=300
        )
        assert proc.returncode == 0, proc.stderr

    wheels, site = tmp_path / "dist", tmp_path / "site"
    pip("wheel", "--no-deps", "-w", str(wheels), str(ROOT))
    (wheel,) = wheels.glob("*.whl")
    assert wheel.name.startswith("aifactory_deploy-")
    pip("install", "--no-deps", "--target", str(site), str(wheel))
    (tmp_path / "values.yaml").write_text("redis:\n  enabled: true\n")
    env = {"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    probe = "import validator.chart as c, sys; print(c.Chart(None).directory); sys.exit(0)"
    where = subprocess.run([sys.executable, "-P", "-c", probe], capture_output=True, text=True, env=env)
    assert where.stdout.strip() == str(site / "validator" / "_chart"), where.stderr
    proc = subprocess.run(
        [sys.executable, "-P", "-m", "validator", "values.yaml"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=60,
    )
    assert proc.returncode == 1 and "redis-source-missing" in proc.stdout, proc.stdout + proc.stderr
