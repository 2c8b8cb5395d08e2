#!/usr/bin/env python3
"""Runs every test suite of source-lua and ends with one line: `N passed, N failed`.

Suites: the C unit tests (a binary that prints its own `N passed, N failed`), then pytest over
the local server's tests, the bench's page server, the end-to-end tests and the acceptance suite.
The binary under test reaches the Python suites through $SOURCE_LUA_BINARY, so the same suites run
against the normal, the sanitizer and the valgrind builds. With pytest-xdist installed (make deps
installs it) pytest runs a worker a core.
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PYTHON = "/usr/bin/python3"
SUITES = ["tests/server", "tests/bench", "tests/e2e", "tests/acceptance"]


def run_unit(binary):
    if not binary:
        return 0, 0
    proc = subprocess.run([binary], cwd=ROOT, capture_output=True, text=True)
    sys.stdout.write(proc.stdout)
    sys.stdout.write(proc.stderr)
    match = re.search(r"^(\d+) passed, (\d+) failed$", proc.stdout, re.M)
    if not match:
        print(f"unit tests: no summary line (exit {proc.returncode})")
        return 0, 1
    passed, failed = int(match.group(1)), int(match.group(2))
    if proc.returncode != 0 and failed == 0:
        failed = 1
    return passed, failed


def count_junit(path):
    passed = failed = skipped = 0
    for case in ET.parse(path).getroot().iter("testcase"):
        outcomes = {child.tag for child in case}
        if outcomes & {"failure", "error"}:
            failed += 1
        elif "skipped" in outcomes:
            skipped += 1
        else:
            passed += 1
    return passed, failed, skipped


def parallel(extra):
    """pytest-xdist's options for two workers a core, unless the caller chose (-n, -p no:xdist) or
    xdist is missing: many tests spend their time waiting (retry waits, timeouts, servers), so a
    worker a core left the cores idle (2 cores: 83 s with 2 workers, 67 s with 4). Tests are
    handed out one by one; a suite that must run in one session (the acceptance suite) marks
    itself with xdist_group."""
    if any(a == "-n" or a.startswith("-n") or "xdist" in a for a in extra):
        return []
    try:
        import xdist  # noqa: F401
    except ImportError:
        return []
    return ["-n", str(2 * (os.cpu_count() or 1)), "--dist", "loadgroup"]


def run_pytest(suites, extra):
    with tempfile.TemporaryDirectory() as tmp:
        junit = os.path.join(tmp, "junit.xml")
        cmd = [PYTHON, "-m", "pytest", "-v", "-p", "no:cacheprovider", f"--junitxml={junit}", *parallel(extra),
               *suites, *extra]
        env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
        proc = subprocess.run(cmd, cwd=ROOT, env=env)
        if not os.path.exists(junit):
            print(f"pytest did not run (exit {proc.returncode})")
            return 0, 1, 0
        passed, failed, skipped = count_junit(junit)
        if proc.returncode not in (0, 5) and failed == 0:
            failed = 1
        return passed, failed, skipped


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--binary", default="build/source-lua")
    parser.add_argument("--unit", default=None, help="the C unit-test binary")
    parser.add_argument("--suite", action="append", help="only these pytest paths")
    parser.add_argument("pytest_args", nargs="*")
    args = parser.parse_args()
    os.environ["SOURCE_LUA_BINARY"] = os.path.abspath(os.path.join(ROOT, args.binary))
    unit_passed, unit_failed = run_unit(args.unit)
    passed, failed, skipped = run_pytest(args.suite or SUITES, args.pytest_args)
    passed += unit_passed
    failed += unit_failed
    line = f"{passed} passed, {failed} failed"
    if skipped:
        line += f", {skipped} skipped"
    print(line)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
