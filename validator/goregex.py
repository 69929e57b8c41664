"""Translate a JSON Schema `pattern` so Python's `re` matches the way Helm's Go regexp (RE2) does.

Two differences matter for values. Go's `$` (no multiline flag) matches only at the very end of the
text, while Python's also matches before a final newline (a YAML block scalar `|` ends with one). Go's
Perl classes are ASCII-only (`\\s` is [\\t\\n\\f\\r ], `\\d` is [0-9]) while Python's are Unicode.
Without this, the validator would accept `host: |` values or non-breaking spaces that Helm refuses.
"""

from __future__ import annotations

FLAGS = 256  # re.ASCII, without importing re here
_CLASSES = {"s": r"[\t\n\f\r ]", "S": r"[^\t\n\f\r ]"}


def translate(pattern: str) -> str:
    out: list[str] = []
    in_class = False
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if char == "\\" and i + 1 < len(pattern):
            nxt = pattern[i + 1]
            if not in_class and nxt in _CLASSES:
                out.append(_CLASSES[nxt])
            elif in_class and nxt == "s":
                out.append(r"\t\n\f\r ")
            else:
                out.append(char + nxt)
            i += 2
            continue
        if in_class:
            if char == "]":
                in_class = False
        elif char == "[":
            in_class = True
            if pattern.startswith("]", i + 1) or pattern.startswith("^]", i + 1):
                skip = 2 if pattern[i + 1] == "]" else 3
                out.append(pattern[i : i + skip])
                i += skip
                continue
        elif char == "$":
            out.append(r"\Z")
            i += 1
            continue
        out.append(char)
        i += 1
    return "".join(out)
