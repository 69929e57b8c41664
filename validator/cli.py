"""`aifactory-validate`: command line, file I/O and exit codes (the only module that does I/O).

Exit codes: 0 valid (warnings allowed), 1 invalid (or any warning under --strict), 2 usage error
(unknown option, missing file, bad --set, no chart), 3 internal error (a bug: please report it).
Heavy modules (jsonschema, kubernetes, kubernetes_validate) load only on the paths that need them.
"""

from __future__ import annotations

import os
import sys

EXIT_OK, EXIT_INVALID, EXIT_USAGE, EXIT_INTERNAL = 0, 1, 2, 3
PROG = "aifactory-validate"

DESCRIPTION = """\
Validate AIFactory chart values before `helm install`, as a CI lint gate or pre-commit hook.

Merges like Helm (chart defaults, each VALUES_FILE in order, then --set/--set-string), checks the result
against the chart's own values.schema.json, then runs the chart's render-time refusals and the
multi-replica rules Helm cannot see (Redis, HPA, ingress affinity, PDB). Every finding names the values
path, the file:line:column it was written at, and the fix."""

EPILOG = """\
exit codes: 0 valid (warnings allowed), 1 invalid or warnings under --strict, 2 usage error,
3 internal error.

examples:
  aifactory-validate values.yaml
  aifactory-validate -f base.yaml -f prod.yaml --set replicaCount=3 --strict
  aifactory-validate values.yaml --format github        # annotations in a GitHub Actions job
  aifactory-validate values.yaml --render               # plus helm template + Kubernetes schemas
  aifactory-validate --cluster --release aifactory -n aifactory   # live smoke check
  aifactory-validate --list-rules

rules, output shapes and CI snippets: docs/validator.md"""


class UsageError(Exception):
    """Bad invocation: printed as one line, exit code 2."""


def _parser():
    import argparse

    class Parser(argparse.ArgumentParser):
        def error(self, message: str) -> None:  # type: ignore[override]
            raise UsageError(message)

    def formatter(prog: str) -> argparse.HelpFormatter:
        # argparse sizes help with `shutil` (~2 ms of import on every run); ask the terminal directly.
        try:
            width = int(os.environ.get("COLUMNS") or os.get_terminal_size(sys.__stdout__.fileno()).columns)
        except (OSError, ValueError, AttributeError):
            width = 100
        return argparse.RawDescriptionHelpFormatter(prog, width=max(width - 2, 40))

    parser = Parser(prog=PROG, description=DESCRIPTION, epilog=EPILOG, formatter_class=formatter)
    parser.add_argument("files", nargs="*", metavar="VALUES_FILE", help="values files, merged in order")
    parser.add_argument(
        "-f", "--values", action="append", default=[], metavar="FILE", help="a values file (like helm -f)"
    )
    parser.add_argument(
        "--set", action="append", default=[], metavar="EXPR", help="Helm --set (a.b=1, l={x,y}, a[0].b=1)"
    )
    parser.add_argument(
        "--set-string",
        action="append",
        default=[],
        metavar="EXPR",
        help="Helm --set-string (values stay strings)",
    )
    parser.add_argument(
        "--chart", metavar="DIR", help="chart to validate against (default: the shipped chart)"
    )
    parser.add_argument("--strict", action="store_true", help="treat warnings as errors (exit 1)")
    parser.add_argument(
        "--each",
        action="store_true",
        help="validate every file on its own (chart defaults + that file), e.g. from pre-commit",
    )
    parser.add_argument(
        "--format", choices=("text", "json", "github", "sarif"), default="text", help="output format (text)"
    )
    parser.add_argument(
        "--render",
        action="store_true",
        help="also run `helm template` and check every object against the Kubernetes OpenAPI schema",
    )
    parser.add_argument(
        "--helm", metavar="PATH", help="helm binary for --render (default: $AIFACTORY_HELM4, PATH)"
    )
    parser.add_argument(
        "--kube-version", metavar="X.Y", help="Kubernetes version for --render (default: newest)"
    )
    parser.add_argument("--cluster", action="store_true", help="live smoke check of a running release")
    parser.add_argument(
        "--release", default="aifactory", help="release name for --cluster/--render (aifactory)"
    )
    parser.add_argument("-n", "--namespace", help="namespace for --cluster (default: the kubeconfig's)")
    parser.add_argument(
        "--kubeconfig", help="kubeconfig for --cluster (default: $KUBECONFIG or ~/.kube/config)"
    )
    parser.add_argument("--context", help="kubeconfig context for --cluster")
    parser.add_argument("--list-rules", action="store_true", help="print every rule id, severity and summary")
    parser.add_argument("--version", action="store_true", help="print the version")
    return parser


def _read(path: str) -> bytes:
    from validator.loader import MAX_BYTES

    if path == "-":
        return sys.stdin.buffer.read(MAX_BYTES + 1)
    if not os.path.exists(path):
        raise UsageError(f"values file {path} does not exist")
    if os.path.isdir(path):
        raise UsageError(f"{path} is a directory; pass a values file")
    try:
        with open(path, "rb") as fh:
            return fh.read(MAX_BYTES + 1)  # bounded: a 50 MB file is refused, never slurped
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None


def _out(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def _list_rules() -> int:
    from validator.rules import RULES

    width = max(len(r.id) for r in RULES)
    for r in RULES:
        _out(f"{r.id:<{width}}  {r.severity:<7}  {r.summary}\n")
    return EXIT_OK


def _emit(findings: list, files: list[str], args: object, chart_dir: str) -> None:
    from validator import report

    fmt = args.format  # type: ignore[attr-defined]
    strict = args.strict  # type: ignore[attr-defined]
    if fmt == "json":
        _out(report.as_json(findings, files, strict, chart_dir))
    elif fmt == "github":
        _out(report.github(findings))
        _out(report.text([], files, strict).replace("OK:", "aifactory-validate OK:") if not findings else "")
    elif fmt == "sarif":
        from validator.rules import RULES

        _out(report.sarif(findings, {r.id: r.summary for r in RULES}))
    else:
        _out(report.text(findings, files, strict))


def run(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    if args.version:
        from aifactory import __version__

        _out(f"{PROG} {__version__}\n")
        return EXIT_OK
    if args.list_rules:
        return _list_rules()
    if args.cluster:
        from validator.cluster import smoke_check

        return smoke_check(args, _out)

    from validator import pipeline
    from validator.chart import Chart, ChartError
    from validator.setvals import SetError

    names = [*args.values, *args.files]
    try:
        chart = Chart(args.chart)
    except ChartError as exc:
        raise UsageError(str(exc)) from None
    files = [("<stdin>" if name == "-" else name, _read(name)) for name in names]
    sets = [(e, False) for e in args.set] + [(e, True) for e in args.set_string]
    groups = [[f] for f in files] if args.each and files else [files]
    findings = []
    try:
        for group in groups:
            findings += pipeline.run(chart, group, sets).findings
    except SetError as exc:
        raise UsageError(f"bad --set: {exc}") from None
    if args.render and args.each and len(files) > 1:
        raise UsageError("--render renders one release: use it without --each (or with one file)")
    if args.render and not any(f.severity == "error" for f in findings):
        from validator.render import RenderUsageError, render_and_check

        try:
            findings = findings + render_and_check(args, chart, names)
        except RenderUsageError as exc:
            raise UsageError(str(exc)) from None
    if args.strict:
        pipeline.apply_strict(findings)
    _emit(findings, names, args, chart.directory)
    return EXIT_INVALID if any(f.severity == "error" for f in findings) else EXIT_OK


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point; never lets a traceback reach the user."""
    try:
        return run(sys.argv[1:] if argv is None else argv)
    except UsageError as exc:
        sys.stderr.write(f"{PROG}: error: {exc}\n(see `{PROG} --help`)\n")
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return EXIT_OK
    except SystemExit as exc:  # argparse --help
        return exc.code if isinstance(exc.code, int) else EXIT_OK
    except RecursionError:
        sys.stderr.write(f"{PROG}: error: input nests too deeply to validate\n")
        return EXIT_INVALID
    except MemoryError:
        sys.stderr.write(f"{PROG}: error: out of memory while reading the values\n")
        return EXIT_INVALID
    except Exception as exc:  # a bug: one line, never a traceback
        first = (str(exc).strip().splitlines() or [""])[0]
        sys.stderr.write(f"{PROG}: internal error: {type(exc).__name__}: {first} (please report this)\n")
        return EXIT_INTERNAL
