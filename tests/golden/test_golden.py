"""Each golden case's transcript matches tests/golden/cases/<case>/transcript.txt (golden.py)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import golden  # noqa: E402

BINARY = Path(os.environ.get("SOURCE_LUA_BINARY") or golden.REPO / "build" / "source-lua").absolute()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with golden.PolygonServer(tmp_path_factory.mktemp("golden-server")) as server:
        yield server


@pytest.mark.parametrize("name", golden.case_names())
def test_transcript(server, name):
    diff = golden.compare(name, golden.run_case(name, BINARY, server))
    if diff is not None:
        pytest.fail(f"the transcript differs (`make golden` rewrites it; review with git diff):\n{diff}", pytrace=False)


def test_every_case_has_a_transcript():
    missing = [n for n in golden.case_names() if not (golden.CASES / n / golden.TRANSCRIPT).exists()]
    assert missing == [], "run `make golden` and review the new transcripts"
