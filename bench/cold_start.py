"""Cold start of `aifactory-validate` against cold `helm lint` on the same chart and values.

"Cold" = a new process per run, as in every pre-commit/CI invocation (the OS page cache and the compiled
schema cache are warm after the first run, as they are for a user; the cache-miss first run is measured
separately). Runs are interleaved so machine noise hits both sides alike; we report medians.
Usage: python -m bench.cold_start [--runs N] [--values FILE] [--baseline DIR]
`--baseline DIR` adds a checkout of another revision (e.g. `git archive main | tar -x -C DIR`), run as
`python -m validator` beside this tree's, so a change's cost is measured in the same interleaved run.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BAR_MS = 150.0


def _helm() -> str:
    for candidate in (
        os.environ.get("AIFACTORY_HELM4"),
        str(ROOT / ".tools/helm4/helm"),
        shutil.which("helm"),
    ):
        if candidate and Path(candidate).is_file():
            return candidate
    raise SystemExit("helm not found: run `make tools` (or set AIFACTORY_HELM4)")


def _validator() -> list[str]:
    script = Path(sys.executable).with_name("aifactory-validate")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "validator"]


def _time(cmd: list[str], env: dict[str, str]) -> float:
    return _run(cmd, env)[0]


def _run(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall ms, CPU ms) of one whole process. CPU (user+sys of the child) hardly moves when other work
    shares the machine, so it is the steadier comparison on a busy box; wall is what a user waits."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, cwd=ROOT)
    elapsed = (time.perf_counter() - start) * 1000
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.decode()[-400:]}")
    cpu = (after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime) * 1000
    return elapsed, cpu


def _importtime(cmd: list[str], env: dict[str, str], top: int = 8) -> list[str]:
    """The slowest imports of one validator run (python -X importtime), cumulative microseconds."""
    proc = subprocess.run(
        [
            sys.executable,
            "-X",
            "importtime",
            "-c",
            "import sys; from validator.cli import main; main(sys.argv[1:])",
            *cmd[1:],
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
    )
    rows = []
    for line in proc.stderr.splitlines():
        parts = line.split("|")
        if len(parts) == 3 and parts[1].strip().isdigit():
            rows.append((int(parts[1]), parts[2].rstrip()))
    rows.sort(reverse=True)
    return [f"    {us / 1000:6.1f} ms  {name.strip()}" for us, name in rows[:top]]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cold_start", description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=21, help="timed runs per command (median reported)")
    parser.add_argument("--values", default="examples/production.yaml", help="values file (repo-relative)")
    parser.add_argument("--baseline", metavar="DIR", help="another checkout to compare (python -m validator)")
    args = parser.parse_args([] if argv is None else argv)  # called from `make bench`: not its argv

    helm = _helm()
    values = args.values
    chart = str(ROOT / "chart")
    cache = tempfile.mkdtemp(prefix="aifactory-validate-cache-")
    env = dict(os.environ, AIFACTORY_VALIDATE_CACHE=cache)
    # Installed packages have .pyc files (pip compiles them at install time); a sandbox that sets
    # PYTHONDONTWRITEBYTECODE would make every run recompile the validator from source, which no user sees.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    helm_env = dict(
        env, HELM_CACHE_HOME=cache + "/h", HELM_CONFIG_HOME=cache + "/h", HELM_DATA_HOME=cache + "/h"
    )
    validate = [*_validator(), values]
    lint = [helm, "lint", chart, "-f", values]
    py = sys.executable
    commands = {
        "aifactory-validate": (validate, env),
        "helm lint (v4)": (lint, helm_env),
        "python -c pass": ([py, "-c", "pass"], env),
        "python -c 'import yaml, jsonschema'": ([py, "-c", "import yaml, jsonschema"], env),
        "python -c 'import click'": ([py, "-c", "import click"], env),
    }
    if args.baseline:
        module = [py, "-P", "-m", "validator", values]  # -P: no cwd on sys.path, PYTHONPATH decides
        commands["python -m validator (this tree)"] = (module, dict(env, PYTHONPATH=str(ROOT)))
        base_env = dict(env, PYTHONPATH=str(Path(args.baseline).resolve()))
        commands["python -m validator (baseline)"] = (module, base_env)
    try:
        first_run = _time(validate, env)  # cache miss: compiles the schema predicate and stores it
        for cmd, cmd_env in commands.values():  # warm-up: page cache, .pyc files
            _time(cmd, cmd_env)
        samples: dict[str, list[float]] = {name: [] for name in commands}
        cpu: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(args.runs):
            for name, (cmd, cmd_env) in commands.items():
                wall, used = _run(cmd, cmd_env)
                samples[name].append(wall)
                cpu[name].append(used)
        imports = _importtime(validate, env)
    finally:
        shutil.rmtree(cache, ignore_errors=True)

    med = {name: statistics.median(xs) for name, xs in samples.items()}
    ratio = med["aifactory-validate"] / med["helm lint (v4)"]
    print(f"cold start, median of {args.runs} whole-process runs each ({values}, {os.cpu_count()} CPUs):")
    for name, xs in samples.items():
        print(
            f"  {name:<38} median {med[name]:6.1f} ms   min {min(xs):6.1f}   max {max(xs):6.1f}"
            f"   CPU median {statistics.median(cpu[name]):6.1f} ms"
        )
    print(f"  aifactory-validate first run (schema cache miss): {first_run:6.1f} ms")
    print(
        f"  ratio aifactory-validate / helm lint = {ratio:.2f}  (goal <= 1.00; "
        f"bar: median < {BAR_MS:.0f} ms: {'met' if med['aifactory-validate'] < BAR_MS else 'NOT met'})"
    )
    cpu_ratio = statistics.median(cpu["aifactory-validate"]) / statistics.median(cpu["helm lint (v4)"])
    print(f"  CPU-time ratio aifactory-validate / helm lint = {cpu_ratio:.2f}")
    if args.baseline:
        this, base = med["python -m validator (this tree)"], med["python -m validator (baseline)"]
        lint = med["helm lint (v4)"]
        print(f"  this tree / baseline = {this / base:.2f}; baseline / helm lint = {base / lint:.2f}")
    print("  slowest imports of one validator run (python -X importtime, cumulative):")
    print("\n".join(imports))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
