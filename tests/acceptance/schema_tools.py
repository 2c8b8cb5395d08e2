"""JSON-schema helpers: walking schemas, strict record validation, the Airbyte protocol schema."""

from __future__ import annotations

import datetime
import functools
import re
from pathlib import Path
from typing import Any, Iterator

import jsonschema
import yaml
from jsonschema import Draft7Validator, FormatChecker, validators

PROTOCOL_SCHEMA_PATH = Path(__file__).resolve().parents[1] / "airbyte_protocol.yaml"

# Keys whose value maps *names* to schemas: the names are not keywords.
_NAME_MAPS = {"properties", "patternProperties", "definitions", "$defs", "dependencies"}
# Keys whose value is data, not schema: never look inside.
_DATA_KEYS = {"enum", "const", "default", "examples", "required"}


def walk_schema(schema: Any, path: tuple = ()) -> Iterator[tuple[tuple, dict]]:
    """Yield (path, node) for every schema object in `schema`, the root included.

    Property names are never mistaken for keywords: a property called `not` is a name under
    `properties`, while `not` beside `type` is the keyword.
    """
    if isinstance(schema, list):
        for index, item in enumerate(schema):
            yield from walk_schema(item, path + (index,))
        return
    if not isinstance(schema, dict):
        return
    yield path, schema
    for key, value in schema.items():
        if key in _DATA_KEYS:
            continue
        if key in _NAME_MAPS and isinstance(value, dict):
            for name, sub in value.items():
                yield from walk_schema(sub, path + (key, name))
        elif isinstance(value, (dict, list)):
            yield from walk_schema(value, path + (key,))


def find_keyword(schema: Any, keyword: str) -> list[str]:
    """Slash-joined paths of every place where `keyword` is used as a schema keyword."""
    return ["/".join(map(str, path + (keyword,))) for path, node in walk_schema(schema) if keyword in node]


def keyword_values(schema: Any, keyword: str) -> list[tuple[str, Any]]:
    return [("/".join(map(str, path + (keyword,))), node[keyword]) for path, node in walk_schema(schema) if keyword in node]


def schema_types(node: dict) -> set[str]:
    value = node.get("type")
    if isinstance(value, str):
        return {value}
    if isinstance(value, list):
        return {t for t in value if isinstance(t, str)}
    return set()


def field_schema(schema: dict, field_path: list[str]) -> dict | None:
    """The subschema of a (nested) field such as ["date"] or ["a", "b"]; None if absent."""
    node: Any = schema
    for part in field_path:
        properties = node.get("properties") if isinstance(node, dict) else None
        if not isinstance(properties, dict) or part not in properties:
            return None
        node = properties[part]
    return node if isinstance(node, dict) else None


def value_at(data: Any, field_path: list[str]) -> Any:
    """The value at a field path of a record (None if any part is missing)."""
    for part in field_path:
        if not isinstance(data, dict):
            return None
        data = data.get(part)
    return data


def has_path(data: Any, field_path: list[str]) -> bool:
    """Whether a record or state blob has a key at `field_path` (its value may be null)."""
    for part in field_path:
        if not isinstance(data, dict) or part not in data:
            return False
        data = data[part]
    return True


# -- strict record validation (CAT's Draft7ValidatorWithStrictInteger + format checks) -------
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_DATETIME_RE = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})?$")


def _is_date(instance: object) -> bool:
    if not isinstance(instance, str):
        return True
    # Python 3.11's fromisoformat also takes "20220307" and week dates: demand YYYY-MM-DD.
    return bool(_DATE_RE.match(instance)) and bool(datetime.date.fromisoformat(instance))


def _is_datetime(instance: object) -> bool:
    if not isinstance(instance, str):
        return True
    if not _DATETIME_RE.match(instance):
        return False
    normalized = instance.upper().replace("Z", "+00:00").replace(" ", "T")
    datetime.datetime.fromisoformat(normalized)
    return True


def record_format_checker() -> FormatChecker:
    checker = FormatChecker()
    checker.checks("date", raises=ValueError)(_is_date)
    checker.checks("date-time", raises=ValueError)(_is_datetime)
    return checker


# 1.0 is a number but not an integer: integer means a Python int (bool is not one either).
_STRICT_TYPES = Draft7Validator.TYPE_CHECKER.redefine(
    "integer", lambda _checker, value: isinstance(value, int) and not isinstance(value, bool)
)
StrictDraft7Validator = validators.extend(Draft7Validator, type_checker=_STRICT_TYPES)


def record_validator(schema: dict) -> Draft7Validator:
    return StrictDraft7Validator(schema, format_checker=record_format_checker())


def schema_errors(schema: dict) -> list[str]:
    """Problems that make `schema` an invalid draft-07 schema."""
    try:
        Draft7Validator.check_schema(schema)
    except jsonschema.SchemaError as err:
        return [f"{'/'.join(map(str, err.absolute_path)) or '<root>'}: {err.message}"]
    return []


# -- the Airbyte protocol ----------------------------------------------------------------------
@functools.lru_cache(maxsize=None)
def protocol_document() -> dict:
    with open(PROTOCOL_SCHEMA_PATH, encoding="utf-8") as file:
        return yaml.safe_load(file)


@functools.lru_cache(maxsize=None)
def protocol_validator(definition: str = "AirbyteMessage") -> Draft7Validator:
    """A validator for `#/definitions/<definition>` with $refs resolved in the whole document."""
    document = protocol_document()
    resolver = jsonschema.RefResolver.from_schema(document)
    return Draft7Validator({"$ref": f"#/definitions/{definition}"}, resolver=resolver)


def protocol_violations(message: dict) -> list[str]:
    errors = sorted(protocol_validator().iter_errors(message), key=lambda e: list(e.absolute_path))
    return [f"{'/'.join(map(str, e.absolute_path)) or '<message>'}: {e.message}" for e in errors]
