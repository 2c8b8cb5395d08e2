"""Every stdout line of every connector run is an AirbyteMessage of the official protocol schema.

tests/airbyte_protocol.yaml is the protocol's own schema (provenance in
tests/airbyte_protocol.SOURCE.txt); each line is validated as `#/definitions/AirbyteMessage`
with its $refs resolved in the whole document. A line that is not JSON fails.

The per-command tests reuse the runs the other tests make (identical invocations are run
once); `test_every_run_conforms` runs last and checks every invocation of the session,
the resumed reads and the invalid-catalog read included.
"""

from __future__ import annotations

import pytest

from .connector import Run
from .messages import with_sync_mode
from .schema_tools import protocol_violations

MAX_SHOWN = 15


def run_violations(run: Run) -> list[str]:
    problems = [f"line {number}: {why}: {line[:200]!r}" for number, line, why in run.bad_lines]
    for index, message in enumerate(run.messages):
        problems += [f"message {index} ({message.get('type')}): {v}" for v in protocol_violations(message)]
    return problems


def assert_conforms(run: Run) -> None:
    problems = run_violations(run)
    shown = "\n".join(problems[:MAX_SHOWN]) + (f"\n... {len(problems) - MAX_SHOWN} more" if len(problems) > MAX_SHOWN else "")
    assert not problems, f"$ {run.command}\noutput breaks the Airbyte protocol:\n{shown}"
    assert run.messages, f"$ {run.command}\nprinted no message at all\n{run.describe()}"


class TestProtocol:
    @pytest.mark.cases("spec")
    def test_spec_messages_conform(self, inputs, runner):
        assert_conforms(runner.spec())

    @pytest.mark.cases("connection")
    def test_check_messages_conform(self, inputs, runner, connector_config):
        assert_conforms(runner.check(connector_config))

    @pytest.mark.cases("discovery")
    def test_discover_messages_conform(self, inputs, runner, connector_config):
        assert_conforms(runner.discover(connector_config))

    @pytest.mark.cases("basic_read")
    def test_read_messages_conform(self, inputs, runner, connector_config, configured_catalog):
        assert_conforms(runner.read(connector_config, configured_catalog, cache=True))

    @pytest.mark.cases("incremental")
    def test_incremental_read_messages_conform(self, inputs, runner, connector_config, configured_catalog):
        catalog = with_sync_mode(configured_catalog, "incremental")
        if not catalog["streams"]:
            pytest.skip("no stream of the catalog supports incremental")
        assert_conforms(runner.read(connector_config, catalog, cache=True))

    @pytest.mark.run_last
    def test_every_run_conforms(self, runner):
        if not runner.history:
            pytest.skip("no connector run in this session")
        failures = []
        for run in runner.history:
            problems = run_violations(run)
            if problems:
                failures.append(f"$ {run.command}\n  " + "\n  ".join(problems[:5]))
        assert not failures, f"{len(failures)} of {len(runner.history)} runs break the protocol:\n" + "\n".join(failures[:10])
