"""Benchmarks: cross-replica fan-out latency/throughput against python-socketio and the raw Redis floor.

`make bench` (= `python -m bench`) runs the short sweep and writes docs/benchmarks.md; `--full` adds the
5,000-socket and higher-rate points. `make soak` (= `python -m bench.soak`) runs the faults under load.
"""
