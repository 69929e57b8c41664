"""Merge values like Helm: each -f file over the previous, then --set/--set-string, then chart defaults.

Helm order (pkg/cli/values MergeValues then chartutil.CoalesceValues): files are deep-merged in order
(maps merge, anything else replaces); `--set` then `--set-string` expressions are applied on top; finally
the chart's defaults fill whatever the user did not set, and a user `null` deletes that key from the
result, default included.
"""

from __future__ import annotations

from validator.model import WARNING, Finding, Positions, format_path

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

SUMMARIES = {"values-table-overwritten": "a chart table (map) set to a scalar, or the reverse"}


def merge_maps(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Helm's mergeMaps for values files: nested maps merge, other values replace."""
    out = dict(base)
    for key, value in override.items():
        current = out.get(key)
        if isinstance(value, dict) and isinstance(current, dict):
            out[key] = merge_maps(current, value)
        else:
            out[key] = value
    return out


def _copy(value: object) -> object:
    """Deep copy of plain YAML data (dicts, lists, scalars); `copy.deepcopy` costs an import and is slower."""
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


def coalesce(
    defaults: dict[str, Any], user: dict[str, Any], positions: Positions, findings: list[Finding]
) -> dict[str, Any]:
    """Chart defaults under the user's values; a user null deletes the key (default included)."""
    result = _copy(user)
    assert isinstance(result, dict)  # a copy of a dict is a dict
    _coalesce_table(result, defaults, (), positions, findings)
    return result


def _coalesce_table(
    dst: dict[str, Any],
    src: dict[str, Any],
    path: tuple[str | int, ...],
    positions: Positions,
    findings: list[Finding],
) -> None:
    for key, default in src.items():
        sub = (*path, key)
        if key not in dst:
            dst[key] = _copy(default)
            continue
        value = dst[key]
        if value is None:
            del dst[key]
        elif isinstance(default, dict):
            if isinstance(value, dict):
                _coalesce_table(value, default, sub, positions, findings)
            else:
                findings.append(
                    Finding(
                        "values-table-overwritten",
                        WARNING,
                        f"{format_path(sub)} is a table in the chart but set to a non-table value "
                        f"(Helm warns: cannot overwrite table with non table)",
                        f"set the individual keys under {format_path(sub)} instead",
                        format_path(sub),
                        positions.value(sub),
                    )
                )
        elif isinstance(value, dict) and default is not None:
            findings.append(
                Finding(
                    "values-table-overwritten",
                    WARNING,
                    f"{format_path(sub)} is a single value in the chart but set to a table "
                    f"(Helm warns and ignores the chart's default)",
                    f"set {format_path(sub)} to a single value as in the chart's values.yaml",
                    format_path(sub),
                    positions.value(sub),
                )
            )
