"""Merge parity: for files, --set and --set-string, the validator's merged values equal what real Helm 3 and
Helm 4 hand to templates (an echo chart renders `toJson .Values`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import run_helm
from validator.loader import load
from validator.merge import coalesce, merge_maps
from validator.model import Positions
from validator.setvals import SetError, parse_into

DEFAULTS = "a:\n  b: 1\n  c: [1, 2]\n  d: {e: x}\nkeep: 1\n"
CASES: list[tuple[list[str], list[tuple[str, str]]]] = [
    # (values files, [(flag, expr)])
    ([], [("--set", "a.b=2,x=true,y=null,z=0,n=-3")]),
    ([], [("--set", "q=1.5,s=007,t=TRUE,u=+5,v=")]),
    ([], [("--set", "a.c={3,4,5}"), ("--set", "l[2]=x"), ("--set", "m[0].k=v,m[1][1]=w")]),
    ([], [("--set", r"d\.e=1,v=a\,b,w=x=y"), ("--set-string", "num=42,b=true")]),
    ([], [("--set", "a=null"), ("--set", "keep=null")]),
    ([], [("--set", "a.d=null,a.b.x=1")]),
    ([], [("--set-string", "a.b=1"), ("--set", "a.b=2")]),  # --set-string applies after --set
    ([], [("--set", "e={}"), ("--set", "big=99999999999999999999")]),
    (["a: null\n"], []),
    (["a: {b: null}\n", "a: {c: null}\n"], []),
    (["a: {b: 2}\n", "a: {b: null}\n"], []),
    (["a: {b: null}\n", "a: {b: 3}\n"], []),
    (["z: null\nn: {y: null}\n"], []),
    (["a: 5\n"], [("--set", "a.x=1")]),
    ([], [("--set", "s=str,s.x=1")]),
    ([], [("--set", "l={1},l.x=1")]),
    ([], [("--set", "n=null,n.x=1")]),
    ([], [("--set", "i=1"), ("--set", "i[0]=1")]),
    ([], [("--set", "l[0]=1,l[0].x=1")]),
    ([], [("--set", "l[0]=1,l[0][0]=1")]),
    ([], [("--set", "l[-1]=1")]),
    (["a: {d: {f: 1}}\n"], [("--set", "a.d.e=null")]),
    (["on: yes\nk: 2024-01-02\n"], []),
]


@pytest.fixture(scope="module")
def echo_chart(tmp_path_factory: pytest.TempPathFactory) -> Path:
    chart = tmp_path_factory.mktemp("echo")
    (chart / "templates").mkdir()
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: echo\nversion: 0.1.0\n")
    (chart / "values.yaml").write_text(DEFAULTS)
    (chart / "templates" / "values.yaml").write_text("values: {{ toJson .Values }}\n")
    return chart


def _ours(files: list[str], sets: list[tuple[str, str]]) -> object:
    user: dict = {}
    for text in files:
        user = merge_maps(user, load(text, "f").values)
    try:
        for flag, expr in sorted(sets, key=lambda s: s[0] == "--set-string"):
            parse_into(expr, user, Positions(), as_string=flag == "--set-string")
    except SetError:
        return "error"
    return json.loads(json.dumps(coalesce(load(DEFAULTS, "d").values, user, Positions(), [])))


@pytest.mark.parametrize("index", range(len(CASES)))
def test_merged_values_equal_helms(helm: str, echo_chart: Path, tmp_path: Path, index: int) -> None:
    files, sets = CASES[index]
    args = ["template", "x", str(echo_chart)]
    for i, text in enumerate(files):
        path = tmp_path / f"f{i}.yaml"
        path.write_text(text)
        args += ["-f", str(path)]
    for flag, expr in sets:
        args += [flag, expr]
    proc = run_helm(helm, *args)
    helms = json.loads(proc.stdout.split("values: ", 1)[1]) if proc.returncode == 0 else "error"
    assert _ours(files, sets) == helms
