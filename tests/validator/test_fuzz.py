"""Property-based: whatever the bytes, values or --set strings, the validator returns findings (or a
SetError for a malformed --set) and never raises anything else; and the compiled schema predicate agrees
with jsonschema on the real chart schema."""

from __future__ import annotations

import json
import string

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.validator.helpers import ROOT
from validator import pipeline
from validator.chart import Chart
from validator.compiler import compile_source
from validator.schema import jsonschema_validator
from validator.setvals import SetError

CHART = Chart(None)
SCHEMA = json.loads((ROOT / "chart/values.schema.json").read_text())
FAST = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])

yaml_chars = st.sampled_from(
    list(":-[]{}&*!|>'\"%@`#,?\n\t ") + list("abcxyz019") + ["  ", "\n  ", "<<", "---"]
)
yaml_like = st.lists(yaml_chars, max_size=80).map("".join)
tricky = st.sampled_from(["aifactory:events\n", "a\u00a0b", "redis://r:6379/0", "25%", "latest", "x y", ""])
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False),
    st.text(max_size=20),
    tricky,
)
keys = st.sampled_from(
    ["replicaCount", "redis", "enabled", "url", "autoscaling", "minReplicas", "ingress", "x"]
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(keys, inner, max_size=4),
    max_leaves=20,
)


def _run(files: list[bytes], sets: list[tuple[str, bool]] | None = None) -> None:
    result = pipeline.run(CHART, [(f"f{i}.yaml", raw) for i, raw in enumerate(files)], sets or [])
    for finding in result.findings:
        assert finding.rule and finding.severity in ("error", "warning") and finding.message


@FAST
@given(st.binary(max_size=300))
def test_random_bytes_never_crash(raw: bytes) -> None:
    _run([raw])


@FAST
@given(yaml_like)
def test_yaml_like_text_never_crashes(text: str) -> None:
    _run([text.encode()])


@FAST
@given(st.dictionaries(keys, values, max_size=6))
def test_random_value_trees_never_crash(tree: dict) -> None:
    try:
        text = yaml.safe_dump(tree)
    except yaml.YAMLError:
        return
    _run([text.encode()])


@FAST
@given(st.text(alphabet=string.ascii_letters[:6] + "=.,[]{}\\0123-", max_size=30), st.booleans())
def test_random_set_expressions_parse_or_fail_cleanly(expr: str, as_string: bool) -> None:
    try:
        _run([], [(expr, as_string)])
    except SetError as exc:
        assert str(exc)


_check_ns: dict = {}
exec(compile(compile_source(SCHEMA), "compiled", "exec"), _check_ns)
_jsonschema = jsonschema_validator(SCHEMA)
_defaults = yaml.safe_load((ROOT / "chart/values.yaml").read_text())
paths = st.sampled_from(
    [
        ("replicaCount",),
        ("image", "pullPolicy"),
        ("image", "tag"),
        ("redis", "url"),
        ("redis", "channel"),
        ("redis", "enabled"),
        ("autoscaling", "minReplicas"),
        ("podDisruptionBudget", "maxUnavailable"),
        ("ingress", "hosts"),
        ("service", "annotations"),
        ("extraEnv",),
        ("bogus",),
        ("redis", "bogus"),
    ]
)


@FAST
@given(st.lists(st.tuples(paths, values), max_size=4))
def test_compiled_predicate_agrees_with_jsonschema(edits: list) -> None:
    doc = json.loads(json.dumps(_defaults))
    for path, value in edits:
        node = doc
        for part in path[:-1]:
            node = node.setdefault(part, {}) if isinstance(node, dict) else {}
        if isinstance(node, dict):
            node[path[-1]] = value
    assert _check_ns["check"](doc) == _jsonschema.is_valid(doc)
