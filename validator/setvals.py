"""Helm's `--set` / `--set-string` syntax (strvals), parsed into the values tree.

Same grammar and typing as Helm: `a.b=1`, `a=x,b=y`, lists `a={x,y}`, indexes `a[0].b=1`, `\\.` and
`\\,` escapes; `true`/`false`/`null` and plain integers are typed (floats stay strings, as in Helm),
`--set-string` keeps every value a string. Each path written is recorded with a location naming the
option and key, never the value (a `--set redis.url=...` may carry a password).
"""

from __future__ import annotations

from validator.model import Loc, Positions, format_path

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

MAX_INDEX = 65536
MAX_NESTING = 30
_INT64 = 2**63


class SetError(ValueError):
    """A malformed --set expression; the message quotes Helm's wording where it has one."""


def typed(text: str, as_string: bool) -> object:
    """Helm's typedVal: booleans, null and base-10 integers without a leading zero; all else a string."""
    if as_string:
        return text
    lower = text.lower()
    if lower == "true":
        return True
    if lower == "false":
        return False
    if lower == "null":
        return None
    if text == "0":
        return 0
    if text and text[0] != "0":
        digits = text[1:] if text[0] in "+-" else text
        if digits and digits.isascii() and digits.isdigit():
            value = int(text)
            if -_INT64 <= value < _INT64:
                return value
    return text


class _Parser:
    def __init__(self, text: str, as_string: bool, option: str, positions: Positions) -> None:
        self.text = text
        self.pos = 0
        self.as_string = as_string
        self.option = option
        self.positions = positions

    def read_until(self, stops: str) -> tuple[str, str]:
        """Read (with backslash escapes) up to one of `stops`; return (text, stop char or '' at the end)."""
        out: list[str] = []
        text = self.text
        while self.pos < len(text):
            char = text[self.pos]
            self.pos += 1
            if char == "\\":
                if self.pos < len(text):
                    out.append(text[self.pos])
                    self.pos += 1
                continue
            if char in stops:
                return "".join(out), char
            out.append(char)
        return "".join(out), ""

    def record(self, path: tuple[str | int, ...]) -> None:
        self.positions.values[path] = Loc(f"{self.option} {format_path(path)}")

    def parse(self, data: dict[str, Any]) -> None:
        while self.pos < len(self.text) or self.pos == 0:
            if not self.key(data, (), 0):
                return

    def key(self, data: dict[str, Any], path: tuple[str | int, ...], level: int) -> bool:
        """Parse one `key...=value`; return False at the end of input."""
        if level > MAX_NESTING:
            raise SetError(f"value name nested level is greater than the maximum of {MAX_NESTING}")
        name, stop = self.read_until("=[,.")
        sub = (*path, name)
        if stop == "":
            if name:
                raise SetError(f"key {format_path(sub)!r} has no value")
            return False
        if stop == ",":
            raise SetError(f"key {format_path(sub)!r} has no value (cannot end with ,)")
        if stop == "=":
            data[name] = self.value(sub)
            return self.pos < len(self.text)
        if stop == ".":
            inner = data.get(name, {})
            if not isinstance(inner, dict):  # Helm: "interface conversion: ... not map[string]interface {}"
                raise SetError(f"{format_path(sub)!r} is already set to a {_go_type(inner)}, not a map")
            data[name] = inner
            return self.key(inner, sub, level + 1)
        existing = data.get(name, [])
        if not isinstance(existing, list):
            raise SetError(f"{format_path(sub)!r} is already set to a {_go_type(existing)}, not a list")
        data[name] = self.index(existing, sub, level)
        return self.pos < len(self.text)

    def value(self, path: tuple[str | int, ...]) -> object:
        self.record(path)
        if self.text.startswith("{", self.pos):
            self.pos += 1
            items: list[object] = []
            while True:  # Helm reads `{}` as a list holding one empty string
                item, stop = self.read_until(",}")
                items.append(typed(item, self.as_string))
                if stop == "}":
                    break
                if stop == "":
                    raise SetError(f"list for {format_path(path)!r} is missing its closing '}}'")
            for i in range(len(items)):
                self.record((*path, i))
            rest, stop = self.read_until(",")
            if rest:
                raise SetError(
                    f"unexpected text after the closing '}}' of the list for {format_path(path)!r}"
                )
            return items
        text, _ = self.read_until(",")
        return typed(text, self.as_string)

    def index(self, items: list[Any], path: tuple[str | int, ...], level: int) -> list[Any]:
        raw, stop = self.read_until("]")
        if stop != "]":
            raise SetError(f"missing ']' after index of {format_path(path)!r}")
        try:
            idx = int(raw)
        except ValueError:
            raise SetError(f"index {raw!r} of {format_path(path)!r} is not an integer") from None
        if idx < 0:
            raise SetError(f"negative {idx} index not allowed")
        if idx > MAX_INDEX:
            raise SetError(f"index of {idx} is greater than maximum supported index {MAX_INDEX}")
        while len(items) <= idx:
            items.append(None)
        sub = (*path, idx)
        if self.pos >= len(self.text):
            raise SetError(f"key {format_path(sub)!r} has no value")
        char = self.text[self.pos]
        self.pos += 1
        if char == "=":
            items[idx] = self.value(sub)
        elif char == ".":
            inner = items[idx] if isinstance(items[idx], dict) else {}
            items[idx] = inner
            self.key(inner, sub, level + 1)
        elif char == "[":
            inner_list = [] if items[idx] is None else items[idx]
            if not isinstance(inner_list, list):
                raise SetError(f"{format_path(sub)!r} is already set to a {_go_type(inner_list)}, not a list")
            items[idx] = self.index(inner_list, sub, level + 1)
        else:
            raise SetError(f"unexpected {char!r} after {format_path(sub)!r}; expected '=', '.' or '['")
        return items


def _go_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    names: dict[type, str] = {str: "string", list: "list", dict: "map"}
    return names.get(type(value), type(value).__name__)


def parse_into(expr: str, data: dict[str, Any], positions: Positions, *, as_string: bool = False) -> None:
    """Apply one `--set` (or `--set-string`) expression to `data` in place, as Helm's strvals.ParseInto."""
    option = "--set-string" if as_string else "--set"
    _Parser(expr, as_string, option, positions).parse(data)
