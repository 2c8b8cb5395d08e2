"""The fuzz targets in `make test`: each replays its seed corpus and its regressions once, linked
with tests/fuzz/replay_main.c and the objects of the build under test (so the sanitizer build's
suite replays them under ASan and UBSan). A crash, a sanitizer report or a broken property fails
the test. Fuzzing itself is `make fuzz` (a short run of each: `make fuzz-smoke`).
"""
import os
import subprocess
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
NAMES = ["state", "catalog", "config", "date", "json", "records"]
SANITIZER_MARKERS = ["ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error"]
BUILD = Path(os.environ.get("SOURCE_LUA_BINARY", HERE.parents[1] / "build" / "source-lua")).resolve().parent


def inputs(name):
    found = []
    for directory in (HERE / "corpus" / f"fuzz_{name}", HERE / "regressions" / f"fuzz_{name}"):
        if directory.is_dir():
            found += [p for p in directory.rglob("*")
                      if p.is_file() and not p.name.startswith(".") and p.suffix != ".md"]
    return sorted(found)


@pytest.mark.parametrize("name", NAMES)
def test_fuzz_corpus_replays(name):
    binary = BUILD / "fuzz-replay" / f"fuzz_{name}"
    if not binary.exists():
        pytest.fail(f"{binary} does not exist: run `make {binary.relative_to(HERE.parents[1])}`")
    files = inputs(name)
    assert files, f"fuzz_{name} has no corpus"
    proc = subprocess.run([str(binary), *map(str, files)], capture_output=True, text=True, timeout=120)
    output = proc.stdout + proc.stderr
    tail = output[-6000:]
    for marker in SANITIZER_MARKERS:
        assert marker not in output, f"fuzz_{name}: {marker}\n{tail}"
    assert proc.returncode == 0, f"fuzz_{name} exited {proc.returncode}\n{tail}"
    assert f"{len(files)} inputs replayed" in proc.stdout, tail
