"""Bad input never produces a traceback: every unusable file is one finding with a position, through the
real CLI process, and the loader's bounds hold against alias bombs, deep nesting and huge files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.validator.helpers import run_cli, validate
from validator.loader import MAX_DEPTH, LoadError, load

BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 9)}]\n" for i in range(9)
)

BAD_FILES: dict[str, tuple[bytes, str, tuple[int, int] | None]] = {
    # name -> (content, expected rule, expected (line, column) or None)
    "invalid-yaml": (b"redis:\n  enabled: true\n url: x\n", "yaml-invalid", (3, 2)),
    "unclosed-flow": (b"a: [1, 2\n", "yaml-invalid", (2, 1)),
    "tab-indent": (b"redis:\n\tenabled: true\n", "yaml-invalid", (2, 1)),
    "top-level-list": (b"- replicaCount: 3\n", "yaml-not-a-mapping", (1, 1)),
    "top-level-scalar": (b"just a string\n", "yaml-not-a-mapping", (1, 1)),
    "binary": (bytes(range(256)) * 4, "yaml-not-text", None),
    "nul-bytes": (b"a: 1\n\x00\x00", "yaml-not-text", (2, 1)),
    "latin1": ("replicaCount: 3 # caf\u00e9\n".encode("latin-1"), "yaml-not-text", (1, 22)),
    "deep-flow": (b"a: " + b"[" * 5000 + b"]" * 5000 + b"\n", "yaml-too-deep", None),
    "deep-block": (
        "".join(f"{'  ' * i}k{i}:\n" for i in range(MAX_DEPTH + 5)).encode(),
        "yaml-too-deep",
        None,
    ),
    "alias-bomb": (BOMB.encode(), "yaml-too-large", None),
    "unknown-tag": (b"replicaCount: !!python/object:os.system 3\n", "yaml-unknown-tag", (1, 15)),
    "complex-key": (b"? [a, b]\n: 1\n", "yaml-complex-key", (1, 3)),
    "undefined-alias": (b"a: *nope\n", "yaml-invalid", (1, 4)),
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_bad_file_is_one_clear_finding_with_position(name: str, tmp_path: Path) -> None:
    content, rule, position = BAD_FILES[name]
    path = tmp_path / f"{name}.yaml"
    path.write_bytes(content)
    proc = run_cli(str(path), "--format", "json")
    assert proc.returncode == 1, proc.stderr
    assert b"Traceback" not in proc.stderr + proc.stdout
    doc = json.loads(proc.stdout)
    found = [f for f in doc["findings"] if f["rule"] == rule]
    assert found, doc
    if position:
        loc = found[0]["location"]
        assert (loc["line"], loc["column"]) == position


def test_fifty_megabyte_file_is_refused_without_reading_it_all(tmp_path: Path) -> None:
    path = tmp_path / "huge.yaml"
    with path.open("wb") as fh:
        fh.write(b"a: " + b"x" * (50 * 1024 * 1024) + b"\n")
    proc = run_cli(str(path))
    assert proc.returncode == 1
    assert b"values-file-too-large" in proc.stdout
    assert b"Traceback" not in proc.stderr


def test_empty_and_comment_only_files_are_a_warning_not_a_crash(tmp_path: Path) -> None:
    for content in (b"", b"# only a comment\n", b"---\n"):
        path = tmp_path / "empty.yaml"
        path.write_bytes(content)
        proc = run_cli(str(path))
        assert proc.returncode == 0, (content, proc.stdout)
        assert b"values-file-empty" in proc.stdout
        assert run_cli(str(path), "--strict").returncode == 1


def test_alias_bomb_is_bounded_in_the_loader() -> None:
    with pytest.raises(LoadError) as info:
        load(BOMB, "bomb.yaml")
    assert info.value.finding.rule == "yaml-too-large"


def test_duplicate_keys_are_reported_with_both_lines() -> None:
    findings = validate("replicaCount: 2\nredis:\n  enabled: true\nreplicaCount: 3\n")
    dup = next(f for f in findings if f.rule == "yaml-duplicate-key")
    assert dup.severity == "error"
    assert (dup.location.line, dup.location.column) == (4, 1)
    assert "first at line 1" in dup.message


def test_non_string_keys_warn_and_become_strings_as_in_helm() -> None:
    loaded = load("podLabels:\n  1: a\n  true: b\n  n: c\n", "v.yaml")
    assert loaded.values == {"podLabels": {"1": "a", "true": "b", "false": "c"}}
    assert [f.rule for f in loaded.findings] == ["yaml-non-string-key"] * 3


def test_yaml_types_follow_helm_not_pyyaml() -> None:
    values = load("a: 2024-01-02\nb: y\nc: 1:30\nd: 0x10\ne: 'y'\n", "v.yaml").values
    assert values == {"a": "2024-01-02", "b": True, "c": "1:30", "d": 16, "e": "y"}


def test_merge_keys_and_anchors_work_and_explicit_keys_win() -> None:
    loaded = load("base: &b {p: 1, q: 2}\nother:\n  <<: *b\n  q: 3\n", "v.yaml")
    assert loaded.values["other"] == {"p": 1, "q": 3}
    assert loaded.positions.value(("other", "q")).line == 4


def test_multiple_documents_are_an_error() -> None:
    findings = validate("replicaCount: 1\n---\nreplicaCount: 3\n")
    assert "yaml-multiple-documents" in {f.rule for f in findings}
