"""Fixtures of the property tests: the binary ($SOURCE_LUA_BINARY, default build/source-lua), one
threaded HTTP server for the session (tests/property/server.py), and where each scenario's files
go ($PROPERTY_ARTIFACTS, else pytest's tmp_path): its script, config, catalog, data, the state
given to each run, and report.txt when the property fails."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from .harness import BINARY, TOTALS
from .server import PropertyServer


@pytest.fixture(scope="session", autouse=True)
def _binary_exists():
    if not BINARY.exists():
        pytest.fail(f"{BINARY} does not exist: run `make` (or set SOURCE_LUA_BINARY)")


@pytest.fixture(scope="session")
def server():
    started = PropertyServer()
    yield started
    started.stop()


@pytest.fixture
def workdir(tmp_path, request) -> Path:
    root = os.environ.get("PROPERTY_ARTIFACTS")
    if not root:
        return tmp_path
    name = "".join(c if c.isalnum() or c in "-_." else "_" for c in request.node.name)
    path = Path(root) / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def pytest_terminal_summary(terminalreporter):
    if TOTALS:
        t = TOTALS
        terminalreporter.write_line(
            f"exactly-once: {t['scenarios']} scenarios checked, {t['runs']} connector runs ({t['failed_runs']} "
            f"ended by a fault, {t['crashes']} cut at a STATE), {t['requests']} requests, {t['records']} records "
            f"expected, {t['repeats']} repeats allowed (streams without a primary key); binary {BINARY}")
