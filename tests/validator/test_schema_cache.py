"""The valid path answers from a compiled predicate cached by the schema's sha256 and never imports
jsonschema; invalid values are explained by jsonschema against the real schema; unsupported keywords and
broken cache files fall back safely."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.validator.helpers import ROOT
from validator import schema
from validator.model import Positions

PROBE = (
    "import sys; from validator.cli import main; rc = main(sys.argv[1:]); "
    "print('MODULES', *(m in sys.modules for m in ('jsonschema', 'kubernetes', 'aifactory.redis_url'))); "
    "sys.exit(rc)"
)


def _probe(cache: Path, *args: str) -> tuple[int, str]:
    env = dict(os.environ, AIFACTORY_VALIDATE_CACHE=str(cache))
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, *args], capture_output=True, text=True, cwd=ROOT, env=env
    )
    return proc.returncode, proc.stdout


def test_valid_path_uses_the_cache_and_skips_heavy_imports(tmp_path: Path) -> None:
    rc, out = _probe(tmp_path, "examples/production.yaml")
    assert rc == 0
    assert "MODULES False False False" in out  # no jsonschema, no kubernetes, no URL parser needed
    cached = list(tmp_path.glob("schema-*.bin"))
    digest = schema.schema_digest((ROOT / "chart/values.schema.json").read_bytes())
    assert len(cached) == 1 and digest in cached[0].name
    mtime = cached[0].stat().st_mtime_ns
    assert _probe(tmp_path, "examples/production.yaml")[0] == 0
    assert cached[0].stat().st_mtime_ns == mtime  # reused, not rewritten


def test_invalid_values_are_explained_by_jsonschema(tmp_path: Path) -> None:
    rc, out = _probe(tmp_path, "--set", "replicaCount=many")
    assert rc == 1
    assert "schema-type" in out and "MODULES True" in out


def test_corrupt_cache_file_is_recompiled(tmp_path: Path) -> None:
    _probe(tmp_path, "examples/production.yaml")
    for cached in tmp_path.glob("schema-*.bin"):
        cached.write_bytes(b"not marshal data")
    rc, out = _probe(tmp_path, "examples/production.yaml")
    assert rc == 0, out
    rc, out = _probe(tmp_path, "--set", "replicaCount=many")
    assert rc == 1


def test_unwritable_cache_dir_still_validates(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    rc, _ = _probe(blocker / "sub", "examples/production.yaml")
    assert rc == 0


def test_schema_with_unsupported_keyword_falls_back_to_jsonschema(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("AIFACTORY_VALIDATE_CACHE", str(tmp_path))
    odd = {
        "type": "object",
        "properties": {"a": {"prefixItems": [{"type": "string"}]}},
        "additionalProperties": False,
    }
    raw = json.dumps(odd).encode()
    assert schema.fast_checker(raw) is None
    assert schema.validate(raw, {"a": [1]}, Positions()) == []  # draft-07 ignores prefixItems: valid
    assert [f.rule for f in schema.validate(raw, {"b": 1}, Positions())] == ["schema-unknown-key"]


def test_a_changed_schema_gets_its_own_cache_entry(tmp_path: Path) -> None:
    chart = tmp_path / "chart"
    shutil.copytree(ROOT / "chart", chart)
    cache = tmp_path / "cache"
    assert _probe(cache, "--chart", str(chart), "--set", "replicaCount=150")[0] == 1
    doc = json.loads((chart / "values.schema.json").read_text())
    doc["properties"]["replicaCount"]["maximum"] = 200
    (chart / "values.schema.json").write_text(json.dumps(doc))
    assert _probe(cache, "--chart", str(chart), "--set", "replicaCount=150")[0] == 0
    assert len(list(cache.glob("schema-*.bin"))) == 2
