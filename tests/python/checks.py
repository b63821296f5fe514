"""What the Python SDK scripts share: every check runs, failures are printed, and the exit status
says whether any failed."""

import sys

failures = []


def check(condition, what):
    if not condition:
        failures.append(what)
        print(f"FAIL: {what}", file=sys.stderr)


def finish(name):
    """The exit status for `name`: 1 if any check failed."""
    if failures:
        print(f"{len(failures)} check(s) failed", file=sys.stderr)
        return 1
    print(f"{name}: all checks passed")
    return 0
