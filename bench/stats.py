"""Percentiles and the one result row shape every benchmark reports."""

from __future__ import annotations

import math
from collections.abc import Sequence


def percentile(sorted_ms: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted list (q in 0..100); NaN for no samples."""
    if not sorted_ms:
        return math.nan
    rank = max(1, math.ceil(q / 100.0 * len(sorted_ms)))
    return sorted_ms[min(rank, len(sorted_ms)) - 1]


def summarize(samples_ms: Sequence[float], expected: int | None = None) -> dict[str, float]:
    """p50/p99/max in ms plus received (and lost when the expected count is known)."""
    s = sorted(samples_ms)
    out = {
        "p50": percentile(s, 50),
        "p99": percentile(s, 99),
        "max": s[-1] if s else math.nan,
        "received": float(len(s)),
    }
    if expected is not None:
        out["expected"] = float(expected)
        out["lost"] = float(max(0, expected - len(s)))
    return out
