"""`spec`: what CAT's TestSpec checks of the connector's specification."""

from __future__ import annotations

import json
import re
from urllib.parse import urlsplit

import jsonschema
import pytest
import yaml

from .schema_tools import find_keyword, keyword_values, record_format_checker, schema_errors, schema_types, walk_schema

# CAT's list of secret property names, plus any name whose last word is one of SECRET_WORDS
# (api_key, client_secret, db_password, ...).
SECRET_PROPERTY_NAMES = {
    "client_token", "access_token", "api_token", "token", "secret", "client_secret", "password", "key",
    "service_account_info", "service_account", "tenant_id", "certificate", "jwt", "credentials",
    "app_id", "appid", "refresh_token",
}
SECRET_WORDS = {"key", "token", "secret", "password", "passwd"}
FORBIDDEN_KEYWORDS = (
    "not", "anyOf", "allOf", "patternProperties", "prefixItems", "if", "then", "else",
    "dependentSchemas", "dependentRequired",
)


def is_secret_name(name: str) -> bool:
    lowered = name.lower()
    words = [w for w in re.split(r"[_\-\s.]+", lowered) if w]
    return lowered in SECRET_PROPERTY_NAMES or (bool(words) and words[-1] in SECRET_WORDS)


def can_hold_secret(prop: dict) -> bool:
    """CAT: strings and numbers can hold a secret; booleans, objects, arrays and consts cannot."""
    return bool(schema_types(prop) & {"string", "integer", "number"}) and not prop.get("const")


def named_properties(schema: dict):
    """(path, name, subschema) of every property declared anywhere in the schema."""
    for path, node in walk_schema(schema):
        properties = node.get("properties")
        if isinstance(properties, dict):
            for name, prop in properties.items():
                if isinstance(prop, dict):
                    yield "/".join(map(str, path + ("properties", name))), name, prop


class TestSpec:
    config_key = "spec"

    def test_spec_message_emitted_once(self, inputs, runner):
        run = runner.spec()
        specs = run.of_type("SPEC")
        assert run.returncode == 0, f"spec should exit 0\n{run.describe()}"
        assert len(specs) == 1, f"spec should print exactly one SPEC message, got {len(specs)}\n{run.describe()}"

    def test_documentation_url_is_absolute(self, inputs, spec_message):
        url = spec_message.get("documentationUrl")
        assert isinstance(url, str) and url, "spec should have a documentationUrl"
        parts = urlsplit(url)
        assert parts.scheme in ("http", "https") and parts.netloc, f"documentationUrl is not an absolute URL: {url!r}"

    def test_connection_specification_is_valid_schema(self, inputs, spec_message):
        schema = spec_message.get("connectionSpecification")
        assert isinstance(schema, dict), "spec should have a connectionSpecification object"
        errors = schema_errors(schema)
        assert not errors, "connectionSpecification is not a valid draft-07 schema:\n" + "\n".join(errors)

    def test_secret_is_properly_marked(self, inputs, spec_message):
        exposed, hidden = [], []
        for path, name, prop in named_properties(spec_message["connectionSpecification"]):
            if not is_secret_name(name):
                continue
            marked = prop.get("airbyte_secret", False) is True
            if not marked and can_hold_secret(prop):
                exposed.append(path)
            if marked and not can_hold_secret(prop):
                hidden.append(path)
        assert not exposed, f"these properties should be marked airbyte_secret: {exposed}"
        assert not hidden, f"these properties cannot hold a secret but are marked airbyte_secret: {hidden}"

    def test_defined_refs_exist_in_json_spec_file(self, inputs, spec_message):
        refs = find_keyword(spec_message, "$ref")
        assert not refs, f"unresolved $ref in the spec: {refs}"

    def test_forbidden_complex_types(self, inputs, spec_message):
        found = [path for key in FORBIDDEN_KEYWORDS for path in find_keyword(spec_message["connectionSpecification"], key)]
        assert not found, f"the spec uses JSON-schema features the UI cannot render: {found}"

    def test_additional_properties_is_true(self, inputs, spec_message):
        bad = [(p, v) for p, v in keyword_values(spec_message["connectionSpecification"], "additionalProperties") if v is not True]
        assert not bad, f"additionalProperties, when set, must be true (backward compatibility): {bad}"

    def test_property_type_is_not_array(self, inputs, spec_message):
        errors = []
        for path, value in keyword_values(spec_message["connectionSpecification"], "type"):
            if not isinstance(value, list):
                continue
            if len(value) not in (1, 2) or (len(value) == 2 and value[1] != "null"):
                errors.append(f"{path}: {value} (allowed: [T] or [T, \"null\"])")
        assert not errors, "type lists must be one type, optionally plus null:\n" + "\n".join(errors)

    def test_object_not_empty(self, inputs, spec_message):
        errors = []
        for path, node in walk_schema(spec_message["connectionSpecification"]):
            if path and "object" in schema_types(node) and "oneOf" not in node and not node.get("properties"):
                errors.append("/".join(map(str, path)))
        assert not errors, f"object fields without properties cannot be shown in the UI: {errors}"

    def test_enum_usage(self, inputs, spec_message):
        errors = []
        for path, values in keyword_values(spec_message["connectionSpecification"], "enum"):
            as_json = [json.dumps(v, sort_keys=True) for v in values] if isinstance(values, list) else []
            if len(set(as_json)) != len(as_json):
                errors.append(f"{path}: {values}")
        assert not errors, f"enum lists should not repeat values: {errors}"

    def test_oneof_usage(self, inputs, spec_message):
        errors = []
        for path, node in walk_schema(spec_message["connectionSpecification"]):
            variants = node.get("oneOf")
            if not isinstance(variants, list):
                continue
            where = "/".join(map(str, path + ("oneOf",)))
            if node.get("type") != "object":
                errors.append(f"{where}: the parent of oneOf should have type object")
            if not all(isinstance(v, dict) and isinstance(v.get("properties"), dict) for v in variants):
                errors.append(f"{where}: every variant should be an object with properties")
                continue
            common = set.intersection(*(set(v["properties"]) for v in variants)) if variants else set()
            consts = {p for p in common if all("const" in v["properties"][p] for v in variants)}
            if len(consts) != 1:
                errors.append(f"{where}: variants should share exactly one property with a const, found {sorted(consts)}")
        assert not errors, "\n".join(errors)

    def test_config_match_spec(self, inputs, spec_message, acceptance_config):
        """The case's config and every other config named in the YAML validate against the spec."""
        schema = spec_message["connectionSpecification"]
        paths = ([inputs.config_path] if inputs.config_path else []) + acceptance_config.config_paths()
        validator = jsonschema.Draft7Validator(schema, format_checker=record_format_checker())
        errors = []
        for path in dict.fromkeys(paths):
            config = json.loads(path.read_text(encoding="utf-8"))
            # keys starting with "_" are technical (CAT drops them too)
            config = {k: v for k, v in config.items() if not k.startswith("_")}
            errors += [f"{path.name}: {'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in validator.iter_errors(config)]
        assert paths, "the YAML names no config to validate"
        assert not errors, "sample configs do not match the spec:\n" + "\n".join(errors)

    def test_match_expected(self, inputs, spec_message):
        """With a spec_path in the YAML, the connector's spec equals that reference spec."""
        if inputs.spec_path is None:
            pytest.skip("no spec_path in the YAML: no reference spec to compare with")
        text = inputs.spec_path.read_text(encoding="utf-8")
        expected = yaml.safe_load(text) if inputs.spec_path.suffix in (".yaml", ".yml") else json.loads(text)
        expected = expected.get("spec", expected) if isinstance(expected, dict) and "spec" in expected else expected
        assert spec_message == expected, f"spec differs from {inputs.spec_path.name}"
