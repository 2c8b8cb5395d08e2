"""Our Connector Acceptance Tests: options, fixtures, and parametrization from the YAML.

Run from the repo root:

    /usr/bin/python3 -m pytest tests/acceptance -v
    /usr/bin/python3 -m pytest tests/acceptance -v --connector "docker run --rm -i --network host img"

Each test class names its YAML section in `config_key` (as CAT does); a test taking the
`inputs` fixture runs once per item of that section. `@pytest.mark.cases("x")` picks
another section for a single test.
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path

import pytest

from .acceptance_config import SECTIONS, AcceptanceConfig, Case, load_acceptance_config
from .connector import REPO_ROOT, ConnectorRunner, PolygonServer, connector_command, rewrite_base_url
from .messages import configured_catalog as build_configured_catalog
from .messages import discovered_streams


def pytest_addoption(parser):
    group = parser.getgroup("acceptance", "connector acceptance tests")
    group.addoption(
        "--connector",
        default=os.environ.get("SOURCE_LUA_BINARY") or "build/source-lua",
        help="command that runs the connector; split with shlex, Airbyte args appended "
        "(relative program paths are taken from the repo root; default: $SOURCE_LUA_BINARY, "
        "else build/source-lua)",
    )
    group.addoption(
        "--script",
        default=None,
        help="Lua script passed to the connector as `--script FILE` before the Airbyte command",
    )
    group.addoption(
        "--acceptance-config",
        default=str(REPO_ROOT / "acceptance-test-config.yml"),
        help="the acceptance-test-config.yml to drive the suite (default: the repo's)",
    )
    group.addoption(
        "--polygon-server",
        default=str(REPO_ROOT / "tests/server/polygon_server.py"),
        help="the local Polygon-compatible server script",
    )


def pytest_configure(config):
    config.addinivalue_line("markers", "cases(section): parametrize `inputs` with the cases of a YAML section")
    config.addinivalue_line("markers", "run_last: run after every other acceptance test")
    config.addinivalue_line("markers", "xdist_group(name): tests pytest-xdist runs on one worker, in order")


@functools.lru_cache(maxsize=None)
def _load_config(path: str) -> AcceptanceConfig:
    return load_acceptance_config(Path(path).resolve())


def pytest_generate_tests(metafunc):
    if "inputs" not in metafunc.fixturenames:
        return
    marker = metafunc.definition.get_closest_marker("cases")
    section = marker.args[0] if marker else getattr(metafunc.cls, "config_key", None)
    if section is None:
        raise pytest.UsageError(f"{metafunc.definition.nodeid}: no YAML section (config_key or @cases)")
    config = _load_config(metafunc.config.getoption("--acceptance-config"))
    cases = config.cases(section)
    if not cases:
        reason = config.bypass_reasons.get(section) or f"no `{section}` cases in {config.path.name}"
        skip = pytest.mark.skip(reason=reason)
        params = [pytest.param(None, id="no-cases", marks=skip)]
    else:
        params = []
        for case in cases:
            marks = [pytest.mark.skip(reason=case.bypass_reason)] if case.bypass_reason else []
            params.append(pytest.param(case, id=case.id, marks=marks))
    metafunc.parametrize("inputs", params)


# CAT's order: spec, connection, discovery, basic read, full refresh, incremental.
MODULE_ORDER = [f"test_{name}" for name in SECTIONS] + ["test_protocol", "test_selftest"]


def pytest_collection_modifyitems(config, items):
    """Order this suite's tests as CAT does, `run_last` ones at its end; leave other suites alone."""
    here = Path(__file__).resolve().parent
    slots = [i for i, item in enumerate(items) if here in Path(str(item.fspath)).resolve().parents]

    def position(item):
        module = Path(str(item.fspath)).stem
        rank = MODULE_ORDER.index(module) if module in MODULE_ORDER else len(MODULE_ORDER)
        return (bool(item.get_closest_marker("run_last")), rank)

    ordered = sorted((items[i] for i in slots), key=position)  # stable within a module
    for slot, item in zip(slots, ordered):
        items[slot] = item
        # One worker runs the whole suite in this order when pytest-xdist spreads the others:
        # the run_last checks read every run the session made.
        item.add_marker(pytest.mark.xdist_group("acceptance"))


# -- session fixtures ------------------------------------------------------------------------
@pytest.fixture(scope="session")
def acceptance_config(pytestconfig) -> AcceptanceConfig:
    return _load_config(pytestconfig.getoption("--acceptance-config"))


@pytest.fixture(scope="session")
def runner(pytestconfig, tmp_path_factory) -> ConnectorRunner:
    command = connector_command(pytestconfig.getoption("--connector"), pytestconfig.getoption("--script"))
    return ConnectorRunner(command, tmp_path_factory.mktemp("connector"))


@pytest.fixture(scope="session")
def polygon_server(pytestconfig, tmp_path_factory):
    server = PolygonServer(Path(pytestconfig.getoption("--polygon-server")), tmp_path_factory.mktemp("server"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def local_config(polygon_server, tmp_path_factory):
    """local_config(path) -> a temporary copy of a config file aimed at the local server."""
    workdir = tmp_path_factory.mktemp("configs")
    copies: dict[Path, Path] = {}

    def make(path: Path) -> Path:
        if path not in copies:
            config = json.loads(Path(path).read_text(encoding="utf-8"))
            target = workdir / f"{len(copies):02d}-{Path(path).name}"
            target.write_text(json.dumps(rewrite_base_url(config, polygon_server.url), indent=2), encoding="utf-8")
            copies[path] = target
        return copies[path]

    return make


# -- per-case fixtures ----------------------------------------------------------------------
@pytest.fixture
def connector_config(inputs: Case, local_config) -> Path:
    if inputs.config_path is None:
        pytest.fail(f"{inputs.section} case {inputs.index} has no config_path")
    return local_config(inputs.config_path)


@pytest.fixture
def spec_message(runner) -> dict:
    """The single SPEC message's `spec` (the run is shared by every spec test)."""
    run = runner.spec()
    specs = run.of_type("SPEC")
    if len(specs) != 1:
        pytest.fail(f"spec should print exactly one SPEC message, got {len(specs)}\n{run.describe()}")
    return specs[0]["spec"]


@pytest.fixture
def discovered_catalog(runner, connector_config) -> dict[str, dict]:
    run = runner.discover(connector_config)
    catalogs = run.of_type("CATALOG")
    if len(catalogs) != 1:
        pytest.fail(f"discover should print exactly one CATALOG message, got {len(catalogs)}\n{run.describe()}")
    return discovered_streams(catalogs[0])


@pytest.fixture
def configured_catalog(inputs: Case, discovered_catalog) -> dict:
    return build_configured_catalog(inputs.configured_catalog_path, discovered_catalog, inputs.empty_streams)
