"""`discover`: CAT's TestDiscovery, one set per `discovery` case of the YAML."""

from __future__ import annotations

import pytest

from .schema_tools import field_schema, find_keyword, keyword_values, schema_errors, schema_types


class TestDiscovery:
    config_key = "discovery"

    def test_discover(self, inputs, runner, connector_config):
        run = runner.discover(connector_config)
        catalogs = run.of_type("CATALOG")
        assert run.returncode == 0, f"discover should exit 0\n{run.describe()}"
        assert len(catalogs) == 1, f"CATALOG should be emitted exactly once, got {len(catalogs)}\n{run.describe()}"
        assert (catalogs[0].get("catalog") or {}).get("streams"), "the catalog should contain streams"

    def test_stream_names_unique_and_not_empty(self, inputs, runner, connector_config):
        run = runner.discover(connector_config)
        streams = run.of_type("CATALOG")[0]["catalog"]["streams"] if run.of_type("CATALOG") else []
        names = [s.get("name") for s in streams]
        assert all(isinstance(n, str) and n.strip() for n in names), f"every stream needs a non-empty name: {names}"
        duplicates = sorted({n for n in names if names.count(n) > 1})
        assert not duplicates, f"stream names must be unique, repeated: {duplicates}"

    def test_stream_schemas_are_valid(self, inputs, discovered_catalog):
        errors = {}
        for name, stream in discovered_catalog.items():
            schema = stream.get("json_schema")
            problems = schema_errors(schema) if isinstance(schema, dict) else ["json_schema is not an object"]
            if problems:
                errors[name] = problems
        assert not errors, f"invalid draft-07 json_schema: {errors}"

    def test_defined_refs_exist_in_schema(self, inputs, discovered_catalog):
        refs = {name: find_keyword(s["json_schema"], "$ref") for name, s in discovered_catalog.items()}
        refs = {name: r for name, r in refs.items() if r}
        assert not refs, f"unresolved $ref in stream schemas: {refs}"

    @pytest.mark.parametrize("keyword", ["allOf", "not"])
    def test_defined_keyword_exist_in_schema(self, inputs, keyword, discovered_catalog):
        found = {name: find_keyword(s["json_schema"], keyword) for name, s in discovered_catalog.items()}
        found = {name: f for name, f in found.items() if f}
        assert not found, f"keyword {keyword!r} is not allowed in stream schemas: {found}"

    def test_defined_cursors_exist_in_schema(self, inputs, discovered_catalog):
        missing = []
        for name, stream in discovered_catalog.items():
            cursor = stream.get("default_cursor_field")
            if cursor and field_schema(stream["json_schema"], cursor) is None:
                missing.append(f"{name}: {cursor}")
        assert not missing, f"default cursor fields missing from the stream schema properties: {missing}"

    def test_primary_keys_exist_in_schema(self, inputs, discovered_catalog):
        missing = []
        for name, stream in discovered_catalog.items():
            for pk in stream.get("source_defined_primary_key") or []:
                if field_schema(stream["json_schema"], pk) is None:
                    missing.append(f"{name}: {pk}")
        assert not missing, f"primary key fields missing from the stream schema properties: {missing}"

    def test_primary_keys_data_type(self, inputs, discovered_catalog):
        bad = []
        for name, stream in discovered_catalog.items():
            for pk in stream.get("source_defined_primary_key") or []:
                prop = field_schema(stream["json_schema"], pk)
                if prop is not None and schema_types(prop) & {"object", "array"}:
                    bad.append(f"{name}: {pk} has type {prop.get('type')}")
        assert not bad, f"primary keys must not be objects or arrays: {bad}"

    def test_streams_has_sync_modes(self, inputs, discovered_catalog):
        bad = [name for name, s in discovered_catalog.items() if not s.get("supported_sync_modes")]
        assert not bad, f"streams without supported_sync_modes: {bad}"

    def test_additional_properties_is_true(self, inputs, discovered_catalog):
        bad = {name: [(p, v) for p, v in keyword_values(s["json_schema"], "additionalProperties") if v is not True]
               for name, s in discovered_catalog.items()}
        bad = {name: b for name, b in bad.items() if b}
        assert not bad, f"additionalProperties, when set, must be true: {bad}"
