"""Reading acceptance-test-config.yml into test cases.

Two layouts are accepted, the tutorial's and the one CAT uses today:

    tests:                       acceptance_tests:
      connection:                  connection:
        - config_path: ...           tests:
          status: succeed              - config_path: ...

Every list item becomes one test case; the runner parametrizes the tests of a section
with that section's cases, so adding an item to the YAML adds a test.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

SECTIONS = ("spec", "connection", "discovery", "basic_read", "full_refresh", "incremental")
CONNECTION_STATUSES = ("succeed", "failed", "exception")


@dataclass
class Case:
    """One item of a section of the YAML, with paths resolved against the YAML's folder."""

    section: str
    index: int
    raw: dict
    base_dir: Path
    bypass_reason: str | None = None

    def _path(self, key: str) -> Path | None:
        value = self.raw.get(key)
        return (self.base_dir / value) if value else None

    @property
    def id(self) -> str:
        name = Path(self.raw["config_path"]).stem if self.raw.get("config_path") else f"case{self.index}"
        if self.section == "connection":
            name = f"{name}-{self.status}"
        return name

    @property
    def config_path(self) -> Path | None:
        return self._path("config_path")

    @property
    def configured_catalog_path(self) -> Path | None:
        return self._path("configured_catalog_path")

    @property
    def spec_path(self) -> Path | None:
        return self._path("spec_path")

    @property
    def status(self) -> str:
        return str(self.raw.get("status", "succeed"))

    @property
    def future_state_path(self) -> Path | None:
        # tutorial: `future_state_path: x`; CAT today: `future_state: {future_state_path: x}`
        nested = self.raw.get("future_state") or {}
        value = self.raw.get("future_state_path") or nested.get("future_state_path")
        return (self.base_dir / value) if value else None

    @property
    def empty_streams(self) -> set[str]:
        names = set()
        for item in self.raw.get("empty_streams") or []:
            names.add(item["name"] if isinstance(item, dict) else str(item))
        return names

    @property
    def cursor_paths(self) -> dict[str, list]:
        return dict(self.raw.get("cursor_paths") or {})

    def flag(self, name: str, default: bool) -> bool:
        value = self.raw.get(name)
        return default if value is None else bool(value)


@dataclass
class AcceptanceConfig:
    path: Path
    connector_image: str | None
    sections: dict[str, list[Case]] = field(default_factory=dict)
    bypass_reasons: dict[str, str] = field(default_factory=dict)  # whole sections switched off

    def cases(self, section: str) -> list[Case]:
        return self.sections.get(section, [])

    def config_paths(self) -> list[Path]:
        """Every distinct config file named anywhere in the YAML."""
        seen: dict[Path, None] = {}
        for cases in self.sections.values():
            for case in cases:
                if case.config_path:
                    seen.setdefault(case.config_path, None)
        return list(seen)


def _section_items(tests: Any, section: str) -> tuple[list[dict], str | None]:
    """Return (items, bypass_reason) for a section in either layout."""
    value = tests.get(section)
    if value is None:
        return [], None
    if isinstance(value, list):
        return value, None
    if isinstance(value, dict):
        return list(value.get("tests") or []), value.get("bypass_reason")
    raise ValueError(f"section {section!r} must be a list or a mapping, got {type(value).__name__}")


def load_acceptance_config(path: Path) -> AcceptanceConfig:
    with open(path, encoding="utf-8") as file:
        data = yaml.safe_load(file) or {}
    if "acceptance_tests" in data:
        tests = data["acceptance_tests"] or {}
    else:
        tests = data.get("tests") or {}
    unknown = set(tests) - set(SECTIONS)
    if unknown:
        raise ValueError(f"{path}: unknown test sections {sorted(unknown)}; known: {list(SECTIONS)}")

    config = AcceptanceConfig(path=path, connector_image=data.get("connector_image"))
    for section in SECTIONS:
        items, bypass = _section_items(tests, section)
        cases = []
        for index, raw in enumerate(items):
            case = Case(section, index, dict(raw or {}), path.parent, bypass)
            if section == "connection" and case.status not in CONNECTION_STATUSES:
                raise ValueError(f"{path}: connection case {index}: status must be one of {CONNECTION_STATUSES}")
            cases.append(case)
        config.sections[section] = cases
        if bypass:
            config.bypass_reasons[section] = bypass
    return config
