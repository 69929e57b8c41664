"""Load one YAML values file into plain data plus the line/column of every value.

Built on PyYAML's event stream (libyaml when available) rather than `yaml.load`, so that:
duplicate keys are reported (YAML loaders keep the last one silently), non-string keys are caught,
nesting depth and alias expansion are bounded (an alias bomb or 10 000 nested brackets cannot exhaust
time, memory or the stack), and every value keeps the position it was written at.
"""

from __future__ import annotations

import re

import yaml

from validator.model import ERROR, WARNING, Finding, Loc, Positions, format_path

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

MAX_BYTES = 4 * 1024 * 1024  # Helm values files are kilobytes; refuse before reading anything absurd
MAX_DEPTH = 64  # nesting levels (mappings/sequences), including levels reached through aliases
MAX_NODES = 200_000  # values built, counting every alias expansion

try:
    _Loader: type = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - PyYAML built without libyaml
    _Loader = yaml.SafeLoader

# Finding id -> one-line description (SARIF shortDescription; the table in docs/validator.md says more).
SUMMARIES = {
    "yaml-invalid": "not YAML, an undefined or recursive alias, or a bad merge key",
    "yaml-not-text": "binary data, NUL bytes or not UTF-8",
    "yaml-not-a-mapping": "the top level is a list or a scalar, not a mapping",
    "yaml-duplicate-key": "a key written twice in one mapping (Helm keeps the last silently)",
    "yaml-non-string-key": "a non-string key (1:, true:, n:) that Helm turns into a string",
    "yaml-multiple-documents": "several --- documents (Helm 3 reads the first, Helm 4 merges them)",
    "yaml-unknown-tag": "a !!python/... or custom YAML tag",
    "yaml-complex-key": "a mapping or list used as a key",
    "yaml-too-deep": "nesting deeper than 64 levels (also through aliases)",
    "yaml-too-large": "more than 200 000 values after alias expansion",
    "values-file-too-large": "a values file over 4 MiB",
    "values-file-empty": "an empty values file (Helm reads no values from it)",
}
_TAG = "tag:yaml.org,2002:"
_GO_YAML_BOOLS = {"y": True, "Y": True, "n": False, "N": False}
# go-yaml's (Helm's) plain-float shape: 1e1, 1e+1, 1.5E3 are floats there, strings for PyYAML's YAML 1.1.
_NUMBER_START = frozenset("0123456789+-.")
_GO_YAML_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?")
_MAP, _SEQ, _SCALAR = 0, 1, 2


class LoadError(Exception):
    """A values file that cannot be used at all; carries the rule id and position for the report."""

    def __init__(self, rule: str, message: str, fix: str, loc: Loc) -> None:
        super().__init__(message)
        self.finding = Finding(rule, ERROR, message, fix, "", loc)


class _Node:
    """A composed YAML node: kind, position, and children (pairs for mappings) or the scalar value."""

    __slots__ = ("column", "data", "kind", "line", "plain", "tag")

    def __init__(
        self, kind: int, line: int, column: int, tag: str | None, data: Any, plain: bool = False
    ) -> None:
        self.kind = kind
        self.plain = plain
        self.line = line
        self.column = column
        self.tag = tag
        self.data = data  # str (scalar), list of _Node (sequence) or of (key, value) pairs (mapping)


class Loaded:
    """Result of loading one file: the mapping, where each value sits, and non-fatal findings."""

    __slots__ = ("findings", "positions", "values")

    def __init__(self, values: dict[str, Any], positions: Positions, findings: list[Finding]) -> None:
        self.values = values
        self.positions = positions
        self.findings = findings


def decode(raw: bytes, source: str) -> str:
    """Bytes to text, refusing binary data with a clear message instead of a reader traceback."""
    if len(raw) > MAX_BYTES:
        raise LoadError(
            "values-file-too-large",
            f"values file is {len(raw) / 1e6:.1f} MB; "
            f"aifactory-validate reads at most {MAX_BYTES // 2**20} MiB",
            "pass the chart values file, not a generated dump (Helm values files are kilobytes)",
            Loc(source),
        )
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        raw_text = raw.decode("utf-16", errors="replace")
    else:
        try:
            raw_text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            line = raw[: exc.start].count(b"\n") + 1
            column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
            raise LoadError(
                "yaml-not-text",
                f"values file is not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start})",
                "save the values file as UTF-8 YAML",
                Loc(source, line, column),
            ) from None
    if "\x00" in raw_text:
        offset = raw_text.index("\x00")
        line = raw_text.count("\n", 0, offset) + 1
        raise LoadError(
            "yaml-not-text",
            "values file contains NUL bytes (binary data, not YAML)",
            "pass a YAML values file",
            Loc(source, line, offset - (raw_text.rfind("\n", 0, offset) + 1) + 1),
        )
    return raw_text


def load(text: str, source: str) -> Loaded:
    """Parse YAML text into (values, positions, findings); raise LoadError when the file is unusable."""
    root, findings = _compose(text, source)
    positions = Positions()
    if root is not None and root.kind == _SCALAR and root.tag == _TAG + "null":
        root = None  # `---` alone or `~`: Helm reads no values, like an empty file
    if root is None:
        findings.append(
            Finding(
                "values-file-empty",
                WARNING,
                "values file holds no values (empty or only comments)",
                "remove it from the command line, or add the values it was meant to set",
                "",
                Loc(source, 1, 1),
            )
        )
        return Loaded({}, positions, findings)
    if root.kind != _MAP:
        kind = "a list" if root.kind == _SEQ else "a single scalar value"
        raise LoadError(
            "yaml-not-a-mapping",
            f"values file holds {kind} at the top level; Helm needs a mapping of keys to values",
            "write the values as `key: value` lines at the top level (e.g. `replicaCount: 3`)",
            Loc(source, root.line, root.column),
        )
    builder = _Builder(source, positions, findings)
    values = builder.build(root, (), 0)
    assert isinstance(values, dict)  # root.kind is _MAP, so build() returned a mapping
    return Loaded(values, positions, findings)


def _mark_loc(source: str, mark: yaml.Mark | None) -> Loc:
    if mark is None:
        return Loc(source)
    return Loc(source, mark.line + 1, mark.column + 1)


def _compose(text: str, source: str) -> tuple[_Node | None, list[Finding]]:
    """Events -> node tree, iteratively (no recursion), bounding depth; anchors resolve to shared nodes."""
    findings: list[Finding] = []
    loader = _Loader(text)
    anchors: dict[str, _Node] = {}
    open_anchors: set[str] = set()
    stack: list[tuple[_Node, str | None]] = []
    root: _Node | None = None
    documents = 0
    try:
        while True:
            event = loader.get_event()
            kind = type(event)
            if kind is yaml.StreamEndEvent:
                break
            if kind is yaml.DocumentStartEvent:
                documents += 1
                if documents == 2:
                    findings.append(
                        Finding(
                            "yaml-multiple-documents",
                            ERROR,
                            "values file holds more than one YAML document (`---`): "
                            "Helm 3 reads only the first, Helm 4 merges them",
                            "merge the documents into one, or split them into separate -f files",
                            "",
                            _mark_loc(source, event.start_mark),
                        )
                    )
                continue
            if kind in (yaml.StreamStartEvent, yaml.DocumentEndEvent):
                continue
            mark = event.start_mark
            if kind is yaml.AliasEvent:
                anchor = event.anchor
                if anchor in open_anchors:
                    raise LoadError(
                        "yaml-invalid",
                        f"alias *{anchor} refers to its own enclosing node (a recursive structure)",
                        "remove the recursive alias",
                        _mark_loc(source, mark),
                    )
                node = anchors.get(anchor)
                if node is None:
                    raise LoadError(
                        "yaml-invalid",
                        f"alias *{anchor} is used before any anchor &{anchor} is defined",
                        f"define `&{anchor}` on a value above this line, or remove the alias",
                        _mark_loc(source, mark),
                    )
                if documents > 1:
                    continue
                _attach(stack, node)
                if not stack:
                    root = node
                continue
            if kind is yaml.ScalarEvent or kind is yaml.SequenceStartEvent or kind is yaml.MappingStartEvent:
                tag = event.tag
                if kind is yaml.ScalarEvent:
                    if tag is None or tag == "!":
                        tag = loader.resolve(yaml.ScalarNode, event.value, event.implicit)
                    plain = event.tag is None and event.implicit[0]
                    node = _Node(_SCALAR, mark.line + 1, mark.column + 1, tag, event.value, plain)
                else:
                    if len(stack) >= MAX_DEPTH:
                        raise LoadError(
                            "yaml-too-deep",
                            f"values nest deeper than {MAX_DEPTH} levels",
                            "flatten the values; the chart's values are a few levels deep",
                            _mark_loc(source, mark),
                        )
                    node = _Node(
                        _MAP if kind is yaml.MappingStartEvent else _SEQ,
                        mark.line + 1,
                        mark.column + 1,
                        tag,
                        [],
                    )
                if documents > 1:
                    if kind is not yaml.ScalarEvent:
                        stack.append((node, None))
                    continue
                anchor = event.anchor
                if kind is yaml.ScalarEvent:
                    if anchor:
                        anchors[anchor] = node
                    _attach(stack, node)
                    if not stack:
                        root = node
                else:
                    if anchor:
                        open_anchors.add(anchor)
                    stack.append((node, anchor))
                continue
            if kind is yaml.SequenceEndEvent or kind is yaml.MappingEndEvent:
                node, anchor = stack.pop()
                if documents > 1:
                    continue
                if anchor:
                    open_anchors.discard(anchor)
                    anchors[anchor] = node
                _attach(stack, node)
                if not stack:
                    root = node
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "invalid YAML"
        context = f" ({exc.context})" if exc.context and exc.problem else ""
        if "nesting depth" in problem:  # libyaml's own bound, hit before ours on flow collections
            raise LoadError(
                "yaml-too-deep",
                f"values nest deeper than YAML's parser allows: {problem}",
                "flatten the values; the chart's values are a few levels deep",
                _mark_loc(source, mark),
            ) from None
        raise LoadError(
            "yaml-invalid",
            f"invalid YAML: {problem}{context}",
            "fix the YAML syntax at this position (indentation, quotes, a missing `:`)",
            _mark_loc(source, mark),
        ) from None
    except yaml.YAMLError as exc:
        raise LoadError("yaml-invalid", f"invalid YAML: {exc}", "fix the YAML syntax", Loc(source)) from None
    finally:
        loader.dispose()
    return root, findings


def _attach(stack: list[tuple[_Node, str | None]], node: _Node) -> None:
    if stack:
        stack[-1][0].data.append(node)


class _Builder:
    """Node tree -> plain Python values, counting alias expansions and nesting (aliases can deepen it)."""

    def __init__(self, source: str, positions: Positions, findings: list[Finding]) -> None:
        self.source = source
        self.positions = positions
        self.findings = findings
        self.count = 0
        self.constructor = _Loader("")

    def loc(self, node: _Node) -> Loc:
        return Loc(self.source, node.line, node.column)

    def build(self, node: _Node, path: tuple[str | int, ...], depth: int) -> object:
        self.count += 1
        if self.count > MAX_NODES:
            raise LoadError(
                "yaml-too-large",
                f"values expand to more than {MAX_NODES} entries (an alias bomb?)",
                "remove the nested aliases (`*name`) that multiply the document",
                self.loc(node),
            )
        if depth > MAX_DEPTH:
            raise LoadError(
                "yaml-too-deep",
                f"values nest deeper than {MAX_DEPTH} levels (through aliases)",
                "flatten the values; the chart's values are a few levels deep",
                self.loc(node),
            )
        self.positions.values[path] = self.loc(node)
        if node.kind == _SCALAR:
            return self.scalar(node)
        if node.tag and node.tag not in (_TAG + "map", _TAG + "seq", _TAG + "omap"):
            raise LoadError(
                "yaml-unknown-tag",
                f"unsupported YAML tag {node.tag} at {format_path(path)}",
                "remove the tag; Helm values are plain mappings, lists and scalars",
                self.loc(node),
            )
        if node.kind == _SEQ:
            return [self.build(child, (*path, i), depth + 1) for i, child in enumerate(node.data)]
        return self.mapping(node, path, depth)

    def scalar(self, node: _Node) -> object:
        tag = node.tag or ""
        value = node.data
        if tag == _TAG + "str" or tag == _TAG + "timestamp":
            if node.plain and value in _GO_YAML_BOOLS:
                return _GO_YAML_BOOLS[value]  # go-yaml (Helm) reads plain y/n as booleans; PyYAML does not
            if node.plain and value[:1] in _NUMBER_START and _GO_YAML_FLOAT.fullmatch(value):
                return float(value)
            return value  # Helm (go-yaml) keeps timestamp-looking values as strings
        if tag == _TAG + "null":
            return None
        if tag == _TAG + "bool":
            return self.constructor.bool_values[value.lower()]
        if tag in (_TAG + "int", _TAG + "float"):
            if ":" in value:
                return value  # YAML 1.1 sexagesimal (1:30): go-yaml keeps it a string
            ynode = yaml.ScalarNode(tag, value)
            try:
                if tag.endswith("int"):
                    return self.constructor.construct_yaml_int(ynode)
                return self.constructor.construct_yaml_float(ynode)
            except (ValueError, KeyError):
                pass
        elif tag != _TAG + "merge":
            raise LoadError(
                "yaml-unknown-tag",
                f"unsupported YAML tag {tag}",
                "remove the tag; Helm values are plain mappings, lists and scalars",
                self.loc(node),
            )
        return value

    def key_text(self, key: _Node, path: tuple[str | int, ...]) -> str:
        if key.kind != _SCALAR:
            raise LoadError(
                "yaml-complex-key",
                f"a {'mapping' if key.kind == _MAP else 'list'} is used as a key under {format_path(path)}",
                "keys must be plain strings",
                self.loc(key),
            )
        value = self.scalar(key)
        if isinstance(value, str):
            return value
        text = _go_key_text(value, key.data)
        self.findings.append(
            Finding(
                "yaml-non-string-key",
                WARNING,
                f"key {key.data!r} under {format_path(path)} is read as a {_kind(value)}, not a string; "
                f"Helm turns it into the string {text!r}",
                f'quote the key: "{key.data}":',
                format_path((*path, text)),
                self.loc(key),
            )
        )
        return text

    def mapping(self, node: _Node, path: tuple[str | int, ...], depth: int) -> dict[str, Any]:
        out: dict[str, object] = {}
        seen: dict[str, _Node] = {}
        pairs: list[_Node] = node.data
        explicit = []
        for i in range(0, len(pairs) - 1, 2):
            key, value = pairs[i], pairs[i + 1]
            if key.kind == _SCALAR and key.tag == _TAG + "merge":
                self.merge(out, value, path, depth)  # merged first: explicit keys below override them
            else:
                explicit.append((key, value))
        for key, value in explicit:
            name = self.key_text(key, path)
            sub = (*path, name)
            if name in seen:
                first = seen[name]
                self.findings.append(
                    Finding(
                        "yaml-duplicate-key",
                        ERROR,
                        f"key {name!r} is written twice under {format_path(path)} (first at line "
                        f"{first.line}); YAML keeps only the last one silently",
                        "delete one of the two entries, keeping the value you mean",
                        format_path(sub),
                        self.loc(key),
                    )
                )
            seen[name] = key
            self.positions.keys[sub] = self.loc(key)
            out[name] = self.build(value, sub, depth + 1)
        return out

    def merge(self, out: dict[str, Any], merge: _Node, path: tuple[str | int, ...], depth: int) -> None:
        """YAML merge key `<<`: earlier sources win over later ones, explicit keys over all."""
        sources: list[_Node] = merge.data if merge.kind == _SEQ else [merge]
        for src in sources:
            if src.kind != _MAP:
                raise LoadError(
                    "yaml-invalid",
                    f"merge key `<<` under {format_path(path)} needs a mapping or a list of mappings",
                    "point `<<:` at an anchored mapping (`<<: *defaults`)",
                    self.loc(src),
                )
            for name, val in self.mapping(src, path, depth).items():
                out.setdefault(name, val)


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    return "number" if isinstance(value, int | float) else type(value).__name__


def _go_key_text(value: object, raw: str) -> str:
    """How sigs.k8s.io/yaml (Helm) stringifies a non-string key."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return raw
