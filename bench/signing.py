"""Cost of envelope signing per event: HMAC-SHA256 sign on publish, verify on receive (µs per event).

Runs in-process on the real `EnvelopeSigner` and the real envelope codec, with an event of `--size` bytes;
`python -m bench.signing` prints it alone, `python -m bench` puts it in the report.
"""

from __future__ import annotations

import argparse
import time
import uuid
from collections.abc import Callable
from typing import Any

from aifactory.envelope import EnvelopeSigner, decode_with_frame, encode_event, encode_with_frame

__all__ = ["measure", "summary_line"]


def _best_us(fn: Callable[[], object], n: int, repeats: int = 5) -> float:
    """Best-of-`repeats` mean µs per call (the minimum is the least disturbed by a shared machine)."""
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - t0) / n)
    return best * 1e6


def measure(size: int = 256, n: int = 20_000) -> dict[str, Any]:
    signer = EnvelopeSigner("bench-secret-" + "x" * 40)
    frame = encode_event({"type": "task.progress", "pad": "p" * max(0, size - 40)})
    envelope = encode_with_frame(str(uuid.uuid4()), 12345, "user", "alice", frame)
    signed = signer.sign(envelope).encode()
    plain = envelope.encode()
    sign_us = _best_us(lambda: signer.sign(envelope), n)
    verify_us = _best_us(lambda: signer.verify(signed), n)
    decode_us = _best_us(lambda: decode_with_frame(plain), n)
    receive_us = _best_us(lambda: decode_with_frame(signer.verify(signed)), n)
    return {
        "event_bytes": len(frame),
        "sign_us": round(sign_us, 2),
        "verify_us": round(verify_us, 2),
        "decode_us": round(decode_us, 2),
        "receive_signed_us": round(receive_us, 2),
    }


def summary_line(r: dict[str, Any]) -> str:
    return (
        f"Envelope signing (HMAC-SHA256, {r['event_bytes']}-byte event): sign {r['sign_us']:.2f} µs on"
        f" publish, verify {r['verify_us']:.2f} µs on receive per event"
        f" (decode alone {r['decode_us']:.2f} µs, verify+decode {r['receive_signed_us']:.2f} µs)."
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.signing", description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256, help="event size in bytes")
    args = parser.parse_args(argv)
    print(summary_line(measure(args.size)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
