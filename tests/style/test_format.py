"""Every C file of the project is in the house style (.clang-format): `make format` applies it,
`make format-check` and this suite check it."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# The version Debian 12 ships: another version may lay the same code out differently.
CLANG_FORMAT = "clang-format-14"
SOURCES = sorted(p for pattern in ("runtime/*.[ch]", "tests/**/*.[ch]") for p in REPO.glob(pattern))


def test_the_sources_are_found():
    assert len(SOURCES) > 40 and REPO / "runtime" / "main.c" in SOURCES


def test_every_file_is_formatted():
    if shutil.which(CLANG_FORMAT) is None:
        pytest.fail(f"{CLANG_FORMAT} is missing: run `make deps` (package clang-format-14)")
    # One process for every file: a process a file costs more than the formatting.
    proc = subprocess.run([CLANG_FORMAT, "--dry-run", "--Werror", *map(str, SOURCES)], cwd=REPO,
                          capture_output=True, text=True)
    unformatted = sorted({line.split(":", 1)[0] for line in proc.stderr.splitlines()
                          if ": error:" in line})
    assert proc.returncode == 0, (f"not in the house style (`make format` fixes them): "
                                  f"{', '.join(unformatted)}\n{proc.stderr[:3000]}")
