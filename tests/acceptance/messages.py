"""Helpers over Airbyte messages: catalogs, states, record identities."""

from __future__ import annotations

import copy
import json
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterable

import pytest

from .schema_tools import value_at

INVALID_STREAM_NAME = "__AIRBYTE__stream_that_does_not_exist"


# -- catalogs ------------------------------------------------------------------------------------
def discovered_streams(catalog_message: dict) -> dict[str, dict]:
    """name -> AirbyteStream of a CATALOG message."""
    return {stream["name"]: stream for stream in catalog_message["catalog"]["streams"]}


def configured_catalog(path: Path | None, discovered: dict[str, dict], empty_streams: Iterable[str] = ()) -> dict:
    """The catalog a test reads with, built as CAT builds it.

    From a file: its streams, each with the stream definition replaced by the one the connector
    discovers (so the schema checked is the connector's own). Without a file: every discovered
    stream except the declared empty ones, in its first supported sync mode.
    """
    if path is None:
        skipped = set(empty_streams)
        streams = [
            {
                "stream": stream,
                "sync_mode": stream["supported_sync_modes"][0],
                "destination_sync_mode": "append",
                **({"cursor_field": stream["default_cursor_field"]} if stream.get("default_cursor_field") else {}),
                **({"primary_key": stream["source_defined_primary_key"]} if stream.get("source_defined_primary_key") else {}),
            }
            for name, stream in discovered.items()
            if name not in skipped
        ]
        return {"streams": streams}

    catalog = json.loads(Path(path).read_text(encoding="utf-8"))
    for configured in catalog["streams"]:
        name = configured["stream"]["name"]
        if name not in discovered:
            pytest.fail(f"stream {name!r} of {path} is not in the discovered catalog ({sorted(discovered)})")
        configured["stream"] = copy.deepcopy(discovered[name])
    return catalog


def with_sync_mode(catalog: dict, sync_mode: str) -> dict:
    """Only the streams that support `sync_mode`, set to it (CAT's *_only_catalog helpers).

    For incremental, a stream without a cursor_field gets the source's default one.
    """
    result = {"streams": []}
    for configured in catalog["streams"]:
        stream = configured["stream"]
        if sync_mode not in stream.get("supported_sync_modes", []):
            continue
        configured = copy.deepcopy(configured)
        configured["sync_mode"] = sync_mode
        if sync_mode == "incremental" and not configured.get("cursor_field"):
            if not stream.get("default_cursor_field"):
                pytest.fail(f"incremental stream {stream['name']} has neither cursor_field nor default_cursor_field")
            configured["cursor_field"] = list(stream["default_cursor_field"])
        result["streams"].append(configured)
    return result


def invalid_catalog() -> dict:
    """CAT's catalog for test_airbyte_trace_message_on_failure: an unknown stream, an unknown mode."""
    return {
        "streams": [
            {
                "stream": {
                    "name": INVALID_STREAM_NAME,
                    "json_schema": {"type": "object", "properties": {"f1": {"type": "string"}}},
                    "supported_sync_modes": ["full_refresh"],
                },
                "sync_mode": "INVALID",
                "destination_sync_mode": "INVALID",
            }
        ]
    }


def stream_names(catalog: dict) -> list[str]:
    return [configured["stream"]["name"] for configured in catalog["streams"]]


def primary_key(configured: dict) -> list[list[str]]:
    return configured.get("primary_key") or configured["stream"].get("source_defined_primary_key") or []


# -- records ------------------------------------------------------------------------------------
def records_by_stream(records: Iterable[dict]) -> dict[str, list[dict]]:
    grouped: dict[str, list[dict]] = defaultdict(list)
    for record in records:
        grouped[record.get("stream")].append(record)
    return grouped


def record_identity(data: dict, pk: list[list[str]]) -> str:
    """What makes a record the same record: its primary key when there is one, else all its data."""
    if pk:
        return json.dumps([value_at(data, path) for path in pk])
    return json.dumps(data, sort_keys=True)


# -- states ---------------------------------------------------------------------------------------
def state_stream_name(state: dict) -> str | None:
    stream = state.get("stream") or {}
    return (stream.get("stream_descriptor") or {}).get("name")


def stream_state_blob(state: dict) -> Any:
    return (state.get("stream") or {}).get("stream_state")


def state_input(states: Iterable[dict]) -> list[dict]:
    """The platform's state file after `states`: the last STREAM state of each stream."""
    latest: dict[str, dict] = {}
    for state in states:
        name = state_stream_name(state)
        if state.get("type") == "STREAM" and name is not None:
            latest[name] = state
    return list(latest.values())


# -- stream statuses -----------------------------------------------------------------------------
def stream_key(descriptor: dict) -> str:
    namespace = descriptor.get("namespace")
    return f"{namespace}.{descriptor.get('name')}" if namespace else str(descriptor.get("name"))


def stream_statuses(traces: Iterable[dict]) -> dict[str, list[str]]:
    """stream -> its STREAM_STATUS values in order, from the `trace` objects of TRACE messages."""
    result: dict[str, list[str]] = defaultdict(list)
    for trace in traces:
        status = trace.get("stream_status") or {}
        result[stream_key(status.get("stream_descriptor") or {})].append(status.get("status"))
    return dict(result)


def stream_status_problems(statuses: dict[str, list[str]], catalog: dict, final: str = "COMPLETE") -> list[str]:
    """CAT's rule: every configured stream reports STARTED, then RUNNING (one or more), then `final`."""
    expected = {stream_key(c["stream"]) for c in catalog["streams"]}
    problems = []
    if set(statuses) != expected:
        problems.append(f"streams with statuses {sorted(statuses)} != configured streams {sorted(expected)}")
    for stream, values in statuses.items():
        ok = (
            len(values) >= 3
            and values[0] == "STARTED"
            and values[-1] == final
            and all(v == "RUNNING" for v in values[1:-1])
        )
        if not ok:
            problems.append(f"{stream}: statuses {values}, expected STARTED, RUNNING..., {final}")
    return problems
