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
