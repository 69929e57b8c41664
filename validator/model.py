"""Plain data shared by every stage: source locations and findings.

Plain classes with __slots__ instead of dataclasses: `dataclasses` costs ~7 ms of import on the cold path.
"""

from __future__ import annotations

ERROR = "error"
WARNING = "warning"

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence


class Loc:
    """Where a value was written: a file with 1-based line/column, or a `--set` argument."""

    __slots__ = ("column", "line", "source")

    def __init__(self, source: str, line: int = 0, column: int = 0) -> None:
        self.source = source
        self.line = line
        self.column = column

    def __str__(self) -> str:
        return f"{self.source}:{self.line}:{self.column}" if self.line else self.source

    def __repr__(self) -> str:
        return f"Loc({self.source!r}, {self.line}, {self.column})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Loc) and (self.source, self.line, self.column) == (
            other.source,
            other.line,
            other.column,
        )

    def __hash__(self) -> int:
        return hash((self.source, self.line, self.column))

    def as_dict(self) -> dict[str, object]:
        return {"source": self.source, "line": self.line or None, "column": self.column or None}


def format_path(path: Sequence[str | int]) -> str:
    """`("ingress", "hosts", 0, "host")` -> `ingress.hosts[0].host` (dots in keys escaped as in --set)."""
    out: list[str] = []
    for part in path:
        if isinstance(part, int):
            out.append(f"[{part}]")
        else:
            text = part.replace(".", "\\.")
            out.append(f".{text}" if out else text)
    return "".join(out) or "(root)"


class Finding:
    """One problem: a stable rule id, a severity, one plain sentence, the fix, and where it was written."""

    __slots__ = ("fix", "location", "message", "path", "rule", "severity")

    def __init__(
        self,
        rule: str,
        severity: str,
        message: str,
        fix: str,
        path: str = "",
        location: Loc | None = None,
    ) -> None:
        self.rule = rule
        self.severity = severity
        self.message = message
        self.fix = fix
        self.path = path
        self.location = location

    def __repr__(self) -> str:
        return f"Finding({self.rule!r}, {self.severity!r}, {self.path!r}, {self.message!r})"

    def as_dict(self) -> dict[str, object]:
        return {
            "rule": self.rule,
            "severity": self.severity,
            "path": self.path,
            "message": self.message,
            "fix": self.fix,
            "location": self.location.as_dict() if self.location else None,
        }


class Positions:
    """Maps a values path to where it was last written; later sources overwrite earlier ones."""

    __slots__ = ("keys", "values")

    def __init__(self) -> None:
        self.values: dict[tuple[str | int, ...], Loc] = {}
        self.keys: dict[tuple[str | int, ...], Loc] = {}

    def update(self, other: Positions) -> None:
        self.values.update(other.values)
        self.keys.update(other.keys)

    def value(self, path: Sequence[str | int]) -> Loc | None:
        """Location of the value at `path`, or of its nearest written ancestor."""
        key = tuple(path)
        while True:
            loc = self.values.get(key)
            if loc is not None or not key:
                return loc
            key = key[:-1]

    def key(self, path: Sequence[str | int]) -> Loc | None:
        """Location of the key naming `path` (for unknown keys), else of the value."""
        return self.keys.get(tuple(path)) or self.value(path)
