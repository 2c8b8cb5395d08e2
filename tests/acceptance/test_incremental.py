"""Incremental reads and resuming from state: CAT's TestIncremental.

The first read (no state) is made once per case and shared. The state passed back to the
connector is the platform's list form: the `state` objects of the last STATE message of each
stream seen so far.
"""

from __future__ import annotations

import json

import pytest

from .messages import (
    primary_key,
    record_identity,
    records_by_stream,
    state_input,
    state_stream_name,
    stream_state_blob,
    with_sync_mode,
)
from .schema_tools import field_schema, has_path, record_validator, value_at

# CAT tests at most about ten checkpoints of a read (every n-th when there are more).
MAX_CHECKPOINTS_TESTED = 10


@pytest.fixture
def incremental_catalog(configured_catalog):
    catalog = with_sync_mode(configured_catalog, "incremental")
    if not catalog["streams"]:
        pytest.skip("no stream of the catalog supports incremental")
    return catalog


@pytest.fixture
def first_read(runner, connector_config, incremental_catalog):
    return runner.read(connector_config, incremental_catalog, cache=True)


@pytest.fixture
def cursor_paths(inputs, incremental_catalog) -> dict[str, list]:
    """Where each stream's cursor value sits in its state blob (CAT: the cursor's last part)."""
    overrides = inputs.cursor_paths
    return {c["stream"]["name"]: overrides.get(c["stream"]["name"], [c["cursor_field"][-1]]) for c in incremental_catalog["streams"]}


def _require_records_and_states(run):
    assert run.returncode == 0, f"read should exit 0\n{run.describe()}"
    assert run.records, f"the first read should produce at least one record\n{run.describe()}"
    assert run.states, f"the first read should produce at least one state\n{run.describe()}"


def _checkpoints(run) -> list[tuple[dict, list[dict]]]:
    """(state, records the read emitted after it) for every distinct STATE of a read."""
    result = []
    seen: set[str] = set()
    for position, message in enumerate(run.messages):
        if message.get("type") != "STATE":
            continue
        key = json.dumps(message["state"], sort_keys=True)
        if key in seen:
            continue
        seen.add(key)
        later = [m["record"] for m in run.messages[position + 1:] if m.get("type") == "RECORD"]
        result.append((message["state"], later))
    return result


def _comparable(a, b) -> bool:
    numbers = (int, float)
    return (isinstance(a, str) and isinstance(b, str)) or (isinstance(a, numbers) and isinstance(b, numbers))


class TestIncremental:
    config_key = "incremental"

    def test_first_read_gives_records_and_state(self, first_read):
        _require_records_and_states(first_read)

    def test_two_sequential_reads(self, runner, connector_config, incremental_catalog, first_read):
        """Resuming from the last state sends no record the first read already sent."""
        _require_records_and_states(first_read)
        state = state_input(first_read.states)
        assert state, f"the first read produced no STREAM state to resume from: {first_read.states[-1]}"
        second = runner.read(connector_config, incremental_catalog, state=state, cache=True)
        assert second.returncode == 0, f"the resumed read should exit 0\n{second.describe()}"

        keys = {c["stream"]["name"]: primary_key(c) for c in incremental_catalog["streams"]}
        sent = records_by_stream(first_read.records)
        for stream, records in records_by_stream(second.records).items():
            pk = keys.get(stream, [])
            already = {record_identity(r["data"], pk) for r in sent.get(stream, [])}
            repeated = sorted({record_identity(r["data"], pk) for r in records} & already)
            assert not repeated, (
                f"{stream}: resuming from the last state re-sent {len(repeated)} record(s) of the first read, "
                f"e.g. {repeated[:5]}\nstate: {json.dumps(state)}"
            )

    def test_state_cursor_covers_first_read(self, first_read, incremental_catalog, cursor_paths):
        """Every record of the first read is at or before the cursor value of the final state."""
        _require_records_and_states(first_read)
        final = {state_stream_name(s): stream_state_blob(s) for s in state_input(first_read.states)}
        errors = []
        for configured in incremental_catalog["streams"]:
            name = configured["stream"]["name"]
            if name not in final:
                errors.append(f"{name}: no STREAM state in the first read")
                continue
            state_value = value_at(final[name], cursor_paths[name])
            for record in records_by_stream(first_read.records).get(name, []):
                value = value_at(record["data"], configured["cursor_field"])
                if _comparable(value, state_value) and value > state_value:
                    errors.append(f"{name}: record cursor {value!r} is after the final state's {state_value!r}")
        assert not errors, "\n".join(errors[:10])

    def test_read_sequential_slices(self, runner, connector_config, incremental_catalog, first_read):
        """Resuming from each checkpoint gives at least the records the first read sent after it."""
        _require_records_and_states(first_read)
        checkpoints = _checkpoints(first_read)
        step = max(1, len(checkpoints) // MAX_CHECKPOINTS_TESTED)
        keys = {c["stream"]["name"]: primary_key(c) for c in incremental_catalog["streams"]}

        states_so_far: list[dict] = []
        for index, (state, expected_records) in enumerate(checkpoints):
            states_so_far.append(state)
            if len(checkpoints) >= MAX_CHECKPOINTS_TESTED and index % step != 0:
                continue
            resume_from = state_input(states_so_far)
            run = runner.read(connector_config, incremental_catalog, state=resume_from, cache=True)
            assert run.returncode == 0, f"read from checkpoint {index} should exit 0\n{run.describe()}"
            got = records_by_stream(run.records)
            for stream, records in records_by_stream(expected_records).items():
                pk = keys.get(stream, [])
                have = {record_identity(r["data"], pk) for r in got.get(stream, [])}
                missing = sorted({record_identity(r["data"], pk) for r in records} - have)
                assert not missing, (
                    f"{stream}: resuming from checkpoint {index} lost {len(missing)} record(s) the first read "
                    f"emitted after it, e.g. {missing[:5]}\nstate: {json.dumps(resume_from)}"
                )

    @pytest.fixture
    def future_state_run(self, inputs, runner, connector_config, incremental_catalog):
        if inputs.future_state_path is None:
            pytest.skip("no future_state_path in the YAML")
        state = json.loads(inputs.future_state_path.read_text(encoding="utf-8"))
        return runner.read(connector_config, incremental_catalog, state=state, cache=True)

    def test_state_with_abnormally_large_values(self, future_state_run):
        run = future_state_run
        assert run.returncode == 0, f"read should exit 0\n{run.describe()}"
        streams = sorted({r.get("stream") for r in run.records})
        assert not run.records, f"a state with abnormally large values should give no records, got some for {streams}"
        assert run.states, f"the sync should produce at least one STATE message\n{run.describe()}"

    def test_future_state_keyed_by_cursor(self, future_state_run, incremental_catalog, cursor_paths):
        """The final state after a future state holds the cursor, with a value of the cursor's schema."""
        run = future_state_run
        assert run.states, f"the sync should produce at least one STATE message\n{run.describe()}"
        final = {state_stream_name(s): stream_state_blob(s) for s in state_input(run.states)}
        errors = []
        for configured in incremental_catalog["streams"]:
            name, path = configured["stream"]["name"], cursor_paths[configured["stream"]["name"]]
            cursor_schema = field_schema(configured["stream"]["json_schema"], configured["cursor_field"])
            blob = final.get(name)
            if name not in final:
                errors.append(f"{name}: no STREAM state for the stream")
            elif not has_path(blob, path):
                errors.append(f"{name}: stream_state {blob} is not keyed by the cursor {path}")
            elif cursor_schema is None:
                errors.append(f"{name}: cursor {configured['cursor_field']} is not in the stream schema")
            else:
                for error in record_validator(cursor_schema).iter_errors(value_at(blob, path)):
                    errors.append(f"{name}: state cursor {value_at(blob, path)!r}: {error.message}")
        assert not errors, "\n".join(errors)
