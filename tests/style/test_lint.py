"""luacheck (Debian lua-check) finds nothing in scripts/ with the sandbox's globals declared
(.luacheckrc): `make lint` runs the same."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def luacheck(*args):
    if shutil.which("luacheck") is None:
        pytest.fail("luacheck is missing: run `make deps` (package lua-check)")
    return subprocess.run(["luacheck", "--no-color", *args], cwd=REPO, capture_output=True, text=True)


def test_the_scripts_pass_luacheck():
    proc = luacheck("scripts/")
    assert proc.returncode == 0, proc.stdout[-4000:]


def test_the_sandbox_globals_are_declared(tmp_path):
    """What the sandbox lacks is reported: a misspelt module function and a library it removes."""
    script = tmp_path / "bad.lua"
    script.write_text('local s = http.gett("x")\nlocal f = io.open("x")\nreturn os.getenv("HOME"), s, f\n')
    proc = luacheck(str(script))
    assert proc.returncode != 0
    assert "accessing undefined field 'gett' of global 'http'" in proc.stdout
    assert "accessing undefined variable 'io'" in proc.stdout
    assert "accessing undefined field 'getenv' of global 'os'" in proc.stdout
