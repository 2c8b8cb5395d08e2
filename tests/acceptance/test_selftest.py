"""The suite can fail: it runs itself against deliberately broken copies of the connector script.

Each breakage is a text substitution of scripts/stock_prices.lua (or of --script when given),
made at test time. The suite then runs in a subprocess on only the relevant tests (-k), with
`--script <broken copy>` forwarded to the connector, and the JUnit XML it writes must show
the named tests failing for the expected reason, while a control test in the same run passes
(so the failure comes from the breakage, not from a broken environment).

If a substitution no longer matches, the script changed: update the pattern here.

The second half checks the checkers themselves on canned data, for what a script cannot
break (strict integers, date formats, protocol validation, non-JSON lines).
"""

from __future__ import annotations

import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from .connector import REPO_ROOT, Run
from .schema_tools import protocol_violations, record_validator
from .test_protocol import run_violations

ACCEPTANCE_DIR = Path(__file__).resolve().parent
DEFAULT_SCRIPT = REPO_ROOT / "scripts" / "stock_prices.lua"
SUBPROCESS_TIMEOUT_SECONDS = 90


@dataclass
class Breakage:
    name: str
    why: str
    substitutions: list[tuple[str, str]]  # (regex, replacement); each must match at least once
    must_fail: dict[str, str]  # test function name -> regex its failure message must match
    controls: list[str] = field(default_factory=list)  # tests that must still pass in the same run

    @property
    def selection(self) -> str:
        return " or ".join([*self.must_fail, *self.controls])


BREAKAGES = [
    Breakage(
        name="price_schema_says_string",
        why="the schema says price is a string while records carry numbers",
        substitutions=[(r'(\bprice = \{ type = )"number"', r'\1"string"')],
        must_fail={"test_records_match_schema": r"price: .* is not of type 'string'"},
        controls=["test_stream_schemas_are_valid"],
    ),
    Breakage(
        name="cursor_missing_from_schema",
        why="the stream's cursor field `date` is not in its schema",
        substitutions=[(r'(\n\s*)date = (\{ type = "string", format = "date")', r"\1trade_date = \2")],
        must_fail={"test_defined_cursors_exist_in_schema": r"not specified|missing from the stream schema"},
        controls=["test_streams_has_sync_modes"],
    ),
    Breakage(
        name="state_ignored_on_resume",
        why="a resumed sync starts over (a lookback of ten years), as if the state never moved",
        substitutions=[(r"return config\.lookback_days or 0\b", "return config.lookback_days or 3650")],
        must_fail={"test_two_sequential_reads": r"re-sent \d+ record"},
        controls=["test_first_read_gives_records_and_state"],
    ),
    Breakage(
        name="secret_not_marked",
        why="api_key is not marked airbyte_secret",
        substitutions=[(r"airbyte_secret = true", "airbyte_secret = false")],
        must_fail={"test_secret_is_properly_marked": r"should be marked airbyte_secret"},
        controls=["test_documentation_url_is_absolute"],
    ),
    Breakage(
        name="documentation_url_relative",
        why="documentationUrl is not an absolute URL",
        substitutions=[(r'documentationUrl = "https?://', 'documentationUrl = "')],
        must_fail={"test_documentation_url_is_absolute": r"not an absolute URL"},
        controls=["test_secret_is_properly_marked"],
    ),
]


def break_script(source: str, breakage: Breakage) -> str:
    text = source
    for pattern, replacement in breakage.substitutions:
        text, count = re.subn(pattern, replacement, text)
        if count == 0:
            pytest.fail(f"{breakage.name}: pattern {pattern!r} no longer matches the script; update test_selftest.py")
    return text


def junit_outcomes(path: Path) -> dict[str, list[tuple[str, str]]]:
    """test function name (parameters dropped) -> [(outcome, message)] for each of its cases."""
    outcomes: dict[str, list[tuple[str, str]]] = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        name = case.get("name", "").split("[")[0]
        outcome, message = "passed", ""
        for tag in ("failure", "error", "skipped"):
            element = case.find(tag)
            if element is not None:
                outcome = {"failure": "failed", "error": "error", "skipped": "skipped"}[tag]
                message = f"{element.get('message', '')}\n{element.text or ''}"
                break
        outcomes.setdefault(name, []).append((outcome, message))
    return outcomes


@pytest.mark.parametrize("breakage", BREAKAGES, ids=lambda b: b.name)
def test_suite_catches_broken_script(breakage: Breakage, pytestconfig, tmp_path):
    source_path = Path(pytestconfig.getoption("--script") or DEFAULT_SCRIPT)
    broken = tmp_path / source_path.name
    broken.write_text(break_script(source_path.read_text(encoding="utf-8"), breakage), encoding="utf-8")

    junit = tmp_path / "junit.xml"
    command = [
        sys.executable, "-m", "pytest", str(ACCEPTANCE_DIR),
        f"--ignore={Path(__file__).resolve()}",
        "-p", "no:cacheprovider", "-q", "-rA",
        "-k", breakage.selection,
        f"--junitxml={junit}",
        # --opt=value: a bare path argument would move pytest's rootdir
        f"--connector={pytestconfig.getoption('--connector')}",
        f"--script={broken}",
        f"--acceptance-config={pytestconfig.getoption('--acceptance-config')}",
        f"--polygon-server={pytestconfig.getoption('--polygon-server')}",
    ]
    proc = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT_SECONDS)
    output = f"$ {' '.join(command)}\n{proc.stdout[-4000:]}\n{proc.stderr[-2000:]}"
    assert junit.exists(), f"the suite wrote no JUnit XML\n{output}"
    outcomes = junit_outcomes(junit)

    for test, reason in breakage.must_fail.items():
        results = outcomes.get(test)
        assert results, f"{test} did not run\n{output}"
        failed = [message for outcome, message in results if outcome == "failed"]
        assert failed, f"{breakage.why}: {test} should fail, got {[o for o, _ in results]}\n{output}"
        assert any(re.search(reason, m) for m in failed), (
            f"{breakage.why}: {test} failed, but not for the expected reason /{reason}/:\n{failed[0][:3000]}"
        )
    for test in breakage.controls:
        results = outcomes.get(test)
        assert results and all(o == "passed" for o, _ in results), (
            f"control {test} should pass with this breakage, got {results}\n{output}"
        )


# -- the checkers themselves ----------------------------------------------------------------
class TestCheckers:
    def test_integer_is_strict(self):
        validator = record_validator({"type": "object", "properties": {"n": {"type": "integer"}}})
        assert validator.is_valid({"n": 1})
        assert not validator.is_valid({"n": 1.0}), "1.0 must not count as an integer"
        assert not validator.is_valid({"n": True})

    @pytest.mark.parametrize("value,valid", [("2022-03-07", True), ("20220307", False), ("2022-02-30", False), ("2022-W10-1", False)])
    def test_date_format(self, value, valid):
        validator = record_validator({"type": "string", "format": "date"})
        assert validator.is_valid(value) is valid

    @pytest.mark.parametrize(
        "value,valid",
        [("2022-03-07T16:00:00Z", True), ("2022-03-07T16:00:00.5-05:00", True), ("2022-03-07", False), ("2022-03-07T25:00:00Z", False)],
    )
    def test_date_time_format(self, value, valid):
        validator = record_validator({"type": "string", "format": "date-time"})
        assert validator.is_valid(value) is valid

    def test_protocol_rejects_bad_messages(self):
        assert protocol_violations({"type": "RECORD", "record": {"stream": "s", "data": {}, "emitted_at": 1}}) == []
        assert protocol_violations({"type": "RECORDS"}), "unknown message type"
        assert protocol_violations({"type": "RECORD", "record": {"data": {}, "emitted_at": 1}}), "record without stream"
        assert protocol_violations({"type": "STATE", "state": {"type": "PER_STREAM"}}), "unknown state type"
        status = {"stream_descriptor": {"name": "s"}, "status": "DONE"}
        assert protocol_violations({"type": "TRACE", "trace": {"type": "STREAM_STATUS", "emitted_at": 1, "stream_status": status}})

    def test_non_json_lines_are_violations(self):
        run = Run.parse(["x"], 0, '{"type": "LOG", "log": {"level": "INFO", "message": "hi"}}\nhello\n[1]\n', "", 0.0)
        problems = run_violations(run)
        assert len(run.messages) == 1 and len(problems) == 2, problems
