"""bench.terminal_latency runs real replicas, a real host and real shells, and reports milliseconds."""

from __future__ import annotations

import pytest

from bench import terminal_latency

pytestmark = pytest.mark.timeout(180)


def test_terminal_latency_bench_reports_both_modes_and_rss() -> None:
    r = terminal_latency.measure(keystrokes=30, rss_terminals=2)
    for mode in ("local", "host"):
        assert 0 < r[mode]["p50_ms"] <= r[mode]["p99_ms"] < 5_000, r
    assert 100 < r["rss_kib_per_terminal"] < 200_000, r  # KiB: a shell costs something, not gigabytes
    line = terminal_latency.summary_line(r)
    assert "local p50" in line and "terminal host" in line and "KiB RSS" in line
