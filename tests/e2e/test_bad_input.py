"""Bad input (issue 5): whatever the platform or a user hands over, the connector never crashes
or hangs, stdout stays valid protocol (checked on every run by the conftest helpers), and the
problem is reported as a config_error that names the file or the field. Bad input is caught
before any request reaches the API.
"""

from __future__ import annotations

import copy
import json

import pytest

from .conftest import CATALOGS, DROP, STREAM, sample_under_wrapper, slow_under_wrapper, stream_state_message, utc

AFTER_CLOSE = utc(2022, 3, 11, 22, 0)
BIG = 5 << 20   # 5 MB
INCREMENTAL = json.loads((CATALOGS / "incremental_configured_catalog.json").read_text())


def catalog_with(**changes) -> dict:
    catalog = copy.deepcopy(INCREMENTAL)
    entry = catalog["streams"][0]
    for key, value in changes.items():
        if key == "name":
            entry["stream"]["name"] = value
        elif value is DROP:
            entry.pop(key, None)
        else:
            entry[key] = value
    return catalog


def the_error(result) -> dict:
    """The one TRACE error of a failed run (exit 1, not a crash)."""
    assert result.returncode == 1, result.describe()
    assert len(result.errors) == 1, result.describe()
    return result.errors[0]


def assert_config_error(result, *words):
    error = the_error(result)
    assert error["failure_type"] == "config_error", result.describe()
    for word in words:
        assert word in error["message"], (word, error["message"])
    assert result.records == []
    return error


def assert_check_rejects(result, *words):
    """check: a FAILED connection status, or (for a file that cannot be read) a config_error."""
    statuses = result.of("CONNECTION_STATUS")
    if statuses:
        assert result.returncode == 0, result.describe()
        assert len(statuses) == 1 and not result.errors, result.describe()
        status = statuses[0]["connectionStatus"]
        assert status["status"] == "FAILED", result.describe()
        message = status["message"]
    else:
        message = assert_config_error(result)["message"]
    for word in words:
        assert word in message, (word, message)


def no_request_was_made(connector):
    assert connector.server.log() == [], "bad input must be caught before any request"


# --------------------------------------------------------------------------------------------
# files: missing, empty, not JSON, the wrong top-level type
# --------------------------------------------------------------------------------------------

BROKEN_FILES = {
    "empty": "",
    "blank": " \n\t\n",
    "not-json": "api_key = x\n",
    "truncated": '{"streams": [{"stream": ',
    "trailing-garbage": '{"a": 1} {"b": 2}',
    "nan": "NaN",
    "list": "[]",
    "string": '"text"',
    "number": "42",
    "true": "true",
    "null": "null",
}
NOT_AN_OBJECT = {"list", "string", "number", "true", "null"}


def write_bytes(connector, name: str, content: bytes):
    path = connector.tmp_path / name
    path.write_bytes(content)
    return path


def config_file_cases():
    """Every broken file with read; check and discover with a few (they share the reading)."""
    kinds = ["missing", "directory", "binary", *BROKEN_FILES]
    cases = [("read", kind) for kind in kinds]
    cases += [(command, kind) for command in ("check", "discover") for kind in ("missing", "directory", "not-json",
                                                                                "list", "null")]
    sample = {("read", "missing"), ("read", "binary"), ("read", "not-json"), ("read", "list"), ("check", "missing"),
              ("discover", "null")}
    return [pytest.param(command, kind, id=f"{command}-{kind}",
                         marks=() if (command, kind) in sample else slow_under_wrapper) for command, kind in cases]


@pytest.mark.parametrize("command,kind", config_file_cases())
def test_broken_config_file(connector, command, kind):
    if kind == "missing":
        path = connector.tmp_path / "no-such-config.json"
    elif kind == "directory":
        path = connector.tmp_path
    elif kind == "binary":
        path = write_bytes(connector, "config.bin", b"\xff\xfe\x00{\x00}")
    else:
        path = connector.file("config.json", BROKEN_FILES[kind])
    extra = ["--catalog", CATALOGS / "incremental_configured_catalog.json"] if command == "read" else []
    result = connector.run(command, "--config", path, *extra)
    if command == "check":
        assert_check_rejects(result, "config")
    else:
        assert_config_error(result, "config")
    no_request_was_made(connector)


@pytest.mark.parametrize("kind", sample_under_wrapper(["missing", "directory", "binary", *BROKEN_FILES],
                                                      keep=["missing", "directory", "not-json", "list"]))
def test_broken_catalog_file(connector, kind):
    if kind == "missing":
        path = connector.tmp_path / "no-such-catalog.json"
    elif kind == "directory":
        path = connector.tmp_path
    elif kind == "binary":
        path = write_bytes(connector, "catalog.bin", b"\xff\xfe\x00{\x00}")
    else:
        path = connector.file("catalog.json", BROKEN_FILES[kind])
    result = connector.run("read", "--config", connector.file("config.json", connector.config()), "--catalog", path)
    assert_config_error(result, "catalog")
    no_request_was_made(connector)


@pytest.mark.parametrize("kind", sample_under_wrapper(
    ["missing", "directory", "binary", *sorted(set(BROKEN_FILES) - {"empty", "blank", "null", "list"})],
    keep=["missing", "not-json", "string"]))
def test_broken_state_file(connector, kind):
    """(An empty file, null or [] is no state: see test_core.)"""
    if kind == "missing":
        path = connector.tmp_path / "no-such-state.json"
    elif kind == "directory":
        path = connector.tmp_path
    elif kind == "binary":
        path = write_bytes(connector, "state.bin", b"\xff\xfe\x00{\x00}")
    else:
        path = connector.file("state.json", BROKEN_FILES[kind])
    result = connector.read(connector.config(), state=path, now=AFTER_CLOSE)
    error = assert_config_error(result)
    assert "state" in error["message"], error
    no_request_was_made(connector)


# --------------------------------------------------------------------------------------------
# the config: validated against the spec, every violation a config_error naming the field
# --------------------------------------------------------------------------------------------

BAD_FIELDS = {
    "api_key-number": ("api_key", 123),
    "api_key-null": ("api_key", None),
    "api_key-object": ("api_key", {"key": "x"}),
    "stock_ticker-list": ("stock_ticker", ["TSLA"]),
    "stock_ticker-number": ("stock_ticker", 7),
    "stock_ticker-empty": ("stock_ticker", ""),
    "stock_ticker-symbols": ("stock_ticker", "TSLA;rm -rf /"),
    "start_date-month-13": ("start_date", "2022-13-45"),
    "start_date-feb-30": ("start_date", "2022-02-30"),
    "start_date-word": ("start_date", "yesterday"),
    "start_date-number": ("start_date", 20220301),
    "start_date-datetime": ("start_date", "2022-03-01T00:00:00Z"),
    "start_date-empty": ("start_date", ""),
    "start_date-bool": ("start_date", True),
    "lookback_days-string": ("lookback_days", "3"),
    "lookback_days-negative": ("lookback_days", -1),
    "lookback_days-fraction": ("lookback_days", 1.5),
    "lookback_days-huge": ("lookback_days", 10 ** 12),
    "base_url-number": ("base_url", 5),
    "base_url-ftp": ("base_url", "ftp://127.0.0.1/"),
    "requests_per_minute-string": ("requests_per_minute", "5"),
    "requests_per_minute-negative": ("requests_per_minute", -1),
}


def bad_config(connector, case) -> tuple:
    field, value = BAD_FIELDS[case]
    config = connector.config(**{field: value})
    if value is None:
        config[field] = None
    return field, config


@pytest.mark.parametrize("case", sample_under_wrapper(list(BAD_FIELDS), keep=[
    "api_key-number", "stock_ticker-list", "start_date-month-13", "lookback_days-negative", "base_url-ftp"]))
def test_config_violating_the_spec_is_a_config_error_naming_the_field(connector, case):
    field, config = bad_config(connector, case)
    assert_config_error(connector.read(config, now=AFTER_CLOSE), field)
    no_request_was_made(connector)


@pytest.mark.parametrize("case", sample_under_wrapper(
    ["api_key-number", "stock_ticker-list", "start_date-month-13", "start_date-word", "start_date-number",
     "lookback_days-negative"], keep=["api_key-number", "start_date-month-13"]))
def test_check_and_discover_validate_the_config_too(connector, case):
    field, config = bad_config(connector, case)
    assert_check_rejects(connector.check(config, now=AFTER_CLOSE), field)
    assert_config_error(connector.discover(config), field)
    no_request_was_made(connector)


def test_config_missing_a_required_field_names_it(connector):
    for field in ("api_key", "stock_ticker"):
        assert_config_error(connector.read(connector.config(**{field: DROP}), now=AFTER_CLOSE), field)
    no_request_was_made(connector)


RUNTIME_SETTINGS = {
    "request_timeout_seconds-string": ("request_timeout_seconds", "30"),
    "request_timeout_seconds-negative": ("request_timeout_seconds", -1),
    "retry_max_seconds-string": ("retry_max_seconds", "ten"),
    "retry_max_seconds-negative": ("retry_max_seconds", -5),
    "rate_limit_wait_seconds-string": ("rate_limit_wait_seconds", "0.2"),
    # Past any sane bound: in milliseconds they overflowed (a timeout of 1e17 s disabled it, a
    # wait of 1e300 s shifted out of range, a budget of 1e300 s gave up on the first 429).
    "request_timeout_seconds-huge": ("request_timeout_seconds", 1e17),
    "retry_max_seconds-huge": ("retry_max_seconds", 1e300),
    "rate_limit_wait_seconds-huge": ("rate_limit_wait_seconds", 1e300),
    "requests_per_minute-huge": ("requests_per_minute", 1e300),
    # One request in 1e298 minutes: the interval overflowed a 64-bit count of milliseconds.
    "requests_per_minute-tiny": ("requests_per_minute", 1e-300),
    "concurrency-too-many": ("concurrency", 65),
}


@pytest.mark.parametrize("case", sample_under_wrapper(list(RUNTIME_SETTINGS), keep=["request_timeout_seconds-string"]))
def test_runtime_settings_of_the_wrong_type_are_config_errors(connector, case):
    """The runtime reads these config keys itself (docs/LUA_API.md); a value it cannot use must
    not be silently replaced by the default (a timeout of "30" is not 60 s)."""
    field, value = RUNTIME_SETTINGS[case]
    result = connector.read(connector.config(**{field: value}), now=AFTER_CLOSE)
    assert_config_error(result, field)
    no_request_was_made(connector)


# --------------------------------------------------------------------------------------------
# the state: dates that are not dates, fields of the wrong type
# --------------------------------------------------------------------------------------------

NOT_DATES = {"month-13": "2022-13-45", "feb-30": "2022-02-30", "word": "yesterday", "number": 20220301,
             "datetime": "2022-03-08T00:00:00Z", "empty": "", "list": ["2022-03-08"]}
STATE_FORMS = {
    "legacy-blob": lambda d: {STREAM: {"date": d}},
    "stream-list": lambda d: [stream_state_message({"date": d})],
    "per-ticker": lambda d: [stream_state_message({"date": "2022-03-01", "tickers": {"TSLA": {"date": d}}})],
}


@pytest.mark.parametrize("form,value", [
    pytest.param(form, value, id=f"{value}-{form}",
                 marks=() if (form, value) in {("legacy-blob", "month-13"), ("stream-list", "word"),
                                               ("per-ticker", "number")} else slow_under_wrapper)
    for value in NOT_DATES for form in STATE_FORMS])
def test_state_date_that_is_not_a_date(connector, form, value):
    state = STATE_FORMS[form](NOT_DATES[value])
    result = connector.read(connector.config(), state=state, now=AFTER_CLOSE)
    assert_config_error(result, "state", "date")
    assert "COMPLETE" not in result.statuses
    no_request_was_made(connector)


BAD_STATES = {
    "stream_state-string": [{"type": "STREAM", "stream": {"stream_descriptor": {"name": STREAM},
                                                          "stream_state": "2022-03-08"}}],
    "stream-not-object": [{"type": "STREAM", "stream": 5}],
    "no-descriptor-name": [{"type": "STREAM", "stream": {"stream_descriptor": {}, "stream_state": {}}}],
    "descriptor-name-number": [{"type": "STREAM", "stream": {"stream_descriptor": {"name": 5}, "stream_state": {}}}],
    "unknown-type": [{"type": "SIDEWAYS"}],
    "type-number": [{"type": 5}],
    "global-without-global": [{"type": "GLOBAL"}],
    "entry-string": ["STATE"],
    "stream-message-object-no-stream": {"type": "STREAM"},
}


@pytest.mark.parametrize("case", sample_under_wrapper(list(BAD_STATES), keep=[
    "stream_state-string", "unknown-type", "global-without-global"]))
def test_state_of_the_wrong_shape_is_a_config_error(connector, case):
    result = connector.read(connector.config(), state=BAD_STATES[case], now=AFTER_CLOSE)
    assert_config_error(result, "state")
    no_request_was_made(connector)


# Without a top-level date to fall back on (with one, the runtime uses it: see below).
CURSORS_OF_THE_WRONG_TYPE = {
    "tickers-string": [stream_state_message({"tickers": "TSLA"})],
    "tickers-list": [stream_state_message({"tickers": [{"TSLA": {"date": "2022-03-08"}}]})],
    "ticker-cursor-string": [stream_state_message({"tickers": {"TSLA": "2022-03-08"}})],
    "legacy-stream-state-string": {STREAM: "2022-03-08"},
}


@pytest.mark.parametrize("case", sample_under_wrapper(list(CURSORS_OF_THE_WRONG_TYPE), keep=["ticker-cursor-string"]))
def test_state_cursors_of_the_wrong_type_are_not_silently_dropped(connector, case):
    """A cursor the runtime cannot read must be reported, not ignored: ignoring it re-reads
    everything from start_date and sends every day again."""
    result = connector.read(connector.config(), state=CURSORS_OF_THE_WRONG_TYPE[case], now=AFTER_CLOSE)
    assert_config_error(result, "state")
    no_request_was_made(connector)


def test_unreadable_ticker_map_falls_back_on_the_top_level_date(connector):
    """The top-level date is the minimum over tickers, so resuming from it loses nothing."""
    state = [stream_state_message({"date": "2022-03-08", "tickers": "TSLA"})]
    result = connector.read(connector.config(), state=state, now=AFTER_CLOSE).assert_complete()
    assert result.dates() == ["2022-03-09", "2022-03-10", "2022-03-11"]


# --------------------------------------------------------------------------------------------
# the catalog: unknown streams, invalid sync modes, broken entries
# --------------------------------------------------------------------------------------------

def test_unknown_stream_is_a_config_error(connector):
    result = connector.read(connector.config(), catalog=catalog_with(name="stock_quotes"), now=AFTER_CLOSE)
    assert result.returncode != 0, result.describe()
    assert_config_error(result, "stock_quotes")
    no_request_was_made(connector)


def test_unknown_stream_next_to_a_known_one(connector):
    """The known stream is still read in full; the unknown one is a config_error; exit non-zero."""
    catalog = catalog_with()
    unknown = copy.deepcopy(catalog["streams"][0])
    unknown["stream"]["name"] = "stock_quotes"
    catalog["streams"].insert(0, unknown)
    result = connector.read(connector.config(), catalog=catalog, now=AFTER_CLOSE)
    assert result.returncode != 0, result.describe()
    assert [e["failure_type"] for e in result.errors] == ["config_error"], result.describe()
    assert "stock_quotes" in result.errors[0]["message"]
    assert result.dates() == [b["date"] for b in connector.server.published("TSLA", "2022-03-01", "2022-03-11")]
    assert {r["stream"] for r in result.records} == {STREAM}
    assert result.last_stream_state["date"] == "2022-03-11"


@pytest.mark.parametrize("mode", [
    "sideways", pytest.param("INCREMENTAL", marks=slow_under_wrapper), pytest.param("", marks=slow_under_wrapper),
    pytest.param(5, marks=slow_under_wrapper), pytest.param(None, marks=slow_under_wrapper), DROP,
    pytest.param(["incremental"], marks=slow_under_wrapper)],
    ids=["word", "upper-case", "empty", "number", "null", "missing", "list"])
def test_invalid_sync_mode_is_a_config_error(connector, mode):
    result = connector.read(connector.config(), catalog=catalog_with(sync_mode=mode), now=AFTER_CLOSE)
    assert_config_error(result, "sync_mode")
    no_request_was_made(connector)


BAD_CATALOGS = {
    "streams-string": {"streams": "stock_prices"},
    "streams-missing": {"stream": []},
    "entry-number": {"streams": [5]},
    "entry-no-stream": {"streams": [{"sync_mode": "incremental"}]},
    "stream-string": {"streams": [{"stream": "stock_prices", "sync_mode": "incremental"}]},
    "name-number": {"streams": [{"stream": {"name": 5}, "sync_mode": "incremental"}]},
    "name-empty": {"streams": [{"stream": {"name": ""}, "sync_mode": "incremental"}]},
}


@pytest.mark.parametrize("case", sample_under_wrapper(list(BAD_CATALOGS), keep=["streams-string", "entry-no-stream"]))
def test_catalog_of_the_wrong_shape_is_a_config_error(connector, case):
    result = connector.read(connector.config(), catalog=BAD_CATALOGS[case], now=AFTER_CLOSE)
    assert_config_error(result, "catalog")
    no_request_was_made(connector)


# --------------------------------------------------------------------------------------------
# huge fields (5 MB)
# --------------------------------------------------------------------------------------------

def test_huge_unknown_config_field_is_ignored(connector):
    result = connector.read(connector.config(notes="x" * BIG), now=AFTER_CLOSE).assert_complete()
    assert len(result.records) == 9


def test_huge_start_date_is_a_config_error(connector):
    result = connector.read(connector.config(start_date="2022-03-01" + "0" * BIG), now=AFTER_CLOSE)
    error = assert_config_error(result, "start_date")
    assert len(error["message"]) < 10_000, "the message need not quote 5 MB"
    no_request_was_made(connector)


@pytest.mark.parametrize("field", ["api_key", "stock_ticker"])
def test_huge_config_value_fails_promptly(connector, field):
    """A 5 MB key or ticker passes the spec, but no request can carry it: the run must fail at
    once (here within 5 s), not retry as if the network were down. retry_max_seconds keeps
    a failure of this test short; with the default (600 s) such a run lasts 10 minutes."""
    value = ("k" if field == "api_key" else "A") * BIG
    if field == "api_key":
        connector.secrets.append(value)
    result = connector.read(connector.config(**{field: value}, retry_max_seconds=5), now=AFTER_CLOSE, timeout=30)
    error = the_error(result)
    assert error["failure_type"] in ("config_error", "system_error"), \
        f"{error['failure_type']}: {error['message'][:300]} (retried for {result.elapsed:.1f} s)"
    assert not [m for m in result.of("LOG") if "retry" in m["log"]["message"]], "retried"


def test_huge_catalog_field_is_ignored(connector):
    catalog = catalog_with()
    catalog["streams"][0]["stream"]["description"] = "x" * BIG
    result = connector.read(connector.config(), catalog=catalog, now=AFTER_CLOSE).assert_complete()
    assert len(result.records) == 9


def test_huge_catalog_stream_name_is_a_config_error(connector):
    result = connector.read(connector.config(), catalog=catalog_with(name="s" * BIG), now=AFTER_CLOSE)
    error = assert_config_error(result)
    assert len(error["message"]) < 10_000
    no_request_was_made(connector)


def test_huge_field_in_the_stream_state_is_dropped(connector):
    state = [stream_state_message({"date": "2022-03-08", "notes": "x" * BIG})]
    result = connector.read(connector.config(), state=state, now=AFTER_CLOSE).assert_complete()
    assert result.dates() == ["2022-03-09", "2022-03-10", "2022-03-11"]
    assert len(result.stdout) < 100_000


def test_huge_state_date_is_a_config_error(connector):
    result = connector.read(connector.config(), state={STREAM: {"date": "2" * BIG}}, now=AFTER_CLOSE)
    error = assert_config_error(result, "state")
    assert len(error["message"]) < 10_000
    no_request_was_made(connector)


def test_huge_state_of_another_stream_is_kept(connector):
    """The legacy blob keeps other streams' states (the platform may still need them)."""
    state = {STREAM: {"date": "2022-03-08"}, "other_stream": {"notes": "x" * BIG}}
    result = connector.read(connector.config(), state=state, now=AFTER_CLOSE).assert_complete()
    assert result.dates() == ["2022-03-09", "2022-03-10", "2022-03-11"]
    assert result.states[-1]["data"]["other_stream"] == {"notes": "x" * BIG}


# --------------------------------------------------------------------------------------------
# the command line
# --------------------------------------------------------------------------------------------

def usage_cases(connector) -> dict:
    config = connector.file("config.json", connector.config())
    catalog = CATALOGS / "incremental_configured_catalog.json"
    return {
        "unknown-command": ["frobnicate", "--config", config],
        "command-in-capitals": ["SPEC"],
        "two-commands": ["spec", "check", "--config", config],
        "config-without-value": ["check", "--config"],
        "config-empty-value": ["check", "--config="],
        "catalog-without-value": ["read", "--config", config, "--catalog"],
        "state-without-value": ["read", "--config", config, "--catalog", catalog, "--state"],
        "script-without-value": ["spec", "--script"],
        "discover-without-config": ["discover"],
        "read-without-anything": ["read"],
        "read-without-config": ["read", "--catalog", catalog],
        "single-dash-flag": ["check", "-config", config],
        "unknown-flag-with-value": ["check", "--config", config, "--verbose=3"],
    }


def test_usage_errors_exit_2_with_usage_on_stderr(connector):
    for name, args in usage_cases(connector).items():
        result = connector.run(*args, protocol=False)
        assert result.returncode == 2, f"{name}\n" + result.describe()
        assert "usage" in result.stderr.lower(), f"{name}\n" + result.describe()
        assert result.stdout == "", f"{name}: usage errors must not write to stdout"
    no_request_was_made(connector)
