"""What a user of the stock ticker tutorial expects: spec, check, read, state in and out, the
command line, and the close of the trading day. The exact output of spec, check and discover is
in the golden transcripts (tests/golden), and the acceptance suite checks it as Airbyte's does;
what is here is what neither of them shows.

Every read runs with the connector's clock (libfaketime) and the server's clock (control API)
fixed to the same instant, so the expected records are the server's published bars.
"""

from __future__ import annotations

import datetime as dt
import re
import socket

import jsonschema
import pytest

from .conftest import (
    BINARY, CANARY, CATALOGS, DROP, FORBIDDEN, KEY, SCRIPT, STREAM, UNKNOWN_KEY, documented, iso,
    key_fingerprint, ms, ny, stream_state_message, utc)

# Friday 2022-03-11, 17:00 in New York: the week's bars are all published.
AFTER_CLOSE = utc(2022, 3, 11, 22, 0)
NOT_ENTITLED = "You are not entitled to this data"


def connection_spec(connector):
    result = connector.spec()
    return result.of("SPEC")[0]["spec"]["connectionSpecification"]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------------------------
# the clock
# --------------------------------------------------------------------------------------------

def test_faked_clock_reaches_the_connector(connector):
    """libfaketime works: emitted_at is the faked instant, not the host's."""
    result = connector.read(connector.config(), now=AFTER_CLOSE).assert_complete()
    assert result.records, result.describe()
    stamps = [r["emitted_at"] for r in result.records] + [m["trace"]["emitted_at"] for m in result.of("TRACE")]
    for stamp in stamps:
        assert ms(AFTER_CLOSE) <= stamp < ms(AFTER_CLOSE) + 30_000, (stamp, ms(AFTER_CLOSE))


# --------------------------------------------------------------------------------------------
# spec
# --------------------------------------------------------------------------------------------

def test_spec_every_property_has_title_and_description(connector):
    spec = connection_spec(connector)
    assert spec["properties"], spec
    for name, prop in spec["properties"].items():
        assert isinstance(prop.get("title"), str) and prop["title"].strip(), f"{name} has no title"
        assert isinstance(prop.get("description"), str) and prop["description"].strip(), f"{name} has no description"


# --------------------------------------------------------------------------------------------
# check
# --------------------------------------------------------------------------------------------

def test_check_forbidden_key_fails_with_polygons_reason(connector):
    result = connector.check(connector.config(api_key=FORBIDDEN), now=AFTER_CLOSE)
    assert result.returncode == 0, result.describe()
    status = result.connection_status
    assert status["status"] == "FAILED", result.describe()
    assert NOT_ENTITLED in status["message"], status


def test_check_closed_port_fails_without_retrying(connector):
    """A refused connection is the answer a check needs: it is said at once, not retried."""
    config = connector.config(base_url=f"http://127.0.0.1:{closed_port()}")
    result = connector.check(config, now=AFTER_CLOSE, timeout=60)
    assert result.returncode == 0, result.describe()
    status = result.connection_status
    assert status["status"] == "FAILED", result.describe()
    assert "Cannot reach" in status.get("message", ""), status
    assert not [m for m in result.of("LOG") if "retry" in m["log"]["message"]], result.describe()


@pytest.mark.parametrize("missing", ["api_key", "stock_ticker"])
def test_check_invalid_config_fails_naming_the_field(connector, missing):
    result = connector.check(connector.config(**{missing: DROP}), now=AFTER_CLOSE)
    assert result.returncode == 0, result.describe()
    status = result.connection_status
    assert status["status"] == "FAILED", result.describe()
    assert missing in status["message"], status
    assert connector.server.log() == [], "an invalid config must not reach the API"


# --------------------------------------------------------------------------------------------
# read
# --------------------------------------------------------------------------------------------

def test_full_refresh_records_equal_the_published_bars(connector):
    config = connector.config(start_date="2022-03-01")
    schema = connector.discover(config).messages[0]["catalog"]["streams"][0]["json_schema"]
    result = connector.read(config, catalog="full_refresh", now=AFTER_CLOSE).assert_complete()
    expected = connector.server.expected("TSLA", "2022-03-01", "2022-03-11")
    assert len(expected) == 9  # 2022-03-01 .. 2022-03-11, weekdays
    assert [documented(d) for d in result.data] == expected
    validator = jsonschema.Draft7Validator(schema)
    for message in result.of("RECORD"):
        assert set(message) == {"type", "record"}
        record = message["record"]
        assert set(record) == {"stream", "data", "emitted_at"}, record
        assert record["stream"] == STREAM
        assert type(record["emitted_at"]) is int
        data = record["data"]
        assert type(data["transactions"]) is int, data
        for field in ("price", "open", "high", "low", "volume", "vwap"):
            assert type(data[field]) in (int, float), (field, data)
        assert data.get("close", data["price"]) == data["price"]
        assert not list(validator.iter_errors(data)), data


def test_full_refresh_ignores_state(connector):
    result = connector.read(connector.config(), catalog="full_refresh", now=AFTER_CLOSE,
                            state={STREAM: {"date": "2022-03-08"}}).assert_complete()
    assert result.dates() == [b["date"] for b in connector.server.published("TSLA", "2022-03-01", "2022-03-11")]


def test_api_key_travels_in_a_bearer_header_never_in_a_url(paged_connector):
    """Over several pages (next_url followed), with the canary key, which must never be printed."""
    config = paged_connector.config(api_key=CANARY, start_date="2021-06-01")
    check = paged_connector.check(config, now=AFTER_CLOSE)
    assert check.connection_status["status"] == "SUCCEEDED", check.describe()
    result = paged_connector.read(config, now=AFTER_CLOSE).assert_complete()
    assert CANARY not in check.stdout + check.stderr
    entries = paged_connector.server.log()
    assert len(entries) >= 4, entries
    assert any("cursor=" in e["query"] for e in entries), "next_url was never followed"
    for entry in entries:
        assert entry["authorization_scheme"] == "Bearer", entry
        assert entry["api_key_in_query"] is False, entry
        assert "apikey" not in entry["query"].lower(), entry
        assert entry["key_fingerprint"] == key_fingerprint(CANARY), entry
    assert CANARY not in result.stdout + result.stderr


# --------------------------------------------------------------------------------------------
# state in
# --------------------------------------------------------------------------------------------

RESUME_STATES = {
    "legacy-blob": {STREAM: {"date": "2022-03-08"}},
    "platform-list": [stream_state_message({"date": "2022-03-08"})],
    "platform-list-per-ticker": [
        stream_state_message({"date": "2022-03-08", "tickers": {"TSLA": {"date": "2022-03-08"}}})],
    "legacy-typed": [{"type": "LEGACY", "data": {STREAM: {"date": "2022-03-08"}}}],
    "legacy-blob-unknown-fields": {STREAM: {"date": "2022-03-08", "note": "x", "version": 3},
                                   "some_other_stream": {"cursor": 1}},
    "platform-list-unknown-fields": [
        dict(stream_state_message({"date": "2022-03-08", "unknown": [1, 2]}),
             sourceStats={"recordCount": 4.0}, destinationStats={"recordCount": 4.0}, id=7,
             something_new={"a": 1}),
        stream_state_message({"date": "1999-01-01"}, name="some_other_stream"),
    ],
}


@pytest.mark.parametrize("state", list(RESUME_STATES.values()), ids=list(RESUME_STATES))
def test_state_resumes_the_day_after_the_cursor(connector, state):
    result = connector.read(connector.config(), state=state, now=AFTER_CLOSE).assert_complete()
    expected = connector.server.expected("TSLA", "2022-03-09", "2022-03-11")
    assert result.dates()[:1] == ["2022-03-09"], result.describe()
    assert [documented(d) for d in result.data] == expected
    assert result.last_stream_state["date"] == "2022-03-11"


NO_STATES = {"empty-list": "[]", "empty-object": "{}", "null": "null", "empty-file": "", "blank-file": " \n",
             # a stream descriptor without stream_state (optional in the protocol)
             "stream-without-state": '[{"type": "STREAM", "stream": {"stream_descriptor": {"name": "stock_prices"}}}]'}


@pytest.mark.parametrize("text", list(NO_STATES.values()), ids=list(NO_STATES))
def test_empty_state_means_no_state(connector, text):
    result = connector.read(connector.config(), state=text, now=AFTER_CLOSE).assert_complete()
    assert result.dates() == [b["date"] for b in connector.server.published("TSLA", "2022-03-01", "2022-03-11")]


def test_state_messages_out(paged_connector):
    """STREAM states as pages arrive (a small state is outweighed by a page of records): the
    ticker's position at the last day emitted, open with that bar's key while more pages may hold
    that day, complete at the end; the legacy blob; and the count of records since the previous
    STATE."""
    config = paged_connector.config(start_date="2021-06-01")
    result = paged_connector.read(config, now=AFTER_CLOSE).assert_complete()
    assert len(result.records) > 150
    assert len(result.states) >= 3, "expected a checkpoint per page"
    since, last_date, total = 0, None, 0
    for message in result.messages:
        if message["type"] == "RECORD":
            since += 1
            last_date = message["record"]["data"]["date"]
        elif message["type"] == "STATE":
            state = message["state"]
            assert state["type"] == "STREAM", state
            assert state["stream"]["stream_descriptor"]["name"] == STREAM
            stream_state = state["stream"]["stream_state"]
            position = stream_state["tickers"]["TSLA"]
            assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", position["date"]), stream_state
            assert position["date"] == last_date, (stream_state, last_date)
            if "emitted_at_cursor" in position:
                assert position["emitted_at_cursor"] == [["TSLA", last_date]], stream_state
                day_before = (dt.date.fromisoformat(last_date) - dt.timedelta(days=1)).isoformat()
                assert stream_state["date"] == day_before, "open: complete up to the day before"
            else:
                assert stream_state["date"] == last_date, stream_state
            assert state["data"] == {STREAM: stream_state}, state
            assert state["sourceStats"]["recordCount"] == since, (state, since)
            total += state["sourceStats"]["recordCount"]
            since = 0
    assert since == 0, "records after the last STATE"
    assert total == len(result.records)
    assert result.last_stream_state == {"tickers": {"TSLA": {"date": "2022-03-11"}}, "date": "2022-03-11"}


def test_future_state_gives_no_records_and_a_state(connector):
    result = connector.read(connector.config(), state=CATALOGS / "abnormal_state.json",
                            now=AFTER_CLOSE).assert_complete()
    assert result.records == []
    assert result.states, result.describe()
    assert result.last_stream_state["date"] == "2121-01-01", "a future cursor must not move back"


# --------------------------------------------------------------------------------------------
# host time zone
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("now", [
    # Friday 17:00 NY; already Saturday in Tokyo
    pytest.param(AFTER_CLOSE, id="fri-17h00-ny"),
    # Friday 15:30 NY: the day is not complete
    pytest.param(utc(2022, 3, 11, 20, 30), id="fri-15h30-ny"),
    # Sunday 23:30 NY, after the DST change; Monday in UTC and Tokyo
    pytest.param(utc(2022, 3, 14, 3, 30), id="sun-23h30-ny-after-dst"),
])
def test_host_time_zone_does_not_matter(connector, now):
    config = connector.config(start_date="2022-03-03")
    runs = {tz: connector.read(config, now=now, tz=tz).assert_complete()
            for tz in ("UTC", "America/Los_Angeles", "Asia/Tokyo")}
    reference = runs["UTC"]
    assert reference.records, reference.describe()
    last_complete = "2022-03-10" if now == utc(2022, 3, 11, 20, 30) else "2022-03-11"
    assert reference.dates() == [b["date"] for b in connector.server.published("TSLA", "2022-03-03", last_complete)]
    for tz, run in runs.items():
        assert run.data == reference.data, tz
        assert run.last_stream_state == reference.last_stream_state, tz


# --------------------------------------------------------------------------------------------
# the script and the command line
# --------------------------------------------------------------------------------------------

def edited_script(tmp_path, old: str, new: str):
    text = SCRIPT.read_text()
    assert text.count(old) == 1, f"{old!r} is not in the script once"
    path = tmp_path / "edited_stock_prices.lua"
    path.write_text(text.replace(old, new))
    return path


def test_script_flag_runs_an_edited_copy(connector, tmp_path):
    script = edited_script(tmp_path, '    { "price", from = "c" },\n', '    { "closing_price", from = "c" },\n')
    config = connector.config()
    stock = connector.read(config, now=AFTER_CLOSE).assert_complete()
    edited = connector.read(config, now=AFTER_CLOSE, flags=("--script", script)).assert_complete()
    assert stock.records and all("price" in d for d in stock.data)
    assert len(edited.records) == len(stock.records)
    for before, after in zip(stock.data, edited.data):
        assert "price" not in after, after
        assert after["closing_price"] == before["price"]


def test_script_from_environment_variable(connector, tmp_path):
    script = edited_script(tmp_path, 'title = "Stock Ticker Spec"', 'title = "Edited Through The Environment"')
    result = connector.spec(env={"SOURCE_LUA_SCRIPT": str(script)})
    assert result.returncode == 0, result.describe()
    assert result.messages[0]["spec"]["connectionSpecification"]["title"] == "Edited Through The Environment"


def test_script_flag_wins_over_the_environment(connector, tmp_path):
    flag = edited_script(tmp_path, 'title = "Stock Ticker Spec"', 'title = "From The Flag"')
    result = connector.spec(env={"SOURCE_LUA_SCRIPT": str(tmp_path / "does-not-exist.lua")})
    assert result.returncode != 0
    result = connector.spec(flags=("--script", flag), env={"SOURCE_LUA_SCRIPT": str(tmp_path / "does-not-exist.lua")})
    assert result.returncode == 0, result.describe()
    assert result.messages[0]["spec"]["connectionSpecification"]["title"] == "From The Flag"


def test_default_script_beside_the_binary(connector):
    beside = BINARY.resolve().parent.parent / "scripts" / "stock_prices.lua"
    if not beside.exists():
        pytest.skip(f"no {beside}: this binary is not installed beside the scripts")
    result = connector.spec(script_env=False)
    assert result.returncode == 0, result.describe()
    assert [m["type"] for m in result.messages] == ["SPEC"]


def test_help_prints_usage(connector):
    result = connector.run("--help", protocol=False)
    assert result.returncode == 0, result.describe()
    assert "usage" in result.stdout.lower()
    for command in ("spec", "check", "discover", "read"):
        assert command in result.stdout


@pytest.mark.parametrize("args", [
    ["frobnicate"],
    ["spec", "--bogus"],
    ["--bogus", "spec"],
    [],
], ids=["unknown-command", "unknown-flag-after", "unknown-flag-before", "no-command"])
def test_usage_errors_exit_2(connector, args):
    result = connector.run(*args, protocol=False)
    assert result.returncode == 2, result.describe()
    assert "usage" in result.stderr.lower(), result.describe()
    assert result.stdout == "", "usage errors must not write to stdout (it carries the protocol)"


@pytest.mark.parametrize("command", ["check", "discover", "read"])
def test_missing_config_exits_2(connector, command):
    args = [command] + (["--catalog", CATALOGS / "incremental_configured_catalog.json"] if command == "read" else [])
    result = connector.run(*args, protocol=False)
    assert result.returncode == 2, result.describe()
    assert "--config" in result.stderr, result.describe()
    assert result.stdout == ""


def test_read_without_catalog_exits_2(connector):
    result = connector.run("read", "--config", connector.file("config.json", connector.config()), protocol=False)
    assert result.returncode == 2, result.describe()
    assert "--catalog" in result.stderr


# --------------------------------------------------------------------------------------------
# the close of the trading day
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("today,previous", [
    ("2022-03-10", "2022-03-09"),   # a Thursday
    ("2022-03-07", "2022-03-04"),   # a Monday
    ("2022-02-22", "2022-02-18"),   # the Tuesday after Presidents Day
    ("2022-03-14", "2022-03-11"),   # the Monday after the DST change (15:00 EDT)
])
def test_todays_bar_only_after_the_close(connector, today, previous):
    config = connector.config(start_date=iso(dt.date.fromisoformat(today) - dt.timedelta(days=8)))
    # At 15:00 the server already has today's bar (as Polygon serves a bar in progress): the
    # connector itself must not ask for a day that has not closed.
    before = connector.read(config, now=ny(today, 15, 0), server_now=ny(today, 16, 30)).assert_complete()
    assert before.records, before.describe()
    assert today not in before.dates(), before.describe()
    assert before.dates()[-1] == previous
    assert before.last_stream_state["date"] == previous
    after = connector.read(config, now=ny(today, 16, 30)).assert_complete()
    assert after.dates()[-1] == today, after.describe()
    assert after.last_stream_state["date"] == today
    assert after.dates()[:-1] == before.dates()


# --------------------------------------------------------------------------------------------
# errors during a read
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("key,words", [(UNKNOWN_KEY, "api_key"), (FORBIDDEN, NOT_ENTITLED)], ids=["401", "403"])
def test_read_rejected_key_is_a_config_error(connector, key, words):
    result = connector.read(connector.config(api_key=key), now=AFTER_CLOSE)
    assert result.returncode != 0, result.describe()
    assert result.records == []
    assert len(result.errors) == 1, result.describe()
    error = result.errors[0]
    assert error["failure_type"] == "config_error", error
    assert words in error["message"], error
    assert result.statuses[-1] == "INCOMPLETE", result.statuses
    assert "COMPLETE" not in result.statuses
    assert key not in result.stdout + result.stderr


def test_read_invalid_config_is_a_config_error(connector):
    result = connector.read(connector.config(api_key=DROP), now=AFTER_CLOSE)
    assert result.returncode != 0, result.describe()
    assert [e["failure_type"] for e in result.errors] == ["config_error"], result.describe()
    assert "api_key" in result.errors[0]["message"]
    assert connector.server.log() == []


def test_transient_failure_never_prints_the_key(connector):
    connector.server.faults(fail_after=0, status=500)
    config = connector.config(api_key=CANARY, retry_max_seconds=1)
    result = connector.read(config, now=AFTER_CLOSE)
    assert result.returncode != 0, result.describe()
    assert [e["failure_type"] for e in result.errors] == ["transient_error"], result.describe()
    assert CANARY not in result.stdout + result.stderr
    assert KEY not in result.stdout
