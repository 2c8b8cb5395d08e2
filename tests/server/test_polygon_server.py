"""Tests of the Polygon.io test server itself.

The connector's tests trust this server as a stand-in for api.polygon.io, so
its calendar, clock, pagination, error bodies and faults are checked here.
Run: /usr/bin/python3 -m pytest -q tests/server
"""

import datetime as dt
import http.client
import json
import os
import signal
import subprocess
import sys
import time
import urllib.parse

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from polygon_server import (  # noqa: E402
    FIRST_DATA_DAY, decode_cursor, is_trading_day, midnight_ms, nyse_holidays,
    parse_instant, published_bars, to_json, to_new_york, trading_days)

SERVER = os.path.join(HERE, "polygon_server.py")
KEY = "sl-test-key-0001"
CANARY = "sl-secret-d3adb33f-canary"
FORBIDDEN = "sl-forbidden-0001"
NOW = "2022-03-07T17:30:00-05:00"      # a Monday, after the close
PAGE = 7


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------

class Running:
    """A server subprocess on a free port."""

    def __init__(self, tmp_path, *args):
        port_file = str(tmp_path / "port")
        self.proc = subprocess.Popen(
            [sys.executable, SERVER, "--port", "0", "--port-file", port_file,
             "--quiet", *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.banner = self.proc.stdout.readline().strip()
        assert self.banner.startswith("listening on http://127.0.0.1:"), self.banner
        with open(port_file) as f:
            self.port = int(f.read())
        assert self.banner.endswith(":%d" % self.port)
        self.base = "http://127.0.0.1:%d" % self.port

    def request(self, method, target, body=None, headers=None, timeout=5):
        """(status, headers, raw body); target is a path or an absolute URL."""
        parts = urllib.parse.urlsplit(target)
        path = parts.path + ("?" + parts.query if parts.query else "")
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            data = json.dumps(body).encode() if body is not None else None
            conn.request(method, path, body=data, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, dict(resp.getheaders()), resp.read()
        finally:
            conn.close()

    def get(self, target, key=None, query_key=None):
        if query_key:
            sep = "&" if "?" in target else "?"
            target += sep + "apiKey=" + query_key
        headers = {"Authorization": "Bearer " + key} if key else {}
        status, headers, raw = self.request("GET", target, headers=headers)
        return status, headers, json.loads(raw) if raw.startswith(b"{") else raw

    def control(self, name, body=None):
        method = "POST" if body is not None else "GET"
        status, _, raw = self.request(method, "/_control/" + name, body=body)
        assert status == 200, raw
        return json.loads(raw)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=5)


def aggs(ticker, start, end, **query):
    path = "/v2/aggs/ticker/%s/range/1/day/%s/%s" % (ticker, start, end)
    return path + ("?" + urllib.parse.urlencode(query) if query else "")


def follow(srv, first_target, **get_args):
    """Every page of a next_url chain; the key goes in a header after page 1."""
    pages, target = [], first_target
    while target:
        status, _, body = srv.get(target, **get_args)
        assert status == 200, body
        pages.append(body)
        target = body.get("next_url")
        get_args = {"key": KEY}
    return pages


def bar_dates(results):
    return [to_new_york(dt.datetime.fromtimestamp(r["t"] / 1000, dt.timezone.utc)).date()
            for r in results]


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    server = Running(tmp_path_factory.mktemp("srv"), "--now", NOW, "--page-size", str(PAGE))
    yield server
    assert server.stop() == 0


@pytest.fixture(autouse=True)
def clean(request):
    """Each test starts with no faults, an empty log and the default clock."""
    if "srv" in request.fixturenames:
        server = request.getfixturevalue("srv")
        server.control("reset", {})
        server.control("clock", {"now": NOW})
    yield


# --------------------------------------------------------------------------
# calendar and time zone (imported functions)
# --------------------------------------------------------------------------

@pytest.mark.parametrize("day", [
    "2022-06-20",   # Juneteenth (Sunday) observed Monday
    "2021-12-24",   # Christmas (Saturday) observed Friday
    "2022-04-15",   # Good Friday
    "2024-03-29",   # Good Friday
    "2022-01-17",   # Martin Luther King Jr. Day
    "2022-02-21",   # Washington's Birthday
    "2022-05-30",   # Memorial Day
    "2020-07-03",   # Independence Day (Saturday) observed Friday
    "2022-09-05",   # Labor Day
    "2022-11-24",   # Thanksgiving
    "2017-01-02",   # New Year's Day (Sunday) observed Monday
    "2023-06-19",   # Juneteenth
    "2012-10-29",   # Hurricane Sandy
    "2022-03-05",   # a Saturday
])
def test_closed_days(day):
    assert not is_trading_day(dt.date.fromisoformat(day))


@pytest.mark.parametrize("day", [
    "2021-12-31",   # New Year 2022 is a Saturday: NYSE does not close the Friday before
    "2021-06-18",   # Juneteenth was not an NYSE holiday before 2022
    "2022-03-07",
])
def test_open_days(day):
    assert is_trading_day(dt.date.fromisoformat(day))


def test_yearly_trading_day_counts_match_nyse():
    counts = {y: len(trading_days(dt.date(y, 1, 1), dt.date(y, 12, 31)))
              for y in (2019, 2020, 2021, 2022, 2023)}
    assert counts == {2019: 252, 2020: 253, 2021: 252, 2022: 251, 2023: 250}
    assert dt.date(2022, 12, 26) in nyse_holidays(2022)


@pytest.mark.parametrize("day, utc_hour", [
    ("2022-03-11", 5), ("2022-03-14", 4),    # DST starts 2022-03-13
    ("2022-11-04", 4), ("2022-11-07", 5),    # and ends 2022-11-06
    ("2006-03-31", 5), ("2006-04-03", 4),    # old rule: first Sunday of April
    ("2006-10-27", 4), ("2006-10-30", 5),    # ... to last Sunday of October
])
def test_bar_timestamp_is_new_york_midnight(day, utc_hour):
    expected = dt.datetime.fromisoformat(day).replace(hour=utc_hour, tzinfo=dt.timezone.utc)
    assert midnight_ms(dt.date.fromisoformat(day)) == int(expected.timestamp()) * 1000


def test_exponent_floats_and_go_style_numbers():
    assert to_json(published_bars("AAPL", dt.date(2022, 3, 7), dt.date(2022, 3, 7),
                                  parse_instant(NOW))[0]).startswith('{"date":"2022-03-07","v":')
    from polygon_server import ExpFloat
    assert to_json({"v": ExpFloat(1234567.8), "c": 173.0, "o": 1.5}) == \
        '{"v":1.2345678e+06,"c":173,"o":1.5}'


def test_bars_are_sane_and_deterministic():
    now = parse_instant("2024-01-01T00:00:00Z")
    bars = published_bars("MSFT", dt.date(2021, 1, 1), dt.date(2023, 12, 31), now)
    assert bars == published_bars("MSFT", dt.date(2021, 1, 1), dt.date(2023, 12, 31), now)
    assert len(bars) == 252 + 251 + 250
    for b in bars:
        assert b["h"] >= max(b["o"], b["c"]) and b["l"] <= min(b["o"], b["c"])
        assert b["l"] <= b["vw"] <= b["h"] and b["l"] > 0
        assert isinstance(b["n"], int) and b["n"] > 0
    floats = [b["v"] for b in bars if isinstance(b["v"], float)]
    assert any(v != int(v) for v in floats), "some volumes have a fractional part"
    assert len(floats) < len(bars) / 2, "but most are integers"
    assert published_bars("MSFT", dt.date(2021, 1, 4), dt.date(2021, 1, 4), now) != \
        published_bars("IBM", dt.date(2021, 1, 4), dt.date(2021, 1, 4), now)


def test_no_data_before_2000_and_for_nodata():
    now = parse_instant(NOW)
    bars = published_bars("AAPL", dt.date(1999, 12, 1), dt.date(2000, 1, 10), now)
    assert bars[0]["date"] == FIRST_DATA_DAY.isoformat()
    assert published_bars("NODATA", dt.date(2022, 1, 1), dt.date(2022, 3, 1), now) == []


# --------------------------------------------------------------------------
# the HTTP API
# --------------------------------------------------------------------------

def test_success_body_shape(srv):
    status, headers, body = srv.get(aggs("AAPL", "2022-03-01", "2022-03-04"), key=KEY)
    assert status == 200 and headers["Content-Type"] == "application/json"
    assert list(body) == ["ticker", "queryCount", "resultsCount", "adjusted", "results",
                          "status", "request_id", "count"]
    assert body["ticker"] == "AAPL" and body["status"] == "OK" and body["adjusted"] is True
    assert body["queryCount"] == body["resultsCount"] == body["count"] == 4
    assert len(body["request_id"]) == 32 and headers["X-Request-Id"] == body["request_id"]
    assert list(body["results"][0]) == ["v", "vw", "o", "c", "h", "l", "t", "n"]


def test_pagination_chain_gives_every_bar_once(srv):
    truth = srv.control("published?ticker=AAPL&from=2021-12-01&to=2022-03-07")
    pages = follow(srv, aggs("AAPL", "2021-12-01", "2022-03-07"), query_key=KEY)
    results = [r for p in pages for r in p["results"]]
    assert all(len(p["results"]) <= PAGE for p in pages) and len(pages) > 5
    assert [dict(date=d.isoformat(), **r) for d, r in zip(bar_dates(results), results)] == truth
    assert "next_url" not in pages[-1]


def test_pagination_desc_and_small_limit(srv):
    truth = srv.control("published?ticker=SPY&from=2022-01-01&to=2022-02-28")
    pages = follow(srv, aggs("SPY", "2022-01-01", "2022-02-28", sort="desc", limit=5), key=KEY)
    results = [r for p in pages for r in p["results"]]
    assert all(len(p["results"]) <= 5 for p in pages)
    assert [r["t"] for r in results] == [b["t"] for b in reversed(truth)]


def test_next_url_shape_has_no_key(srv):
    _, _, body = srv.get(aggs("AAPL", "2022-01-01", "2022-03-07"), query_key=CANARY)
    url = urllib.parse.urlsplit(body["next_url"])
    assert body["next_url"].startswith(srv.base + "/v2/aggs/ticker/AAPL/range/1/day/")
    assert CANARY not in body["next_url"] and "apikey" not in body["next_url"].lower()
    assert list(urllib.parse.parse_qs(url.query)) == ["cursor"]
    assert decode_cursor(urllib.parse.parse_qs(url.query)["cursor"][0]) == \
        {"limit": "5000", "sort": "asc"}
    # the moving bound is the next bar's ms timestamp, the other stays as given
    assert url.path.endswith("/%d/2022-03-07" % midnight_ms(dt.date(2022, 1, 12)))
    status, _, _ = srv.get(body["next_url"])
    assert status == 401, "following next_url still needs the key"


def test_ms_timestamps_as_bounds(srv):
    lo, hi = midnight_ms(dt.date(2022, 3, 1)), midnight_ms(dt.date(2022, 3, 3))
    _, _, body = srv.get(aggs("AAPL", lo, hi), key=KEY)
    assert bar_dates(body["results"]) == [dt.date(2022, 3, d) for d in (1, 2, 3)]
    _, _, body = srv.get(aggs("AAPL", lo + 1, hi), key=KEY)
    assert bar_dates(body["results"]) == [dt.date(2022, 3, 2), dt.date(2022, 3, 3)]


def test_dst_timestamps_over_http(srv):
    srv.control("clock", {"now": "2022-12-31T00:00:00Z"})
    _, _, body = srv.get(aggs("AAPL", "2022-03-11", "2022-03-14"), key=KEY)
    stamps = [dt.datetime.fromtimestamp(r["t"] / 1000, dt.timezone.utc) for r in body["results"]]
    assert [s.isoformat() for s in stamps] == ["2022-03-11T05:00:00+00:00",
                                               "2022-03-14T04:00:00+00:00"]


@pytest.mark.parametrize("target", [
    aggs("NODATA", "2022-01-01", "2022-03-07"),
    aggs("aapl", "2022-01-01", "2022-03-07"),           # malformed: lower case
    aggs("AAPL", "2022-03-05", "2022-03-06"),           # a weekend
    aggs("AAPL", "1999-01-01", "1999-12-31"),           # before the data set
    aggs("AAPL", "2022-03-08", "2022-03-31"),           # the future
    "/v2/aggs/ticker/AAPL/range/1/week/2022-01-01/2022-03-07",
])
def test_empty_answers_have_no_results_key(srv, target):
    status, _, body = srv.get(target, key=KEY)
    assert status == 200 and body["status"] == "OK"
    assert "results" not in body and "next_url" not in body
    assert body["resultsCount"] == body["queryCount"] == 0


def test_holidays_have_no_bar(srv):
    srv.control("clock", {"now": "2022-12-31T00:00:00Z"})
    _, _, body = srv.get(aggs("AAPL", "2021-12-23", "2021-12-28"), key=KEY)
    assert bar_dates(body["results"]) == [dt.date(2021, 12, 23), dt.date(2021, 12, 27),
                                          dt.date(2021, 12, 28)]
    _, _, body = srv.get(aggs("AAPL", "2022-06-17", "2022-06-21"), key=KEY)
    assert bar_dates(body["results"]) == [dt.date(2022, 6, 17), dt.date(2022, 6, 21)]
    _, _, body = srv.get(aggs("AAPL", "2022-04-14", "2022-04-18"), key=KEY)
    assert bar_dates(body["results"]) == [dt.date(2022, 4, 14), dt.date(2022, 4, 18)]


def test_todays_bar_appears_at_the_close(srv):
    target = aggs("AAPL", "2022-03-04", "2022-03-31", sort="desc")
    latest = lambda body: bar_dates(body["results"])[0]  # noqa: E731
    srv.control("clock", {"now": "2022-03-07T15:59:59-05:00"})
    _, _, body = srv.get(target, key=KEY)
    assert latest(body) == dt.date(2022, 3, 4)
    srv.control("clock", {"now": "2022-03-07T21:00:00Z"})    # 16:00 EST
    _, _, body = srv.get(target, key=KEY)
    assert latest(body) == dt.date(2022, 3, 7)
    # after DST starts the close is 20:00Z
    srv.control("clock", {"now": "2022-03-14T19:59:00Z"})
    _, _, body = srv.get(target, key=KEY)
    assert latest(body) == dt.date(2022, 3, 11)
    srv.control("clock", {"now": "2022-03-14T20:00:00Z"})
    _, _, body = srv.get(target, key=KEY)
    assert latest(body) == dt.date(2022, 3, 14)


def test_clock_can_return_to_real_time(srv):
    assert srv.control("clock", {"now": None})["fixed"] is False
    now = parse_instant(srv.control("clock")["now"])
    assert abs((now - dt.datetime.now(dt.timezone.utc)).total_seconds()) < 60


# --------------------------------------------------------------------------
# errors
# --------------------------------------------------------------------------

def test_auth_errors(srv):
    target = aggs("AAPL", "2022-03-01", "2022-03-04")
    status, _, body = srv.get(target)
    assert status == 401 and list(body) == ["status", "request_id", "error"]
    assert body["status"] == "ERROR" and body["error"] == "API Key was not provided"
    status, _, body = srv.get(target, key="nope")
    assert status == 401 and body["error"] == "Unknown API Key"
    status, _, body = srv.get(target, query_key="nope")
    assert status == 401 and body["error"] == "Unknown API Key"
    status, _, body = srv.get(target, key=FORBIDDEN)
    assert status == 403 and body["status"] == "NOT_AUTHORIZED"
    assert body["message"] == ("You are not entitled to this data. "
                               "Please upgrade your plan at https://polygon.io/pricing")
    assert srv.get(target, key=CANARY)[0] == 200
    assert srv.get(target, query_key=KEY)[0] == 200


@pytest.mark.parametrize("target, fragment", [
    (aggs("AAPL", "2022-13-01", "2022-03-04"), "time parameter: 'from'"),
    (aggs("AAPL", "2022-03-01", "yesterday"), "time parameter: 'to'"),
    (aggs("AAPL", "2022-03-04", "2022-03-01"), "cannot be a time that occurs before"),
    (aggs("AAPL", "2022-03-01", "2022-03-04", limit=50001), "'max' tag"),
    (aggs("AAPL", "2022-03-01", "2022-03-04", limit=0), "'min' tag"),
    (aggs("AAPL", "2022-03-01", "2022-03-04", sort="up"), "'Sort'"),
    ("/v2/aggs/ticker/AAPL/range/1/days/2022-03-01/2022-03-04", "timespan"),
])
def test_bad_requests(srv, target, fragment):
    status, _, body = srv.get(target, key=KEY)
    assert status == 400 and body["status"] == "ERROR" and fragment in body["error"]


def test_limit_50000_is_allowed(srv):
    assert srv.get(aggs("AAPL", "2022-03-01", "2022-03-04", limit=50000), key=KEY)[0] == 200


def test_rate_limit(tmp_path):
    server = Running(tmp_path, "--now", NOW, "--rate-limit", "3")
    try:
        target = aggs("AAPL", "2022-03-01", "2022-03-04")
        assert [server.get(target, key=KEY)[0] for _ in range(3)] == [200] * 3
        status, _, body = server.get(target, key=KEY)
        assert status == 429 and body["status"] == "ERROR"
        assert body["error"].startswith("You've exceeded the maximum requests per minute")
        assert server.get(target, key=CANARY)[0] == 200, "the limit is per key"
    finally:
        assert server.stop() == 0


# --------------------------------------------------------------------------
# faults, log, process
# --------------------------------------------------------------------------

TARGET = aggs("AAPL", "2022-03-01", "2022-03-04")


def test_fail_next_with_html_and_json(srv):
    srv.control("faults", {"fail_next": 2, "status": 502, "body": "html"})
    status, headers, raw = srv.request("GET", TARGET, headers={"Authorization": "Bearer " + KEY})
    assert status == 502 and headers["Content-Type"] == "text/html" and b"Bad Gateway" in raw
    assert srv.get(TARGET, key=KEY)[0] == 502
    assert srv.get(TARGET, key=KEY)[0] == 200
    srv.control("faults", {"fail_next": 1, "status": 429, "retry_after": 2, "body": "json"})
    status, headers, body = srv.get(TARGET, key=KEY)
    assert status == 429 and headers["Retry-After"] == "2"
    assert "exceeded the maximum requests per minute" in body["error"]


def test_fail_after(srv):
    srv.control("faults", {"fail_after": 2, "status": 500})
    assert [srv.get(TARGET, key=KEY)[0] for _ in range(4)] == [200, 200, 500, 500]
    srv.control("reset", {})
    assert srv.get(TARGET, key=KEY)[0] == 200


def test_close_truncate_garbage(srv):
    srv.control("faults", {"close_next": 1, "truncate_next": 1, "garbage_next": 1})
    with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
        srv.get(TARGET, key=KEY)
    # garbage and truncate were consumed together on the next one: half of
    # the garbage body, then the connection goes away
    with pytest.raises(http.client.IncompleteRead):
        srv.get(TARGET, key=KEY)
    srv.control("faults", {"garbage_next": 1})
    status, _, raw = srv.request("GET", TARGET, headers={"Authorization": "Bearer " + KEY})
    assert status == 200
    with pytest.raises(ValueError):
        json.loads(raw)
    srv.control("faults", {"truncate_next": 1})
    with pytest.raises(http.client.IncompleteRead):
        srv.get(TARGET, key=KEY)
    assert srv.get(TARGET, key=KEY)[0] == 200


def faults_in_log(srv):
    return [e["fault"] for e in srv.control("log")]


def normal_body_for(srv, request_id):
    """The body a fault-free request answers, with request_id for its own."""
    status, headers, raw = srv.request("GET", TARGET, headers={"Authorization": "Bearer " + KEY})
    assert status == 200
    return raw.replace(headers["X-Request-Id"].encode(), request_id.encode())


def test_cut_body_is_complete_http_but_not_json(srv):
    """cut_next: the first half of the JSON body, with a Content-Length that
    matches it, so the client reads the whole answer without a transport error."""
    srv.control("faults", {"cut_next": 1})
    status, headers, raw = srv.request("GET", TARGET, headers={"Authorization": "Bearer " + KEY})
    assert status == 200 and headers["Content-Type"] == "application/json"
    assert int(headers["Content-Length"]) == len(raw)
    with pytest.raises(ValueError):
        json.loads(raw)
    full = normal_body_for(srv, headers["X-Request-Id"])
    assert raw == full[:len(full) // 2] and b'"results":[' in raw
    assert faults_in_log(srv) == ["cut", None]
    assert srv.control("log")[0]["status"] == 200


def test_bad_utf8_body(srv):
    """bad_utf8_next: one 0xFF byte put into the status string, after the bars."""
    srv.control("faults", {"bad_utf8_next": 1})
    status, headers, raw = srv.request("GET", TARGET, headers={"Authorization": "Bearer " + KEY})
    assert status == 200 and int(headers["Content-Length"]) == len(raw)
    with pytest.raises(UnicodeDecodeError):
        raw.decode("utf-8")
    assert raw.count(b"\xff") == 1
    assert raw.index(b"\xff") > raw.index(b'"results":[') and b'"status":"\xffOK"' in raw
    assert raw.replace(b"\xff", b"") == normal_body_for(srv, headers["X-Request-Id"])
    assert faults_in_log(srv) == ["bad_utf8", None]


def test_skip_next_delays_the_other_faults(srv):
    """skip_next K: K normal answers, then the "_next" faults apply."""
    srv.control("faults", {"skip_next": 2, "cut_next": 1, "close_next": 1})
    for _ in range(2):
        assert srv.get(TARGET, key=KEY)[0] == 200
    with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
        srv.get(TARGET, key=KEY)
    status, _, raw = srv.request("GET", TARGET, headers={"Authorization": "Bearer " + KEY})
    assert status == 200
    with pytest.raises(ValueError):
        json.loads(raw)
    assert srv.get(TARGET, key=KEY)[0] == 200
    assert faults_in_log(srv) == [None, None, "close", "cut", None]
    faults = srv.control("faults")
    assert (faults["skip_next"], faults["cut_next"], faults["close_next"]) == (0, 0, 0)


def test_delay(srv):
    srv.control("faults", {"delay_ms": 300})
    started = time.monotonic()
    assert srv.get(TARGET, key=KEY)[0] == 200
    assert time.monotonic() - started >= 0.3


def test_delayed_status(srv):
    srv.control("faults", {"delayed": True})
    assert srv.get(TARGET, key=KEY)[2]["status"] == "DELAYED"


def test_bad_fault_spec_is_rejected(srv):
    status, _, _ = srv.request("POST", "/_control/faults", body={"fail_nxt": 1})
    assert status == 400


def test_log_never_holds_keys(srv):
    srv.get(TARGET, key=CANARY)
    srv.get(TARGET, query_key=CANARY)
    srv.get(TARGET)
    status, _, raw = srv.request("GET", "/_control/log")
    assert CANARY.encode() not in raw
    log = json.loads(raw)
    assert [e["status"] for e in log] == [200, 200, 401]
    assert [e["authorization_scheme"] for e in log] == ["Bearer", None, None]
    assert [e["authorization_present"] for e in log] == [True, False, False]
    assert log[1]["query"] == "apiKey=REDACTED"
    assert log[0]["path"] == TARGET and log[0]["method"] == "GET"
    assert log[0]["key_fingerprint"] == log[1]["key_fingerprint"] != None  # noqa: E711


def test_keep_alive(srv):
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=5)
    try:
        for _ in range(3):
            conn.request("GET", TARGET, headers={"Authorization": "Bearer " + KEY})
            resp = conn.getresponse()
            assert resp.status == 200 and json.loads(resp.read())["resultsCount"] == 4
    finally:
        conn.close()


def test_sigterm_exits_cleanly(tmp_path):
    server = Running(tmp_path)
    assert server.get(TARGET, key=KEY)[0] == 200
    server.proc.send_signal(signal.SIGINT)
    assert server.proc.wait(timeout=5) == 0
    server2 = Running(tmp_path)
    assert server2.stop() == 0


# --------------------------------------------------------------------------
# reference endpoints: news, tickers, ticker details
# --------------------------------------------------------------------------

import base64  # noqa: E402
import re  # noqa: E402
from collections import Counter  # noqa: E402

from polygon_server import (  # noqa: E402
    DEFAULT_NEWS, default_universe, group_news, make_bar, news_groups, news_truth,
    published_days)

NEWS = "/v2/reference/news"
TICKERS = "/v3/reference/tickers"
ARTICLE_FIELDS = ["id", "publisher", "title", "author", "published_utc", "article_url",
                  "tickers", "amp_url", "image_url", "description", "keywords", "insights"]
STAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")


def q(path, **query):
    """path?query, with names like published_utc__gte spelt published_utc.gte."""
    query = {k.replace("__", "."): v for k, v in query.items()}
    return path + ("?" + urllib.parse.urlencode(query) if query else "")


def news_cursor(next_url):
    cursor = urllib.parse.parse_qs(urllib.parse.urlsplit(next_url).query)["cursor"][0]
    return json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))


def results_of(pages):
    return [r for p in pages for r in p["results"]]


def install(srv, articles):
    return srv.control("news", {"articles": articles})


def article(when, tickers=("AAPL",), **fields):
    return dict(published_utc=when, tickers=list(tickers), **fields)


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    """A server without --page-size, for what limit alone decides."""
    server = Running(tmp_path_factory.mktemp("big"), "--now", NOW)
    yield server
    assert server.stop() == 0


@pytest.fixture
def big_clean(big):
    big.control("reset", {})
    big.control("clock", {"now": NOW})
    yield big
    big.control("reset", {})


# -- the default news corpus (imported functions) --

def test_default_news_corpus_shape():
    now = parse_instant(NOW)
    aapl = news_truth(DEFAULT_NEWS, now, "AAPL", "2022-01-01", "2022-03-07")
    assert aapl == news_truth(DEFAULT_NEWS, now, "AAPL", "2022-01-01", "2022-03-07")
    days = (dt.date(2022, 3, 7) - dt.date(2022, 1, 1)).days + 1
    assert 1.5 * days < len(aapl) < 3 * days, "a few articles a day"
    stamps = Counter(a["published_utc"] for a in aapl)
    assert sum(1 for n in stamps.values() if n > 1) >= 5, "some share a second"
    several = [a for a in aapl if len(a["tickers"]) > 1]
    assert len(several) >= 10 and all("AAPL" in a["tickers"] for a in aapl)
    assert {t for a in several for t in a["tickers"]} <= {"AAPL", "MSFT", "GOOGL", "META", "NVDA"}
    assert [(a["published_utc"], a["id"]) for a in aapl] == \
        sorted((a["published_utc"], a["id"]) for a in aapl)
    assert len({a["id"] for a in aapl}) == len(aapl)
    for a in aapl:
        assert list(a) == [f for f in ARTICLE_FIELDS if f in a]
        assert STAMP.match(a["published_utc"]) and re.match(r"^[0-9a-f]{64}$", a["id"])
        assert {"name", "homepage_url", "logo_url"} <= set(a["publisher"])
        assert [i["ticker"] for i in a["insights"]] == a["tickers"]
        assert {i["sentiment"] for i in a["insights"]} <= {"positive", "neutral", "negative"}
    assert any("amp_url" not in a for a in aapl) and any("amp_url" in a for a in aapl)
    assert news_truth(DEFAULT_NEWS, now, "NODATA") == []
    assert news_truth(DEFAULT_NEWS, now, "NOSUCH") == []
    # weekends are quieter, and a ticker has no news before it was listed
    groups, index, _ = news_groups()
    gi = index["TSLA"]
    weekday = sum(len(group_news(gi, dt.date(2022, 2, d))) for d in (7, 8, 9, 10, 11))
    weekend = sum(len(group_news(gi, dt.date(2022, 2, d))) for d in (5, 6, 12, 13, 19))
    assert weekend < weekday
    assert news_truth(DEFAULT_NEWS, now, "TSLA", "2010-01-01", "2015-12-31") == []
    assert news_truth(DEFAULT_NEWS, now, "TSLA", "2016-01-01", "2016-01-10") != []


def test_default_universe_shape():
    universe = default_universe()
    tickers = [r["ticker"] for r in universe]
    assert tickers == sorted(tickers) and len(set(tickers)) == len(tickers)
    assert 300 <= len(universe) <= 400
    for name in ("AAPL", "MSFT", "TSLA", "NODATA", "SPY", "IBM", "AMZN", "AAA", "BBB", "CCC"):
        assert name in tickers
    markets = Counter(r["market"] for r in universe)
    assert markets["stocks"] >= 300 and markets["crypto"] and markets["fx"] and markets["otc"]
    assert sum(1 for r in universe if r["delisted_utc"]) >= 20
    assert default_universe() is default_universe()


# -- news over HTTP --

def test_news_body_shape(srv):
    status, headers, body = srv.get(q(NEWS, ticker="AAPL"), key=KEY)
    assert status == 200 and headers["Content-Type"] == "application/json"
    assert list(body) == ["results", "status", "request_id", "count", "next_url"]
    assert body["status"] == "OK" and body["count"] == len(body["results"]) == PAGE
    assert headers["X-Request-Id"] == body["request_id"]
    stamps = [r["published_utc"] for r in body["results"]]
    assert stamps == sorted(stamps, reverse=True), "default order: newest first"
    assert stamps[0] <= "2022-03-07T22:30:00Z", "nothing after the clock"


def test_news_paging_equals_ground_truth(srv):
    truth = srv.control("news?ticker=AAPL&from=2022-02-01")
    assert len(truth) > 40 and truth[-1]["published_utc"] <= "2022-03-07T22:30:00Z"
    assert len(Counter(a["published_utc"] for a in truth)) < len(truth), "equal stamps"
    pages = follow(srv, q(NEWS, ticker="AAPL", published_utc__gte="2022-02-01",
                          order="asc", limit=50), key=KEY)
    assert len(pages) > 5 and all(p["count"] <= PAGE for p in pages)
    assert results_of(pages) == truth
    assert "next_url" not in pages[-1]
    pages = follow(srv, q(NEWS, ticker="AAPL", published_utc__gte="2022-02-01",
                          order="desc", limit=4), key=KEY)
    assert results_of(pages) == truth[::-1]


def test_news_paging_through_one_crowded_second(srv):
    """Forty articles in one second, paged three at a time: every one exactly
    once, in id order, forwards and backwards."""
    crowd = [article("2022-03-02T15:00:00Z", id="id-%02d" % i) for i in range(40)]
    others = [article("2022-03-02T14:59:59Z", id="before"),
              article("2022-03-02T15:00:01Z", id="after")]
    install(srv, others + crowd[::-1])
    truth = srv.control("news")
    assert [a["id"] for a in truth] == ["before"] + ["id-%02d" % i for i in range(40)] + ["after"]
    for order, expected in (("asc", truth), ("desc", truth[::-1])):
        pages = follow(srv, q(NEWS, limit=3, order=order), key=KEY)
        assert len(pages) == 14 and [a["id"] for a in results_of(pages)] == \
            [a["id"] for a in expected]
    # the cursor after id-05 goes on with id-06, even once more articles appear
    _, _, body = srv.get(q(NEWS, limit=3, order="asc", published_utc="2022-03-02T15:00:00Z"),
                         key=KEY)
    assert [a["id"] for a in body["results"]] == ["id-00", "id-01", "id-02"]
    assert news_cursor(body["next_url"])["search_after"] == [1646233200000, "id-02"]


def test_news_next_url_shape(srv):
    _, _, body = srv.get(q(NEWS, ticker="MSFT", published_utc__gte="2022-03-01", limit=5),
                         query_key=CANARY)
    url = body["next_url"]
    assert url.startswith(srv.base + NEWS + "?cursor=")
    assert CANARY not in url and "apikey" not in url.lower()
    cursor = news_cursor(url)
    assert cursor == {"limit": 5, "sort": "published_utc", "order": "descending",
                      "ticker": {"eq": "MSFT"}, "published_utc": {"gte": "2022-03-01"},
                      "search_after": cursor["search_after"]}
    assert srv.get(url)[0] == 401, "following next_url still needs the key"
    status, _, body = srv.get(NEWS + "?cursor=bm90LWpzb24", key=KEY)
    assert status == 400 and body["error"] == "Invalid cursor"


CORPUS = [
    article("2022-03-01T23:59:59Z", id="a"),
    article("2022-03-02T00:00:00Z", id="b"),
    article("2022-03-02T14:59:59Z", id="c", tickers=("AAPL", "MSFT")),
    article("2022-03-02T15:00:00Z", id="d", tickers=("MSFT",)),
    article("2022-03-02T23:59:59Z", id="e", tickers=("TSLA",)),
    article("2022-03-03T00:00:00Z", id="f"),
]


@pytest.mark.parametrize("query, ids", [
    ({"published_utc__gte": "2022-03-02"}, "bcdef"),
    ({"published_utc__gt": "2022-03-02"}, "f"),          # a date: after the whole day
    ({"published_utc__lte": "2022-03-02"}, "abcde"),     # ... up to its end
    ({"published_utc__lt": "2022-03-02"}, "a"),
    ({"published_utc": "2022-03-02"}, "bcde"),
    ({"published_utc__gte": "2022-03-02T15:00:00Z"}, "def"),
    ({"published_utc__gte": "2022-03-02T10:00:00-05:00"}, "def"),   # the same instant
    ({"published_utc__gt": "2022-03-02T15:00:00Z"}, "ef"),
    ({"published_utc__gte": "2022-03-02T14:59:59.5Z"}, "def"),
    ({"published_utc__lte": "2022-03-02T15:00:00Z"}, "abcd"),
    ({"published_utc__lt": "2022-03-02T15:00:00Z"}, "abc"),
    ({"published_utc": "2022-03-02T15:00:00Z"}, "d"),
    ({"published_utc__gte": "2022-03-02", "published_utc__lt": "2022-03-02T15:00:00Z"}, "bc"),
    ({"ticker": "MSFT"}, "cd"),
    ({"ticker": "TSLA"}, "e"),
    ({"ticker__gte": "MSFT"}, "cde"),
    ({"ticker__lt": "MSFT"}, "abcf"),
    ({"ticker": "NOPE"}, ""),
])
def test_news_filters(srv, query, ids):
    install(srv, CORPUS)
    _, _, body = srv.get(q(NEWS, order="asc", **query), key=KEY)
    assert "".join(a["id"] for a in body["results"]) == ids
    assert body["count"] == len(ids)


def test_news_empty_answer(srv):
    status, _, body = srv.get(q(NEWS, ticker="NODATA"), key=KEY)
    assert status == 200 and body["results"] == [] and body["count"] == 0
    assert list(body) == ["results", "status", "request_id", "count"]


def test_news_visibility_by_clock(srv):
    install(srv, [article("2022-03-07T22:00:00Z", id="x"),
                  article("2022-03-07T22:00:01Z", id="y")])
    target = q(NEWS, ticker="AAPL")
    ids = lambda: [a["id"] for a in srv.get(target, key=KEY)[2]["results"]]  # noqa: E731
    srv.control("clock", {"now": "2022-03-07T21:59:59Z"})
    assert ids() == [] and srv.control("news") == []
    srv.control("clock", {"now": "2022-03-07T17:00:00-05:00"})      # 22:00:00Z exactly
    assert ids() == ["x"] and [a["id"] for a in srv.control("news")] == ["x"]
    srv.control("clock", {"now": "2022-03-08T00:00:00Z"})
    assert ids() == ["y", "x"]
    # the default corpus too: nothing later than the clock, ever
    srv.control("news", {"articles": None})
    srv.control("clock", {"now": "2022-03-02T12:00:00Z"})
    truth = srv.control("news?ticker=AAPL&from=2022-03-01")
    assert truth and truth[-1]["published_utc"] <= "2022-03-02T12:00:00Z"
    srv.control("clock", {"now": "2022-03-02T23:59:59Z"})
    later = srv.control("news?ticker=AAPL&from=2022-03-01")
    assert later[:len(truth)] == truth and len(later) > len(truth)


def test_news_new_articles_do_not_disturb_a_desc_chain(srv):
    install(srv, [article("2022-03-01T10:00:%02dZ" % i, id="n%02d" % i) for i in range(20)]
            + [article("2022-03-05T10:00:00Z", id="late")])
    srv.control("clock", {"now": "2022-03-02T00:00:00Z"})
    _, _, first = srv.get(q(NEWS, limit=5), key=KEY)
    srv.control("clock", {"now": "2022-03-06T00:00:00Z"})             # "late" appears
    rest = follow(srv, first["next_url"], key=KEY)
    ids = [a["id"] for a in first["results"] + results_of(rest)]
    assert ids == ["n%02d" % i for i in range(19, -1, -1)]


def test_news_limit_bounds(big_clean):
    srv = big_clean
    _, _, body = srv.get(NEWS, key=KEY)
    assert body["count"] == 10, "default limit 10"
    install(srv, [article("2022-03-01T00:%02d:%02dZ" % divmod(i, 60)) for i in range(1005)])
    _, _, body = srv.get(q(NEWS, limit=1000), key=KEY)
    assert body["count"] == 1000 and news_cursor(body["next_url"])["limit"] == 1000
    _, _, body = srv.get(q(NEWS, limit=5000), key=KEY)
    assert body["count"] == 1000, "above the maximum: clamped to 1000"
    assert news_cursor(body["next_url"])["limit"] == 1000
    _, _, last = srv.get(body["next_url"], key=KEY)
    assert last["count"] == 5 and "next_url" not in last


@pytest.mark.parametrize("query, fragment", [
    ({"limit": 0}, "'min' tag"),
    ({"limit": "ten"}, "'numeric' tag"),
    ({"order": "up"}, "'Order'"),
    ({"sort": "title"}, "'Sort'"),
    ({"published_utc__gte": "yesterday"}, "published_utc.gte parameter: 'yesterday'"),
    ({"published_utc": "2022-03-02T15:00:00"}, "published_utc parameter"),   # no offset
    ({"published_utc__lt": "2022-02-30"}, "published_utc.lt parameter"),
])
def test_news_bad_requests(srv, query, fragment):
    status, _, body = srv.get(q(NEWS, **query), key=KEY)
    assert status == 400 and list(body) == ["status", "request_id", "error"]
    assert body["status"] == "ERROR" and fragment in body["error"]


def test_control_news_fills_and_validates(srv):
    answer = install(srv, [{"published_utc": "2022-03-01T10:00:00+01:00", "tickers": ["KO"],
                            "title": "Given", "amp_url": None, "extra": 1},
                           {"published_utc": "2022-03-01", "publisher": {"name": "Mine"}}])
    assert answer["default"] is False and answer["count"] == 2
    dated, given = answer["articles"]            # ascending, as they are served
    assert dated["published_utc"] == "2022-03-01T00:00:00Z" and dated["tickers"] == []
    assert dated["publisher"]["name"] == "Mine" and "logo_url" in dated["publisher"]
    assert given["published_utc"] == "2022-03-01T09:00:00Z" and given["title"] == "Given"
    assert "amp_url" not in given and given["extra"] == 1
    assert list(given)[:7] == ARTICLE_FIELDS[:7] and re.match(r"^[0-9a-f]{64}$", given["id"])
    assert srv.control("news") == [dated, given]
    assert srv.get(q(NEWS, ticker="KO"), key=KEY)[2]["results"] == [given]
    for bad in ([{"tickers": ["A"]}],                                       # no published_utc
                [{"published_utc": "2022-03-01T10:00:00.5Z"}],               # not whole seconds
                [{"published_utc": "2022-03-01", "id": "x"},
                 {"published_utc": "2022-03-02", "id": "x"}],                # same id
                "nope"):
        status, _, _ = srv.request("POST", "/_control/news", body={"articles": bad})
        assert status == 400
    assert srv.control("news", {"articles": None}) == {"default": True}
    assert len(srv.control("news?ticker=AAPL&from=2022-03-07")) > 0
    install(srv, [])
    srv.control("reset", {})
    assert len(srv.control("news?ticker=AAPL&from=2022-03-07")) > 0, "reset: default corpus"


# -- tickers over HTTP --

TICKER_FIELDS = ["ticker", "name", "market", "locale", "primary_exchange", "type", "active",
                 "currency_name", "cik", "composite_figi", "share_class_figi",
                 "last_updated_utc"]


def test_tickers_body_shape_and_defaults(big_clean):
    status, _, body = big_clean.get(TICKERS, key=KEY)
    assert status == 200
    assert list(body) == ["results", "status", "request_id", "count", "next_url"]
    assert body["count"] == 100, "default limit 100"
    results = body["results"]
    assert [r["ticker"] for r in results] == sorted(r["ticker"] for r in results)
    assert all(r["active"] for r in results), "active defaults to true"
    aapl = next(r for r in results if r["ticker"] == "AAPL")
    assert list(aapl) == TICKER_FIELDS
    assert aapl["last_updated_utc"] == "2022-03-07T00:00:00Z" and aapl["cik"] == "0000320193"
    cursor = urllib.parse.parse_qs(urllib.parse.urlsplit(body["next_url"]).query)["cursor"][0]
    from polygon_server import decode_cursor
    state = decode_cursor(cursor)
    assert (state["active"], state["date"], state["limit"], state["order"], state["sort"]) == \
        ("true", "2022-03-07", "100", "asc", "ticker")
    _, _, body = big_clean.get(q(TICKERS, limit=5000), key=KEY)
    assert "next_url" not in body and 300 < body["count"] <= 1000, "clamped, all on one page"
    active = body["results"]
    _, _, body = big_clean.get(q(TICKERS, limit=1000, active="false"), key=KEY)
    inactive = body["results"]
    assert inactive and all(not r["active"] and r["delisted_utc"] <= "2022-03-07"
                            for r in inactive)
    assert list(inactive[0]) == TICKER_FIELDS + ["delisted_utc"]
    everything = big_clean.control("tickers")
    assert sorted(r["ticker"] for r in active + inactive) == [r["ticker"] for r in everything]


def test_tickers_paging(srv):
    truth = [r["ticker"] for r in srv.control("tickers")
             if r["active"] and r["market"] == "stocks" and r["ticker"] < "C"]
    pages = follow(srv, q(TICKERS, market="stocks", ticker__lt="C", limit=10), key=KEY)
    assert len(pages) > 3 and [r["ticker"] for r in results_of(pages)] == truth
    pages = follow(srv, q(TICKERS, market="stocks", ticker__lt="C", order="desc"), key=KEY)
    assert [r["ticker"] for r in results_of(pages)] == truth[::-1]
    pages = follow(srv, q(TICKERS, sort="name", order="desc", ticker__lt="C"), key=KEY)
    names = [(r["name"], r["ticker"]) for r in results_of(pages)]
    assert names == sorted(names, reverse=True) and len(names) > len(truth) - 5


@pytest.mark.parametrize("query, check", [
    ({"ticker": "MSFT"}, lambda rs: [r["ticker"] for r in rs] == ["MSFT"]),
    ({"ticker__gte": "TSLA", "ticker__lte": "TSLZ"}, lambda rs: rs[0]["ticker"] == "TSLA"),
    ({"market": "crypto"}, lambda rs: rs and all(r["ticker"].startswith("X:") and
                                                 r["locale"] == "global" for r in rs)),
    ({"market": "fx"}, lambda rs: "C:EURUSD" in [r["ticker"] for r in rs]),
    ({"market": "indices"}, lambda rs: "I:SPX" in [r["ticker"] for r in rs]),
    ({"market": "otc"}, lambda rs: rs and all("primary_exchange" not in r for r in rs)),
    ({"type": "ETF"}, lambda rs: "SPY" in [r["ticker"] for r in rs]),
    ({"search": "apple"}, lambda rs: [r["ticker"] for r in rs] == ["AAPL"]),
    ({"search": "BRK"}, lambda rs: [r["ticker"] for r in rs] == ["BRK.A", "BRK.B"]),
    ({"exchange": "XNYS", "ticker": "IBM"}, lambda rs: len(rs) == 1),
    ({"cik": "0001318605"}, lambda rs: [r["ticker"] for r in rs] == ["TSLA"]),
    ({"ticker": "NODATA"}, lambda rs: rs[0]["active"] is True),
    ({"ticker": "X:ETHBTC"}, lambda rs: rs[0]["active"] is True),    # delisted 2023
])
def test_tickers_filters(big_clean, query, check):
    status, _, body = big_clean.get(q(TICKERS, limit=1000, **query), key=KEY)
    assert status == 200 and check(body["results"]), body["results"][:3]


def test_tickers_date_and_clock(srv):
    srv.control("clock", {"now": "2024-01-01T00:00:00Z"})
    _, _, body = srv.get(q(TICKERS, ticker="X:ETHBTC", active="false"), key=KEY)
    assert body["results"][0]["delisted_utc"] == "2023-01-01T00:00:00Z"
    _, _, body = srv.get(q(TICKERS, ticker="X:ETHBTC", date="2022-12-31"), key=KEY)
    assert body["results"][0]["active"] is True
    assert body["results"][0]["last_updated_utc"] == "2022-12-31T00:00:00Z"
    _, _, body = srv.get(q(TICKERS, ticker="TSLA", date="2010-06-28"), key=KEY)
    assert body["results"] == [], "not listed yet"
    _, _, body = srv.get(q(TICKERS, ticker="TSLA", date="2010-06-29"), key=KEY)
    assert body["count"] == 1


@pytest.mark.parametrize("query, fragment", [
    ({"market": "bonds"}, "'Market'"), ({"type": "XX"}, "'Type'"),
    ({"active": "maybe"}, "'Active'"), ({"order": "up"}, "'Order'"),
    ({"sort": "size"}, "'Sort'"), ({"limit": -1}, "'min' tag"),
    ({"date": "2022-03"}, "'Date'"),
])
def test_tickers_bad_requests(srv, query, fragment):
    status, _, body = srv.get(q(TICKERS, **query), key=KEY)
    assert status == 400 and body["status"] == "ERROR" and fragment in body["error"]


def test_control_tickers(srv):
    answer = srv.control("tickers", {"tickers": [
        {"ticker": "ZED", "name": "Zed Corp"}, {"ticker": "OLD", "active": False},
        {"ticker": "X:FOOUSD"}, {"ticker": "NEW", "list_date": "2023-01-03"}]})
    assert answer == {"default": False, "count": 4}
    _, _, body = srv.get(TICKERS, key=KEY)
    assert [r["ticker"] for r in body["results"]] == ["X:FOOUSD", "ZED"]
    assert body["results"][0]["market"] == "crypto"
    _, _, body = srv.get(q(TICKERS, active="false"), key=KEY)
    assert [r["ticker"] for r in body["results"]] == ["OLD"] and body["results"][0]["delisted_utc"]
    assert srv.get(TICKERS + "/ZED", key=KEY)[2]["results"]["name"] == "Zed Corp"
    assert srv.get(TICKERS + "/AAPL", key=KEY)[0] == 404
    status, _, _ = srv.request("POST", "/_control/tickers",
                               body={"tickers": [{"ticker": "A"}, {"ticker": "A"}]})
    assert status == 400
    status, _, _ = srv.request("POST", "/_control/tickers", body={"tickers": [{"name": "x"}]})
    assert status == 400
    assert srv.control("tickers", {"tickers": None}) == {"default": True}
    assert srv.get(TICKERS + "/AAPL", key=KEY)[0] == 200


# -- ticker details --

DETAIL_FIELDS = ["ticker", "name", "market", "locale", "primary_exchange", "type", "active",
                 "currency_name", "cik", "composite_figi", "share_class_figi", "market_cap",
                 "phone_number", "address", "description", "sic_code", "sic_description",
                 "ticker_root", "homepage_url", "total_employees", "list_date", "branding",
                 "share_class_shares_outstanding", "weighted_shares_outstanding", "round_lot"]


def test_ticker_details(srv):
    status, headers, body = srv.get(TICKERS + "/AAPL", key=KEY)
    assert status == 200 and list(body) == ["results", "status", "request_id"]
    details = body["results"]
    assert list(details) == DETAIL_FIELDS
    assert details["composite_figi"] == "BBG000B9XRY4" and details["list_date"] == "1980-12-12"
    assert list(details["address"]) == ["address1", "city", "state", "postal_code"]
    assert list(details["branding"]) == ["logo_url", "icon_url"]
    now = parse_instant(NOW)
    close = make_bar("AAPL", published_days("AAPL", dt.date(2022, 3, 1), dt.date(2022, 3, 7),
                                            now)[-1])["c"]
    assert details["market_cap"] == round(close * details["weighted_shares_outstanding"], 2)
    _, _, body = srv.get(q(TICKERS + "/BRK.B", date="2021-01-04"), key=KEY)
    assert body["results"]["ticker_root"] == "BRK" and body["results"]["ticker_suffix"] == "B"
    assert "market_cap" not in srv.get(TICKERS + "/NODATA", key=KEY)[2]["results"]
    _, _, body = srv.get(TICKERS + "/X%3ABTCUSD", key=KEY)
    assert body["results"]["base_currency_symbol"] == "BTC"


@pytest.mark.parametrize("target", [TICKERS + "/NOPE", TICKERS + "/aapl",
                                    q(TICKERS + "/TSLA", date="2010-06-28")])
def test_ticker_details_not_found(srv, target):
    status, _, body = srv.get(target, key=KEY)
    assert status == 404 and list(body) == ["status", "request_id", "message"]
    assert body["status"] == "NOT_FOUND" and body["message"] == "Ticker not found."


def test_ticker_details_of_a_delisted_ticker(srv):
    srv.control("clock", {"now": "2024-01-01T00:00:00Z"})
    _, _, body = srv.get(TICKERS + "/X:ETHBTC", key=KEY)
    assert body["results"]["active"] is False
    assert body["results"]["delisted_utc"] == "2023-01-01T00:00:00Z"
    _, _, body = srv.get(q(TICKERS + "/X:ETHBTC", date="2022-06-01"), key=KEY)
    assert body["results"]["active"] is True and "delisted_utc" not in body["results"]
    assert srv.get(q(TICKERS + "/AAPL", date="June"), key=KEY)[0] == 400


# -- the same auth, log, rate limit and faults as the aggregates --

REFERENCE_TARGETS = [q(NEWS, ticker="AAPL"), TICKERS, TICKERS + "/AAPL"]


@pytest.mark.parametrize("target", REFERENCE_TARGETS)
def test_reference_auth_errors(srv, target):
    status, _, body = srv.get(target)
    assert status == 401 and body == {"status": "ERROR", "request_id": body["request_id"],
                                      "error": "API Key was not provided"}
    status, _, body = srv.get(target, key="nope")
    assert status == 401 and body["error"] == "Unknown API Key"
    status, _, body = srv.get(target, key=FORBIDDEN)
    assert status == 403 and body["status"] == "NOT_AUTHORIZED"
    assert srv.get(target, query_key=KEY)[0] == 200
    log = srv.control("log")
    assert [e["status"] for e in log] == [401, 401, 403, 200]
    assert log[-1]["query"].endswith("apiKey=REDACTED")


def test_reference_rate_limit(tmp_path):
    server = Running(tmp_path, "--now", NOW, "--rate-limit", "3")
    try:
        assert server.get(TARGET, key=KEY)[0] == 200
        assert [server.get(t, key=KEY)[0] for t in REFERENCE_TARGETS] == [200, 200, 429]
    finally:
        assert server.stop() == 0


def test_faults_without_path_hit_every_endpoint(srv):
    srv.control("faults", {"fail_next": 3, "status": 500})
    assert [srv.get(t, key=KEY)[0] for t in REFERENCE_TARGETS] == [500, 500, 500]
    assert srv.get(TARGET, key=KEY)[0] == 200
    srv.control("faults", {"delayed": True})
    assert [srv.get(t, key=KEY)[2]["status"] for t in REFERENCE_TARGETS] == ["DELAYED"] * 3


def test_fault_for_one_path(srv):
    srv.control("faults", {"fail_next": 1, "status": 500, "path": NEWS})
    assert srv.control("faults") == {"paths": {NEWS: {"fail_next": 1, "status": 500}}}
    assert srv.get(TARGET, key=KEY)[0] == 200
    assert srv.get(TICKERS, key=KEY)[0] == 200
    status, _, body = srv.get(q(NEWS, ticker="AAPL"), key=KEY)
    assert status == 500 and body["error"] == "Internal Server Error"
    assert srv.get(q(NEWS, ticker="AAPL"), key=KEY)[0] == 200
    # a prefix covers whole segments below it
    srv.control("faults", {"fail_next": 2, "status": 503, "body": "json", "path": TICKERS})
    assert srv.get(TICKERS + "/AAPL", key=KEY)[0] == 503
    assert srv.get(q(NEWS, ticker="AAPL"), key=KEY)[0] == 200
    assert srv.get(TICKERS, key=KEY)[0] == 503
    assert srv.get(TICKERS, key=KEY)[0] == 200
    srv.control("faults", {"fail_next": 1, "status": 500, "path": "/v3/reference/tick"})
    assert srv.get(TICKERS, key=KEY)[0] == 200, "not a whole segment"
    assert [e["fault"] for e in srv.control("log")] == \
        [None, None, "fail", None, "fail", None, "fail", None, None]


def test_fail_at_request_fails_page_two_once(srv):
    """Exactly-once tests: the second news request fails, its retry does not,
    and aggregates requests in between do not count."""
    srv.control("faults", {"fail_at_request": 2, "status": 500, "path": NEWS})
    _, _, first = srv.get(q(NEWS, ticker="AAPL", limit=3), key=KEY)
    assert srv.get(TARGET, key=KEY)[0] == 200
    status, _, _ = srv.get(first["next_url"], key=KEY)
    assert status == 500
    status, _, second = srv.get(first["next_url"], key=KEY)
    assert status == 200 and second["results"][0] != first["results"][-1]
    assert srv.get(second["next_url"], key=KEY)[0] == 200
    srv.control("faults", {"fail_at_request": [1, 3], "status": 502, "path": NEWS})
    statuses = [srv.get(q(NEWS, ticker="AAPL"), key=KEY)[0] for _ in range(4)]
    assert statuses == [502, 200, 502, 200]
    srv.control("faults", {"fail_at_request": 2, "status": 500})      # every path
    assert [srv.get(TARGET, key=KEY)[0], srv.get(TICKERS, key=KEY)[0]] == [200, 500]


def test_scoped_faults_have_their_own_counters(srv):
    srv.control("faults", {"skip_next": 1, "cut_next": 1, "path": NEWS})
    srv.control("faults", {"bad_utf8_next": 1})
    news = q(NEWS, ticker="AAPL")
    # request 1: news skips its own faults, but the every-path bad_utf8 applies
    status, _, raw = srv.request("GET", news, headers={"Authorization": "Bearer " + KEY})
    assert status == 200 and raw.count(b"\xff") == 1
    assert raw.index(b"\xff") > raw.index(b'"results":[') and b'"status":"\xffOK"' in raw
    status, _, raw = srv.request("GET", news, headers={"Authorization": "Bearer " + KEY})
    with pytest.raises(ValueError):
        json.loads(raw)
    assert srv.get(news, key=KEY)[0] == 200
    assert [e["fault"] for e in srv.control("log")] == ["bad_utf8", "cut", None]


@pytest.mark.parametrize("spec", [
    {"fail_at_request": 0}, {"fail_at_request": []}, {"fail_at_request": "2"},
    {"path": "v2/reference/news"}, {"path": "/_control/log"}, {"path": 3},
])
def test_bad_scoped_fault_spec_is_rejected(srv, spec):
    status, _, _ = srv.request("POST", "/_control/faults", body=spec)
    assert status == 400
