"""`read`: CAT's TestBasicRead, one set per `basic_read` case of the YAML.

Every test here looks at the same read (run once per case and shared), except the trace test,
which reads with a deliberately invalid catalog.
"""

from __future__ import annotations

import pytest

from .messages import (
    invalid_catalog,
    primary_key,
    records_by_stream,
    stream_names,
    stream_status_problems,
    stream_statuses,
)
from .schema_tools import record_validator, value_at

MAX_ERRORS_SHOWN = 10
# Every API request fails with a status no client retries (tests/server/polygon_server.py).
ERROR_FAULT = {"fail_after": 0, "status": 403, "body": "json"}


@pytest.fixture
def read_run(inputs, runner, connector_config, configured_catalog):
    return runner.read(connector_config, configured_catalog, cache=True)


def _first(errors: list[str]) -> str:
    shown = errors[:MAX_ERRORS_SHOWN]
    more = f"\n... and {len(errors) - len(shown)} more" if len(errors) > len(shown) else ""
    return "\n".join(shown) + more


class TestBasicRead:
    config_key = "basic_read"

    def test_read(self, read_run):
        assert read_run.returncode == 0, f"read should exit 0\n{read_run.describe()}"
        assert read_run.records, f"at least one record should be read using the provided catalog\n{read_run.describe()}"

    def test_empty_streams(self, inputs, read_run, configured_catalog):
        with_records = set(records_by_stream(read_run.records))
        without = set(stream_names(configured_catalog)) - with_records - inputs.empty_streams
        assert not without, f"all streams should return some records (or be listed in empty_streams): {sorted(without)}"

    def test_records_match_schema(self, read_run, configured_catalog):
        streams = {c["stream"]["name"]: c["stream"] for c in configured_catalog["streams"]}
        validators = {name: record_validator(s["json_schema"]) for name, s in streams.items()}
        errors = []
        for index, record in enumerate(read_run.records):
            name = record.get("stream")
            if name not in validators:
                errors.append(f"record {index}: stream {name!r} is not in the configured catalog")
                continue
            data = record.get("data")
            for error in validators[name].iter_errors(data):
                where = "/".join(map(str, error.absolute_path)) or "<data>"
                errors.append(f"record {index} ({name}) {where}: {error.message}")
            properties = set((streams[name]["json_schema"].get("properties") or {}))
            if isinstance(data, dict) and data and properties and not (set(data) & properties):
                errors.append(f"record {index} ({name}): none of its fields {sorted(data)} is in the schema")
        assert read_run.records, "no records to validate"
        assert not errors, "records do not match their stream schema:\n" + _first(errors)

    def test_records_have_no_extra_columns(self, inputs, read_run, configured_catalog):
        """CAT's fail_on_extra_columns (on by default): top-level fields must be declared."""
        if not inputs.flag("fail_on_extra_columns", True):
            pytest.skip("fail_on_extra_columns is false in the YAML")
        declared = {c["stream"]["name"]: set(c["stream"]["json_schema"].get("properties") or {}) for c in configured_catalog["streams"]}
        extra = {}
        for record in read_run.records:
            data = record.get("data") if isinstance(record.get("data"), dict) else {}
            undeclared = set(data) - declared.get(record.get("stream"), set(data))
            if undeclared:
                extra.setdefault(record.get("stream"), set()).update(undeclared)
        assert not extra, f"records carry fields their schema does not declare: { {k: sorted(v) for k, v in extra.items()} }"

    def test_primary_keys_are_scalar_and_not_null(self, read_run, configured_catalog):
        keys = {c["stream"]["name"]: primary_key(c) for c in configured_catalog["streams"]}
        errors = []
        for index, record in enumerate(read_run.records):
            for path in keys.get(record.get("stream")) or []:
                value = value_at(record.get("data"), path)
                if value is None:
                    errors.append(f"record {index} ({record.get('stream')}): primary key {path} is null or missing")
                elif isinstance(value, (dict, list)):
                    errors.append(f"record {index} ({record.get('stream')}): primary key {path} is a {type(value).__name__}")
        assert not errors, _first(errors)

    def test_state_messages(self, read_run, configured_catalog):
        states = read_run.states
        streams = stream_names(configured_catalog)
        assert len(states) >= len(streams), f"at least one STATE per configured stream: {len(states)} states for {len(streams)} streams"
        bad_type = [s.get("type") for s in states if s.get("type") != "STREAM"]
        assert not bad_type, f"STATE messages should be of type STREAM, got {bad_type}"
        no_stats = [i for i, s in enumerate(states) if not isinstance(s.get("sourceStats"), dict)]
        assert not no_stats, f"STATE messages {no_stats} have no sourceStats"

    def test_stream_statuses(self, read_run, configured_catalog):
        statuses = stream_statuses(read_run.traces("STREAM_STATUS"))
        problems = stream_status_problems(statuses, configured_catalog, final="COMPLETE")
        assert not problems, "\n".join(problems)

    def test_stream_status_incomplete_on_error(self, inputs, runner, connector_config, configured_catalog, polygon_server):
        """When the API fails for good mid-read, the streams end INCOMPLETE and the read fails."""
        polygon_server.control("/_control/faults", ERROR_FAULT)
        try:
            run = runner.read(connector_config, configured_catalog)
        finally:
            polygon_server.control("/_control/reset", {})
        assert run.traces("ERROR"), f"a failed read should emit a TRACE ERROR\n{run.describe()}"
        assert run.returncode != 0, f"a failed read should exit non-zero\n{run.describe()}"
        statuses = stream_statuses(run.traces("STREAM_STATUS"))
        assert statuses, f"the streams should report STARTED before failing\n{run.describe()}"
        problems = [
            f"{stream}: statuses {values}, expected STARTED, RUNNING..., INCOMPLETE"
            for stream, values in statuses.items()
            if values[0] != "STARTED" or values[-1] != "INCOMPLETE" or any(v != "RUNNING" for v in values[1:-1])
        ]
        assert not problems, "\n".join(problems)

    def test_airbyte_trace_message_on_failure(self, inputs, runner, connector_config):
        if not inputs.flag("expect_trace_message_on_failure", True):
            pytest.skip("expect_trace_message_on_failure is false in the YAML")
        run = runner.read(connector_config, invalid_catalog(), cache=True)
        errors = run.traces("ERROR")
        assert errors, f"a read with an invalid catalog should emit at least one TRACE ERROR\n{run.describe()}"
        assert run.returncode != 0, f"a failed read should exit non-zero\n{run.describe()}"
