"""`aifactory-validate`: command line (click), file I/O and exit codes (the only module that does I/O).

Exit codes live in validator.exitcodes. Heavy modules (jsonschema, kubernetes, kubernetes_validate) load
only on the paths that need them; click itself is the one fixed cost of every run.
"""

from __future__ import annotations

import os
import sys

import click

from validator.exitcodes import EXIT_INTERNAL, EXIT_INVALID, EXIT_OK, EXIT_USAGE, PROG, UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: the modules themselves load on the paths that need them
    from validator.chart import Chart
    from validator.model import Finding
    from validator.render import RenderOptions

FORMATS = ("text", "json", "github", "sarif")

DESCRIPTION = """\
Validate AIFactory chart values before `helm install`, as a CI lint gate or pre-commit hook.

Merges like Helm (chart defaults, each VALUES_FILE in order, then --set/--set-string), checks the result
against the chart's own values.schema.json, then runs the chart's render-time refusals and the
multi-replica rules Helm cannot see (Redis, HPA, ingress affinity, PDB). Every finding names the values
path, the file:line:column it was written at, and the fix."""

EPILOG = """\
\b
exit codes: 0 valid (warnings allowed), 1 invalid or warnings under --strict, 2 usage error,
3 internal error.

\b
examples:
  aifactory-validate values.yaml
  aifactory-validate -f base.yaml -f prod.yaml --set replicaCount=3 --strict
  aifactory-validate values.yaml --format github        # annotations in a GitHub Actions job
  aifactory-validate values.yaml --render               # plus helm template + Kubernetes schemas
  aifactory-validate --cluster --release aifactory -n aifactory   # live smoke check
  aifactory-validate --list-rules

\b
shell completion: eval "$(_AIFACTORY_VALIDATE_COMPLETE=bash_source aifactory-validate)"
rules, output shapes and CI snippets: docs/validator.md"""


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


def _values_findings(
    chart: Chart, names: list[str], sets: list[tuple[str, bool]], each: bool
) -> list[Finding]:
    """The pipeline over the files (merged as one release, or one by one with --each)."""
    from validator import pipeline
    from validator.setvals import SetError

    files = [("<stdin>" if name == "-" else name, _read(name)) for name in names]
    groups = [[f] for f in files] if each and files else [files]
    findings: list[Finding] = []
    try:
        for group in groups:
            findings += pipeline.run(chart, group, sets).findings
    except SetError as exc:
        raise UsageError(f"bad --set: {exc}") from None
    return findings


def _cluster(
    release: str, namespace: str | None, kubeconfig: str | None, context: str | None
) -> tuple[str, list[str], list[Finding]]:
    from validator.cluster import ClusterError, ClusterOptions, smoke_check

    options = ClusterOptions(release=release, namespace=namespace, kubeconfig=kubeconfig, context=context)
    try:
        return smoke_check(options)
    except ClusterError as exc:
        raise UsageError(str(exc)) from None


def _render(options: RenderOptions, chart_dir: str) -> list[Finding]:
    from validator.render import RenderUsageError, render_and_check

    try:
        return render_and_check(options, chart_dir)
    except RenderUsageError as exc:
        raise UsageError(str(exc)) from None


@click.command(
    PROG,
    help=DESCRIPTION,
    epilog=EPILOG,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110},
    no_args_is_help=False,
)
@click.argument("files", nargs=-1, metavar="[VALUES_FILE]...")
@click.option("-f", "--values", multiple=True, metavar="FILE", help="A values file (like helm -f).")
@click.option("--set", "sets", multiple=True, metavar="EXPR", help="Helm --set (a.b=1, l={x,y}, a[0].b=1).")
@click.option("--set-string", "set_strings", multiple=True, metavar="EXPR", help="Helm --set-string.")
@click.option("--chart", metavar="DIR", help="Chart to validate against (default: the shipped chart).")
@click.option("--strict", is_flag=True, help="Treat warnings as errors (exit 1).")
@click.option("--each", is_flag=True, help="Validate every file on its own (chart defaults + that file).")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="text", help="Output format (text).")
@click.option("--render", is_flag=True, help="Also run `helm template` and check the Kubernetes schemas.")
@click.option("--helm", metavar="PATH", help="helm binary for --render (default: $AIFACTORY_HELM4, PATH).")
@click.option("--kube-version", metavar="X.Y", help="Kubernetes version for --render (default: newest).")
@click.option("--cluster", is_flag=True, help="Live smoke check of a running release.")
@click.option(
    "--release", default="aifactory", metavar="NAME", help="Release for --cluster/--render (aifactory)."
)
@click.option("-n", "--namespace", metavar="NS", help="Namespace for --cluster (default: the kubeconfig's).")
@click.option("--kubeconfig", metavar="PATH", help="Kubeconfig for --cluster (default: $KUBECONFIG).")
@click.option("--context", metavar="NAME", help="Kubeconfig context for --cluster.")
@click.option("--list-rules", is_flag=True, help="Print every rule id, severity and summary.")
@click.option("--version", is_flag=True, help="Print the version.")
def command(
    files: tuple[str, ...],
    values: tuple[str, ...],
    sets: tuple[str, ...],
    set_strings: tuple[str, ...],
    chart: str | None,
    strict: bool,
    each: bool,
    fmt: str,
    render: bool,
    helm: str | None,
    kube_version: str | None,
    cluster: bool,
    release: str,
    namespace: str | None,
    kubeconfig: str | None,
    context: str | None,
    list_rules: bool,
    version: bool,
) -> int:
    """The whole run: gather findings (values, or a live release), apply --strict once, print, exit code."""
    if version:
        from aifactory.constants import VERSION

        _out(f"{PROG} {VERSION}\n")
        return EXIT_OK
    if list_rules:
        return _list_rules()
    from validator import report

    if cluster:
        what, facts, findings = _cluster(release, namespace, kubeconfig, context)
        subject, chart_dir = [what], ""
    else:
        from validator.chart import Chart, ChartError

        names = [*values, *files]
        try:
            loaded = Chart(chart)
        except ChartError as exc:
            raise UsageError(str(exc)) from None
        sets_all = [(e, False) for e in sets] + [(e, True) for e in set_strings]
        findings = _values_findings(loaded, names, sets_all, each)
        if render and each and len(names) > 1:
            raise UsageError("--render renders one release: use it without --each (or with one file)")
        if render and not any(f.severity == "error" for f in findings):
            from validator.render import RenderOptions

            options = RenderOptions(release, names, list(sets), list(set_strings), helm, kube_version)
            findings = findings + _render(options, loaded.directory)
        subject, facts, chart_dir = names, [], loaded.directory
    if strict:
        report.apply_strict(findings)
    result = report.Report(findings, subject, strict=strict, chart=chart_dir, facts=facts)
    _out(report.REPORTER_BY_NAME[fmt](result))
    return EXIT_OK if result.valid else EXIT_INVALID


def _usage_message(exc: click.UsageError) -> str:
    """click's message on one line; unknown options keep the wording the docs promise."""
    if isinstance(exc, click.NoSuchOption):
        hint = f" (did you mean {exc.possibilities[0]}?)" if exc.possibilities else ""
        return f"unrecognized arguments: {exc.option_name}{hint}"
    return " ".join(exc.format_message().split())


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point; never lets a traceback reach the user."""
    try:
        code: int = command.main(
            args=sys.argv[1:] if argv is None else argv, prog_name=PROG, standalone_mode=False
        )
        return code
    except UsageError as exc:
        message = str(exc)
    except click.UsageError as exc:
        message = _usage_message(exc)
    except click.exceptions.Abort:
        return 130
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return EXIT_OK
    except SystemExit as exc:  # shell completion exits after printing its script
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
    sys.stderr.write(f"{PROG}: error: {message}\n(see `{PROG} --help`)\n")
    return EXIT_USAGE
