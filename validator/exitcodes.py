"""Exit codes of `aifactory-validate` and the one error that maps to "usage" (stdlib only, no imports).

0 valid (warnings allowed), 1 invalid (or any warning under --strict), 2 usage error (unknown option,
missing file, bad --set, no chart, no helm for --render, unreachable cluster), 3 internal error (a bug).
"""

PROG = "aifactory-validate"
EXIT_OK, EXIT_INVALID, EXIT_USAGE, EXIT_INTERNAL = 0, 1, 2, 3


class UsageError(Exception):
    """Bad invocation: printed as one line on stderr, exit code 2."""
