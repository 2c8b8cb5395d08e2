"""Every tests/scripts/NAME case replayed with no network: the records and state it must give
(see script_case.py; `make script-case` adds one)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import script_case  # noqa: E402

BINARY = Path(os.environ.get("SOURCE_LUA_BINARY") or script_case.REPO / "build" / "source-lua").absolute()
CASES = sorted(p.name for p in HERE.iterdir() if (p / "case.json").exists())


@pytest.mark.parametrize("name", CASES)
def test_the_case_replays_to_its_records_and_state(name):
    records, states, proc = script_case.replay(BINARY, HERE / name)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    want_records, want_states = script_case.expected(HERE / name)
    assert len(records) == len(want_records)
    key = script_case.canonical
    assert sorted(map(key, records)) == sorted(map(key, want_records))
    assert states == want_states


def test_there_are_cases():
    assert CASES, "tests/scripts holds no case"
