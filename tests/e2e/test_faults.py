"""Reliability (issue 5): retries, backoff, Retry-After, 429 waits, the request budget, bounded
give-up, timeouts, SIGTERM and a closed stdout, against the local server's fault injection.

Every read has its clock fixed (libfaketime and the server's clock) at Friday 2022-03-11 17:00
New York, so the expected records are the server's published bars.
"""

from __future__ import annotations

import datetime as dt
import re
import signal
import socket
import subprocess

import pytest

from .conftest import (
    FORBIDDEN, PAGE_SIZE, STREAM, UNKNOWN_KEY, WRAPPED, Connector, documented, script_copy, timing,
    utc)

AFTER_CLOSE = utc(2022, 3, 11, 22, 0)
WAIT = re.compile(r"; retry (\d+) in (\d+(?:\.\d+)?) s$")


def expected(server, ticker="TSLA", first="2022-03-01", last="2022-03-11"):
    return server.expected(ticker, first, last)


def retry_warnings(result) -> list:
    """(attempt, seconds, text) of every 'retry N in X s' WARN line, in order."""
    found = []
    for message in result.of("LOG"):
        log = message["log"]
        match = WAIT.search(log["message"])
        if match:
            assert log["level"] == "WARN", log
            found.append((int(match.group(1)), float(match.group(2)), log["message"]))
    return found


def rate_limited(result) -> list:
    """The RUNNING stream statuses that carry a RATE_LIMITED reason, as (emitted_at, status)."""
    found = []
    for trace in result.traces("STREAM_STATUS"):
        status = trace["stream_status"]
        if any(r["type"] == "RATE_LIMITED" for r in status.get("reasons") or []):
            found.append((trace["emitted_at"], status))
    return found


def requests_in_order(server) -> list:
    """The server's log in the order the requests arrived (it logs them as they end)."""
    return sorted(server.log(), key=lambda e: e["time"])


def statuses_in_log(server) -> list:
    return [e["status"] for e in requests_in_order(server)]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def assert_failed_cleanly(result, failure_type: str):
    """Non-zero exit; the last two messages are INCOMPLETE and the one TRACE error."""
    assert result.returncode != 0, result.describe()
    assert [e["failure_type"] for e in result.errors] == [failure_type], result.describe()
    last = result.messages[-2:]
    assert [m["type"] for m in last] == ["TRACE", "TRACE"], result.describe()
    assert last[0]["trace"]["type"] == "STREAM_STATUS", result.describe()
    assert last[0]["trace"]["stream_status"]["status"] == "INCOMPLETE", result.describe()
    assert last[1]["trace"]["type"] == "ERROR", result.describe()
    assert "COMPLETE" not in result.statuses


def assert_states_match_records(result):
    """Every STATE covers exactly the records before it: per ticker, its cursor is the last date
    emitted, and recordCount is the number of records since the previous STATE."""
    last_date, since = {}, 0
    for message in result.messages:
        if message["type"] == "RECORD":
            data = message["record"]["data"]
            assert data["date"] >= last_date.get(data["stock_ticker"], ""), "records went backwards"
            last_date[data["stock_ticker"]] = data["date"]
            since += 1
        elif message["type"] == "STATE":
            state = message["state"]
            stream_state = state["stream"]["stream_state"]
            cursors = {t: c["date"] for t, c in stream_state.get("tickers", {}).items()}
            assert cursors == last_date, (stream_state, last_date)
            assert state["sourceStats"]["recordCount"] == since, (state, since)
            since = 0


# --------------------------------------------------------------------------------------------
# retried failures
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
def test_failures_then_success_gives_every_record(connector, status):
    """Two failures (Retry-After: 0, so no wait) then success: every record once, exit 0."""
    connector.server.faults(fail_next=2, status=status, retry_after=0)
    result = connector.read(connector.config(), now=AFTER_CLOSE).assert_complete()
    assert [documented(d) for d in result.data] == expected(connector.server)
    assert statuses_in_log(connector.server) == [status, status, 200]
    warnings = retry_warnings(result)
    assert [(a, s) for a, s, _ in warnings] == [(1, 0.0), (2, 0.0)], result.describe()
    assert all(f"HTTP {status}" in text for _, _, text in warnings), warnings
    assert result.last_stream_state["date"] == "2022-03-11"


def test_backoff_is_exponential_with_jitter(connector):
    """Without Retry-After: the n-th wait is in [cap/2, cap], cap = 1 s, 2 s, ..."""
    connector.server.faults(fail_next=2, status=503)
    result = connector.read(connector.config(), now=AFTER_CLOSE).assert_complete()
    assert [documented(d) for d in result.data] == expected(connector.server)
    waits = [s for _, s, _ in retry_warnings(result)]
    assert len(waits) == 2, result.describe()
    assert 0.5 <= waits[0] <= 1.0, waits
    assert 1.0 <= waits[1] <= 2.0, waits
    if not WRAPPED:
        assert result.elapsed >= sum(waits) - 0.1, (result.elapsed, waits)


def test_truncated_body_is_retried(connector):
    connector.server.faults(truncate_next=1)
    result = connector.read(connector.config(), now=AFTER_CLOSE).assert_complete()
    assert [documented(d) for d in result.data] == expected(connector.server)
    assert [e["fault"] for e in requests_in_order(connector.server)] == ["truncate", None]
    assert len(retry_warnings(result)) == 1, result.describe()


def test_closed_connection_is_retried(connector):
    connector.server.faults(close_next=1)
    result = connector.read(connector.config(), now=AFTER_CLOSE).assert_complete()
    assert [documented(d) for d in result.data] == expected(connector.server)
    assert [e["fault"] for e in requests_in_order(connector.server)] == ["close", None]
    assert len(retry_warnings(result)) == 1, result.describe()


def test_garbage_bodies_are_retried(connector):
    """200 with an HTML body (a lying proxy): not JSON, so retried, never parsed as data."""
    connector.server.faults(garbage_next=1)
    result = connector.read(connector.config(), now=AFTER_CLOSE).assert_complete()
    assert [documented(d) for d in result.data] == expected(connector.server)
    assert [e["fault"] for e in requests_in_order(connector.server)] == ["garbage", None]
    warnings = retry_warnings(result)
    assert len(warnings) == 1 and all("JSON" in text for _, _, text in warnings), result.describe()


# --------------------------------------------------------------------------------------------
# Retry-After and 429
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_is_honoured(connector, status):
    connector.server.faults(fail_next=1, status=status, retry_after=1)
    result = connector.read(connector.config(), now=AFTER_CLOSE).assert_complete()
    assert [documented(d) for d in result.data] == expected(connector.server)
    assert [s for _, s, _ in retry_warnings(result)] == [1.0], result.describe()
    if not WRAPPED:
        assert result.elapsed >= 1.0, result.elapsed
    limited = rate_limited(result)
    if status == 429:
        assert len(limited) == 1, result.describe()
        emitted_at, stream_status = limited[0]
        assert stream_status["status"] == "RUNNING"
        assert stream_status["stream_descriptor"]["name"] == STREAM
        reset = stream_status["reasons"][0]["rate_limited"]["quota_reset"]
        assert 900 <= reset - emitted_at <= 1100, (reset, emitted_at)
    else:
        assert limited == [], "only a 429 is a rate limit"


def test_429_without_retry_after_waits_and_doubles(connector):
    """rate_limit_wait_seconds sets the first wait (0.2 s here), doubling; each wait is announced
    by a WARN line and a RUNNING status with a RATE_LIMITED reason, before the records."""
    connector.server.faults(fail_next=3, status=429)
    result = connector.read(connector.config(rate_limit_wait_seconds=0.2), now=AFTER_CLOSE).assert_complete()
    assert [documented(d) for d in result.data] == expected(connector.server)
    assert statuses_in_log(connector.server) == [429, 429, 429, 200]
    warnings = retry_warnings(result)
    assert [a for a, _, _ in warnings] == [1, 2, 3], result.describe()
    for (_, seconds, text), cap in zip(warnings, [0.2, 0.4, 0.8]):
        assert cap / 2 - 0.05 <= seconds <= cap + 0.05, (seconds, cap)
        assert "429" in text, text
    limited = rate_limited(result)
    assert len(limited) == 3, result.describe()
    for emitted_at, status in limited:
        assert status["status"] == "RUNNING"
        assert status["reasons"][0]["rate_limited"]["quota_reset"] > emitted_at
    types = [m["type"] for m in result.messages]
    assert types.index("RECORD") > max(i for i, m in enumerate(result.messages)
                                       if m["type"] == "LOG" and "retry" in m["log"]["message"])


@timing
def test_429_default_first_wait_is_long_enough_for_a_minute_window(connector):
    """Without rate_limit_wait_seconds, the first wait is 7.5 to 15 s (15 s doubling reaches a
    one-minute window). SIGTERM during the wait ends the run at once."""
    connector.server.faults(fail_after=0, status=429)
    run = connector.start_read(connector.config(), now=AFTER_CLOSE)
    warn = run.wait_for(lambda m: m["type"] == "LOG" and "retry 1 in" in m["log"]["message"])
    seconds = float(WAIT.search(warn["log"]["message"]).group(2))
    assert 7.5 <= seconds <= 15.0, warn
    run.wait_for(lambda m: m["type"] == "TRACE" and m["trace"].get("stream_status", {}).get("reasons"))
    run.send_signal(signal.SIGTERM)
    result = run.finish(timeout=10)
    assert_failed_cleanly(result, "transient_error")
    assert "SIGTERM" in result.errors[0]["message"], result.errors
    assert statuses_in_log(connector.server) == [429], "SIGTERM during a 429 wait must not wait it out"


@timing
def test_request_budget_avoids_429(make_server, tmp_path):
    """A server allowing 120 requests a minute, a config allowing 100: requests are spaced 0.6 s
    apart (5 pages of 2 bars: at least 4 x 0.6 s), and the server never answers 429."""
    server = make_server("--page-size", "2", "--rate-limit", "120")
    connector = Connector(tmp_path, server)
    config = connector.config(requests_per_minute=100)
    result = connector.read(config, now=AFTER_CLOSE).assert_complete()
    assert [documented(d) for d in result.data] == expected(server)
    log = requests_in_order(server)
    assert len(log) == 5, log
    assert [e["status"] for e in log] == [200] * 5, "no 429 with the budget"
    minimum = (len(log) - 1) * 60 / 100
    assert result.elapsed >= minimum - 0.02, (result.elapsed, minimum)
    times = [dt.datetime.fromisoformat(e["time"]) for e in log]
    gaps = [(b - a).total_seconds() for a, b in zip(times, times[1:])]
    assert min(gaps) >= 0.5, gaps


# --------------------------------------------------------------------------------------------
# giving up
# --------------------------------------------------------------------------------------------

def test_server_that_never_recovers_fails_in_bounded_time(connector):
    """The first request succeeds (one ticker is read), then every request fails: the state of
    that ticker, INCOMPLETE, a transient_error, exit non-zero, within retry_max_seconds (+ a
    margin). (The tickers may be read concurrently: either one can be the first.)"""
    connector.server.faults(fail_after=1, status=500)
    retry_max = 2
    config = connector.config(stock_ticker="AAPL,MSFT", retry_max_seconds=retry_max)
    result = connector.read(config, now=AFTER_CLOSE)
    assert_failed_cleanly(result, "transient_error")
    # Each retry's announced wait counts against the budget: what was waited stays within it.
    assert sum(seconds for _, seconds, _ in retry_warnings(result)) <= retry_max, result.describe()
    assert "gave up" in result.errors[0]["message"], result.errors
    assert result.records, result.describe()
    done = result.data[0]["stock_ticker"]
    other = ({"AAPL", "MSFT"} - {done}).pop()
    assert result.dates(done) == [b["date"] for b in connector.server.published(done, "2022-03-01", "2022-03-11")]
    assert result.dates(other) == []
    assert result.last_stream_state.get("tickers") == {done: {"date": "2022-03-11"}}, result.describe()
    assert "date" not in result.last_stream_state, f"{other} has no cursor: no top-level date yet"
    assert_states_match_records(result)
    statuses = statuses_in_log(connector.server)
    assert statuses[0] == 200 and len(statuses) >= 2 and set(statuses[1:]) == {500}, statuses
    assert len(retry_warnings(result)) == len(statuses) - 2


def test_retry_after_beyond_the_budget_gives_up_at_once(connector):
    connector.server.faults(fail_after=0, status=429, retry_after=30)
    result = connector.read(connector.config(retry_max_seconds=5), now=AFTER_CLOSE)
    assert_failed_cleanly(result, "transient_error")
    assert retry_warnings(result) == [], "a 30 s Retry-After cannot fit in 5 s: no point waiting"
    assert statuses_in_log(connector.server) == [429]


def test_huge_retry_after_gives_up_at_once_without_overflow(connector):
    """Retry-After: 9223372036854774 seconds overflowed a signed multiply (the sanitizer build
    aborted; the release build asked again at once): now it is past any budget, and said so."""
    connector.server.faults(fail_after=0, status=429, retry_after=9223372036854774)
    result = connector.read(connector.config(retry_max_seconds=5), now=AFTER_CLOSE)
    assert_failed_cleanly(result, "transient_error")
    assert retry_warnings(result) == []
    assert statuses_in_log(connector.server) == [429]


def test_slow_server_times_out_and_fails_cleanly(make_server, tmp_path):
    """Every answer takes 3 s, request_timeout_seconds is 1: each attempt times out after 1 s,
    is retried (the first wait, at most 1 s, fits in retry_max_seconds = 3), and the run gives up
    within retry_max_seconds + a timeout + a margin."""
    server = make_server()
    connector = Connector(tmp_path, server)
    server.faults(delay_ms=3000)
    result = connector.read(connector.config(request_timeout_seconds=1, retry_max_seconds=3), now=AFTER_CLOSE)
    assert_failed_cleanly(result, "transient_error")
    warnings = retry_warnings(result)
    assert warnings and all("timed out" in text.lower() for _, _, text in warnings), result.describe()
    assert "timed out" in result.errors[0]["message"].lower(), result.errors
    assert result.records == []


def test_slow_server_timeout_is_retried_until_it_answers(make_server, tmp_path):
    """The first attempt times out; the server is fast again before the retry: every record."""
    server = make_server()
    connector = Connector(tmp_path, server)
    server.faults(delay_ms=3000)
    run = connector.start_read(connector.config(request_timeout_seconds=1), now=AFTER_CLOSE)
    warn = run.wait_for(lambda m: m["type"] == "LOG" and "retry 1 in" in m["log"]["message"])
    server.faults(delay_ms=0)
    result = run.finish().assert_complete()
    assert "timed out" in warn["log"]["message"].lower(), warn
    assert [documented(d) for d in result.data] == expected(server)


# --------------------------------------------------------------------------------------------
# errors that are not retried
# --------------------------------------------------------------------------------------------

REJECTIONS = {
    # kind: (config fields, script edit or None, words of the API that must be quoted, status)
    "401": ({"api_key": UNKNOWN_KEY}, None, ["Unknown API Key", "api_key"], 401),
    "403": ({"api_key": FORBIDDEN}, None, ["You are not entitled to this data"], 403),
    "400": ({}, ("range/1/day/", "range/1/days/"), ["Invalid timespan: 'days'"], 400),
    "404": ({}, ('"%s/v2/aggs/ticker/', '"%s/v2/aggz/ticker/'), ["Not found."], 404),
}


@pytest.mark.parametrize("kind", list(REJECTIONS))
def test_rejected_request_is_a_config_error_with_the_apis_message(connector, tmp_path, kind):
    fields, edit, words, status = REJECTIONS[kind]
    flags = ("--script", script_copy(tmp_path, edit)) if edit else ()
    result = connector.read(connector.config(**fields), now=AFTER_CLOSE, flags=flags)
    assert_failed_cleanly(result, "config_error")
    message = result.errors[0]["message"]
    for word in words:
        assert word in message, message
    assert str(status) in message, message
    assert statuses_in_log(connector.server) == [status], "a rejected request is not retried"
    assert retry_warnings(result) == []


# --------------------------------------------------------------------------------------------
# SIGTERM and a closed stdout
# --------------------------------------------------------------------------------------------

@timing
def test_sigterm_mid_read_stops_with_consistent_state(make_server, tmp_path):
    """SIGTERM while a page is being served (slowly): exit non-zero within a few seconds; the
    last lines are INCOMPLETE and a TRACE error; every STATE matches the records before it."""
    server = make_server("--page-size", str(PAGE_SIZE))
    connector = Connector(tmp_path, server)
    server.faults(delay_ms=400)
    config = connector.config(start_date="2021-06-01")
    run = connector.start_read(config, now=AFTER_CLOSE)
    run.wait_for(lambda m: m["type"] == "STATE")
    run.send_signal(signal.SIGTERM)
    result = run.finish(timeout=15)
    assert_failed_cleanly(result, "transient_error")
    assert result.states, result.describe()
    assert_states_match_records(result)
    total = len(server.published("TSLA", "2021-06-01", "2022-03-11"))
    assert 0 < len(result.records) < total, "the run was stopped mid-way"
    assert len(result.records) % PAGE_SIZE == 0, "only whole pages are emitted"


@timing
def test_sigterm_during_a_retry_wait(connector):
    connector.server.faults(fail_after=0, status=503, retry_after=60)
    run = connector.start_read(connector.config(), now=AFTER_CLOSE)
    run.wait_for(lambda m: m["type"] == "LOG" and "retry 1 in 60.0 s" in m["log"]["message"])
    run.send_signal(signal.SIGTERM)
    result = run.finish(timeout=10)
    assert_failed_cleanly(result, "transient_error")
    assert "SIGTERM" in result.errors[0]["message"], result.errors
    assert statuses_in_log(connector.server) == [503], "a retry wait must not outlive SIGTERM"


def close_stdout_after_first_line(run) -> None:
    """What `| head -1` does: read the first line, then close the pipe."""
    first = run.proc.stdout.readline()
    assert first.startswith(b"{"), first
    run.stdout_lines.append(first.decode())
    run.proc.stdout.close()


@timing
def test_closed_stdout_exits_non_zero_saying_why_on_stderr(paged_connector):
    """No message can reach a closed stdout: stderr, the one place left, says why the run ended."""
    config = paged_connector.config(start_date="2015-01-01")
    run = paged_connector.start_read(config, now=AFTER_CLOSE, read_stdout=False)
    close_stdout_after_first_line(run)
    result = run.finish(timeout=30)
    assert result.returncode > 0, f"exit {result.returncode}: a closed stdout is a failure, not a crash"
    assert result.stderr == ("source-lua: writing to stdout failed (Broken pipe): the messages from then on were "
                             "lost\n"), result.stderr


def test_full_disk_exits_non_zero_saying_why_on_stderr(connector):
    with open("/dev/full", "w") as full:
        proc = subprocess.run(connector.argv(["spec"]), stdout=full, stderr=subprocess.PIPE, text=True, timeout=30)
    assert proc.returncode == 1
    assert "writing to stdout failed (No space left on device)" in proc.stderr, proc.stderr


@timing
def test_closed_stdout_stops_the_sync_promptly(paged_connector):
    """Once the platform has gone away nothing can be delivered: the sync must stop, not read
    every remaining page (here 37 pages at 10 requests a second: about 4 s)."""
    server = paged_connector.server
    config = paged_connector.config(start_date="2015-01-01", requests_per_minute=600)
    run = paged_connector.start_read(config, now=AFTER_CLOSE, read_stdout=False)
    close_stdout_after_first_line(run)
    result = run.finish(timeout=60)
    requests = len(server.log())
    assert result.returncode > 0
    assert "writing to stdout failed" in result.stderr, result.stderr
    assert requests <= 3, f"{requests} API requests after stdout was closed"
