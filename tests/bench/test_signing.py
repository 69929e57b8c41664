"""bench.signing measures the real signer on the real codec: a signed envelope round-trips, numbers are µs."""

from __future__ import annotations

from bench import signing


def test_signing_bench_reports_microseconds_per_event() -> None:
    row = signing.measure(size=256, n=200)
    assert 240 <= row["event_bytes"] <= 256
    for key in ("sign_us", "verify_us", "decode_us", "receive_signed_us"):
        assert 0 < row[key] < 10_000, (key, row)  # microseconds, not seconds or nanoseconds
    assert row["receive_signed_us"] > row["verify_us"]  # verify+decode includes the verify
    line = signing.summary_line(row)
    assert "µs" in line and "HMAC-SHA256" in line
