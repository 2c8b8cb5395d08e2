"""The libFuzzer targets in `make test`: each replays its seed corpus and its regressions
(`make -f tests/fuzz/fuzz.mk fuzz-replay-<name>`). A crash, a sanitizer report or a broken
property fails the test. Fuzzing itself is `make fuzz` (a short run of each: `make fuzz-smoke`).
Skipped when clang is not installed.
"""
import os
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FUZZ_MK = os.path.join("tests", "fuzz", "fuzz.mk")
NAMES = ["state", "catalog", "config", "date", "json", "records"]
SANITIZER_MARKERS = ["ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error"]

# One xdist worker for the whole module: the build fixture is per worker, and two workers
# running `make fuzz-build` at once would relink a binary while the other executes it.
pytestmark = pytest.mark.xdist_group("fuzz")


def make(goal, timeout, jobs=1):
    # MAKEFLAGS from an enclosing make (a jobserver, -n) must not leak into these runs.
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    return subprocess.run(
        ["make", "--no-print-directory", f"-j{jobs}", "-f", FUZZ_MK, goal],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout,
    )


@pytest.fixture(scope="session")
def fuzz_build():
    if shutil.which("clang") is None:
        pytest.skip("clang is not installed (apt-get install clang libclang-rt-14-dev)")
    proc = make("fuzz-build", timeout=300, jobs=os.cpu_count() or 1)
    assert proc.returncode == 0, f"fuzz-build failed:\n{proc.stdout}\n{proc.stderr}"


@pytest.mark.parametrize("name", NAMES)
def test_fuzz_corpus_replays(fuzz_build, name):
    proc = make(f"fuzz-replay-{name}", timeout=120)
    output = proc.stdout + proc.stderr
    tail = output[-6000:]
    for marker in SANITIZER_MARKERS:
        assert marker not in output, f"fuzz_{name}: {marker}\n{tail}"
    assert proc.returncode == 0, f"fuzz_{name} exited {proc.returncode}\n{tail}"
