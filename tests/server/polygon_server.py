#!/usr/bin/env python3
"""A Polygon.io-compatible test server for the daily aggregates endpoint.

The connector under test (source-lua) talks to this server instead of
api.polygon.io.  Everything it returns is deterministic: the bars of a ticker
on a day are derived from sha256(ticker, day), the trading calendar is the
NYSE one computed from rules, and the clock can be frozen.  Standard library
only, so it runs with the distribution's /usr/bin/python3.

Usage
-----
    python3 tests/server/polygon_server.py [--host 127.0.0.1] [--port 0]
        [--port-file FILE] [--keys k1,k2] [--forbidden-keys k3]
        [--page-size N] [--now ISO8601] [--rate-limit N] [--quiet]

--port 0 picks a free port; the port is written atomically to --port-file and
"listening on http://HOST:PORT" is printed (flushed) on stdout.  SIGTERM and
SIGINT stop the server with exit status 0.

The API
-------
GET /v2/aggs/ticker/{ticker}/range/{multiplier}/{timespan}/{from}/{to}
    ?adjusted=true|false&sort=asc|desc&limit=1..50000&apiKey=KEY&cursor=...
The key goes in "Authorization: Bearer KEY" or in apiKey.  Only 1/day has
data.  A bar for day D is published once the server clock reaches 16:00
America/New_York on D; there is no data before 2000-01-03; ticker NODATA
never has bars; a malformed ticker gets an empty 200.  When more bars remain
than the page holds, next_url points back at this server with an opaque
cursor and without the key, like the real API.

Control API (tests only, no auth, never logged)
------------------------------------------------
POST /_control/clock      {"now": "2022-03-07T17:30:00-05:00"} freezes the
                          clock, {"now": null} returns to real time.
GET  /_control/clock      the current server time.
POST /_control/faults     fault injection on the aggregates endpoint; keys
                          merge into the current configuration:
    {"fail_next": N, "status": 503, "retry_after": S, "body": "html"|"json"}
        the next N requests fail with that status (429 uses Polygon's rate
        limit body; Retry-After is sent when retry_after is given; body
        defaults to html for 502/503/504 and json otherwise).
    {"fail_after": N, "status": 500}  the first N requests succeed, all later
        ones fail (fail_after 0: never recovers).
    {"truncate_next": N}  Content-Length larger than the body sent, then close.
    {"close_next": N}     close the connection without answering.
    {"delay_ms": M}       every response waits M ms first.
    {"garbage_next": N}   200 with a body that is not JSON.
    {"cut_next": N}       200 whose JSON body is cut off half-way, with a
        Content-Length that matches what is sent (a proxy that lost the
        upstream mid-answer): well-formed HTTP, a text that is not JSON.
    {"bad_utf8_next": N}  the body with a byte that is not UTF-8 (0xFF) put
        into its "status" string, which comes after every bar.
    {"skip_next": K}      the next K requests are answered normally whatever
        the other faults say, so that a "_next" fault hits request K+1 (the
        third page of a next_url chain with skip_next 2).
    {"delayed": true}     success bodies say status "DELAYED" instead of "OK".
GET  /_control/faults     the current fault configuration.
POST /_control/reset      clears faults, counters, rate limits, request log.
GET  /_control/log        every API request: method, path, query (apiKey
                          redacted), Authorization presence and scheme, status.
GET  /_control/published?ticker=T&from=YYYY-MM-DD&to=YYYY-MM-DD
                          the bars published at the current server clock (the
                          ground truth), each with "date" plus the bar fields.

Importable: trading_days, is_trading_day, nyse_holidays, published_bars,
make_bar, midnight_ms, to_new_york, to_json ... (see the test suite).
"""

import argparse
import base64
import datetime as dt
import hashlib
import json
import math
import os
import re
import signal
import socket
import sys
import threading
import time
import urllib.parse
from collections import deque
from functools import lru_cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# --------------------------------------------------------------------------
# NYSE calendar
# --------------------------------------------------------------------------

MON, TUE, WED, THU, FRI, SAT, SUN = range(7)

# The data set starts on the first trading day of 2000, like a vendor whose
# history has a hard beginning.
FIRST_DATA_DAY = dt.date(2000, 1, 3)

# One-off closures (national days of mourning, 9/11, hurricane Sandy): the
# real exchange was shut, so the real API has no bar for these days.
SPECIAL_CLOSURES = frozenset([
    dt.date(2001, 9, 11), dt.date(2001, 9, 12), dt.date(2001, 9, 13),
    dt.date(2001, 9, 14),
    dt.date(2004, 6, 11),   # President Reagan
    dt.date(2007, 1, 2),    # President Ford
    dt.date(2012, 10, 29), dt.date(2012, 10, 30),  # Hurricane Sandy
    dt.date(2018, 12, 5),   # President G.H.W. Bush
    dt.date(2025, 1, 9),    # President Carter
])


def nth_weekday(year, month, weekday, n):
    """The n-th (1-based) given weekday of a month."""
    first = dt.date(year, month, 1)
    offset = (weekday - first.weekday()) % 7
    return first + dt.timedelta(days=offset + 7 * (n - 1))


def last_weekday(year, month, weekday):
    """The last given weekday of a month."""
    next_month = dt.date(year + month // 12, month % 12 + 1, 1)
    last = next_month - dt.timedelta(days=1)
    return last - dt.timedelta(days=(last.weekday() - weekday) % 7)


def easter_sunday(year):
    """Gregorian Easter (anonymous computus, Meeus/Jones/Butcher)."""
    a, b, c = year % 19, year // 100, year % 100
    d, e = b // 4, b % 4
    f = (b + 8) // 25
    g = (b - f + 1) // 3
    h = (19 * a + b - d - g + 15) % 30
    i, k = c // 4, c % 4
    l = (32 + 2 * e + 2 * i - h - k) % 7
    m = (a + 11 * h + 22 * l) // 451
    month = (h + l - 7 * m + 114) // 31
    day = (h + l - 7 * m + 114) % 31 + 1
    return dt.date(year, month, day)


def observed(day):
    """Saturday holidays are observed on Friday, Sunday ones on Monday."""
    if day.weekday() == SAT:
        return day - dt.timedelta(days=1)
    if day.weekday() == SUN:
        return day + dt.timedelta(days=1)
    return day


@lru_cache(maxsize=None)
def nyse_holidays(year):
    """The regular NYSE full-day holidays of a year (as observed)."""
    days = set()
    new_year = dt.date(year, 1, 1)
    # NYSE rule: when Jan 1 is a Saturday the market does not close on the
    # preceding Friday (it would be the last day of the year), so no holiday.
    if new_year.weekday() != SAT:
        days.add(observed(new_year))
    if year >= 1998:
        days.add(nth_weekday(year, 1, MON, 3))          # Martin Luther King
    days.add(nth_weekday(year, 2, MON, 3))              # Washington's Birthday
    days.add(easter_sunday(year) - dt.timedelta(days=2))  # Good Friday
    days.add(last_weekday(year, 5, MON))                # Memorial Day
    if year >= 2022:
        days.add(observed(dt.date(year, 6, 19)))        # Juneteenth
    days.add(observed(dt.date(year, 7, 4)))             # Independence Day
    days.add(nth_weekday(year, 9, MON, 1))              # Labor Day
    days.add(nth_weekday(year, 11, THU, 4))             # Thanksgiving
    days.add(observed(dt.date(year, 12, 25)))           # Christmas
    return frozenset(days)


def is_trading_day(day):
    """True when the NYSE had (or will have) a regular session on day."""
    return (day.weekday() < SAT and day not in nyse_holidays(day.year)
            and day not in SPECIAL_CLOSURES)


def trading_days(start, end):
    """All trading days in [start, end], ascending (pure calendar)."""
    days, day = [], start
    while day <= end:
        if is_trading_day(day):
            days.append(day)
        day += dt.timedelta(days=1)
    return days


# --------------------------------------------------------------------------
# America/New_York without zoneinfo (not guaranteed to be installed)
# --------------------------------------------------------------------------

EST = dt.timedelta(hours=-5)
EDT = dt.timedelta(hours=-4)
UTC = dt.timezone.utc


def dst_dates(year):
    """Local dates on which DST starts and ends (both at 02:00 local)."""
    if year >= 2007:
        return nth_weekday(year, 3, SUN, 2), nth_weekday(year, 11, SUN, 1)
    # 1987-2006 rule; also used for earlier years, which have no data anyway.
    return nth_weekday(year, 4, SUN, 1), last_weekday(year, 10, SUN)


def ny_offset_of_local(local):
    """UTC offset of a naive New York wall-clock time (the skipped hour counts
    as DST, the repeated one as its first, DST, occurrence)."""
    start, end = dst_dates(local.year)
    dst_begin = dt.datetime.combine(start, dt.time(2))
    dst_end = dt.datetime.combine(end, dt.time(2))
    return EDT if dst_begin <= local < dst_end else EST


def ny_offset_of_instant(instant):
    """UTC offset in New York at an aware instant."""
    utc = instant.astimezone(UTC).replace(tzinfo=None)
    start, end = dst_dates(utc.year)
    dst_begin = dt.datetime.combine(start, dt.time(2)) - EST
    dst_end = dt.datetime.combine(end, dt.time(2)) - EDT
    return EDT if dst_begin <= utc < dst_end else EST


def to_new_york(instant):
    """Naive New York wall-clock time of an aware instant."""
    utc = instant.astimezone(UTC).replace(tzinfo=None)
    return utc + ny_offset_of_instant(instant)


def ny_to_utc(local):
    """Aware UTC instant of a naive New York wall-clock time."""
    return (local - ny_offset_of_local(local)).replace(tzinfo=UTC)


def midnight_ms(day):
    """Unix ms of midnight America/New_York on day: a daily bar's "t"."""
    instant = ny_to_utc(dt.datetime.combine(day, dt.time(0)))
    return int(instant.timestamp()) * 1000


def ms_to_ny_date(ms):
    """New York calendar date of a Unix ms timestamp."""
    instant = dt.datetime.fromtimestamp(ms / 1000, tz=UTC)
    return to_new_york(instant).date()


def parse_instant(text):
    """Aware UTC datetime from ISO 8601 with an explicit offset or Z."""
    value = dt.datetime.fromisoformat(text)
    if value.tzinfo is None:
        raise ValueError("timestamp needs an offset or Z: %r" % text)
    return value.astimezone(UTC)


# --------------------------------------------------------------------------
# Deterministic bars
# --------------------------------------------------------------------------

TICKER_RE = re.compile(r"^[A-Z][A-Z0-9.]{0,9}$")
NO_DATA_TICKER = "NODATA"
MARKET_CLOSE = dt.time(16, 0)


class ExpFloat(float):
    """A float the wire format writes in exponent notation.

    The real API sometimes sends volumes as e.g. 7.0790813e+07 or
    1.2345678e+06, so a client must cope with that notation."""


def _digest(*parts):
    return hashlib.sha256("|".join(parts).encode()).digest()


def _unit(digest, index):
    """A number in [0, 1) taken from 4 bytes of a digest."""
    return int.from_bytes(digest[4 * index:4 * index + 4], "big") / 2 ** 32


@lru_cache(maxsize=4096)
def _profile(ticker):
    """Per-ticker constants: price level, wave phases, typical volume."""
    d = _digest("profile", ticker)
    return {
        "price": 8 + 400 * _unit(d, 0) ** 2,
        "phases": [2 * math.pi * _unit(d, i) for i in (1, 2, 3)],
        "volume": 10 ** (5 + 2.7 * _unit(d, 4)),
    }


def _level(ticker, ordinal):
    """A smooth, bounded price path: stateless, so any day is O(1)."""
    p = _profile(ticker)
    a, b, c = p["phases"]
    wave = (0.35 * math.sin(2 * math.pi * ordinal / 1187 + a)
            + 0.20 * math.sin(2 * math.pi * ordinal / 211 + b)
            + 0.06 * math.sin(2 * math.pi * ordinal / 29 + c))
    return p["price"] * math.exp(wave)


def _round_up(x, decimals):
    scale = 10 ** decimals
    return math.ceil(round(x * scale, 6)) / scale


def _round_down(x, decimals):
    scale = 10 ** decimals
    return math.floor(round(x * scale, 6)) / scale


def _volume(ticker, d):
    """Mostly integers; sometimes floats (fractional or not) that go out in
    exponent notation, as seen in real responses."""
    v = int(_profile(ticker)["volume"] * (0.4 + 1.2 * _unit(d, 5)))
    kind = d[31] % 8
    if kind == 0:
        return ExpFloat(v + (1 + d[30] % 9) / 10)
    if kind == 1:
        return ExpFloat(v)
    return v


def make_bar(ticker, day):
    """The daily bar of ticker on day (whether or not it is published)."""
    d = _digest("bar", ticker, day.isoformat())
    level = _level(ticker, day.toordinal())
    o = round(_level(ticker, day.toordinal() - 1) * (1 + 0.02 * (_unit(d, 0) - 0.5)), 2)
    c = round(level * (1 + 0.03 * (_unit(d, 1) - 0.5)), 2)
    hl_decimals = 4 if d[29] % 3 == 0 else 2   # some highs/lows carry 4 decimals
    h = _round_up(max(o, c) + level * 0.015 * _unit(d, 2), hl_decimals)
    l = max(0.01, _round_down(min(o, c) - level * 0.015 * _unit(d, 3), hl_decimals))
    vw = min(h, max(l, round(l + (h - l) * (0.25 + 0.5 * _unit(d, 4)), 4)))
    v = _volume(ticker, d)
    n = max(1, int(v / (40 + 160 * _unit(d, 6))))
    return {"v": v, "vw": vw, "o": o, "c": c, "h": h, "l": l,
            "t": midnight_ms(day), "n": n}


def is_published(day, now):
    """A day's bar exists once the clock reaches the 16:00 New York close."""
    local = to_new_york(now)
    return day < local.date() or (day == local.date() and local.time() >= MARKET_CLOSE)


def published_days(ticker, first, last, now):
    """Days in [first, last] that have a bar for ticker at time now."""
    if ticker == NO_DATA_TICKER or not TICKER_RE.match(ticker):
        return []
    first = max(first, FIRST_DATA_DAY)
    last = min(last, to_new_york(now).date())   # bounds huge "to" values
    return [day for day in trading_days(first, last) if is_published(day, now)]


def published_bars(ticker, first, last, now):
    """Ground truth: [{"date": "YYYY-MM-DD", "v":..., ...}] ascending."""
    return [dict(date=day.isoformat(), **make_bar(ticker, day))
            for day in published_days(ticker, first, last, now)]


# --------------------------------------------------------------------------
# JSON as the real API writes it
# --------------------------------------------------------------------------

def _exp_repr(x):
    """Shortest exponent form, Go style: 1.2345678e+06."""
    for digits in range(17):
        text = "%.*e" % (digits, x)
        if float(text) == x:
            return text
    return "%.16e" % x


def _float_repr(x):
    """Go's encoding/json style: integral floats have no ".0" (173 not 173.0)."""
    if x.is_integer() and abs(x) < 1e21:
        return str(int(x))
    return repr(x)


def to_json(value):
    """Compact JSON keeping key order, with Go-like float formatting."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, ExpFloat):
        return _exp_repr(value)
    if isinstance(value, float):
        return _float_repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, dict):
        return "{" + ",".join(json.dumps(str(k)) + ":" + to_json(v)
                              for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(to_json(v) for v in value) + "]"
    raise TypeError("cannot serialise %r" % (value,))


# --------------------------------------------------------------------------
# Polygon response bodies (wording checked against captured real responses)
# --------------------------------------------------------------------------

MSG_NO_KEY = "API Key was not provided"
MSG_UNKNOWN_KEY = "Unknown API Key"
MSG_NOT_ENTITLED = ("You are not entitled to this data. "
                    "Please upgrade your plan at https://polygon.io/pricing")
MSG_RATE_LIMIT = ("You've exceeded the maximum requests per minute, please wait "
                  "or upgrade your subscription to continue. https://polygon.io/pricing")
MSG_BAD_TIME = "Could not parse the time parameter: '%s'. Use YYYY-MM-DD or Unix MS Timestamps"
MSG_TO_BEFORE_FROM = "The parameter 'to' cannot be a time that occurs before 'from'"
MSG_BAD_QUERY = ("Failed to parse query parameters from URL: Key: 'AggsQueryParams.%s' "
                 "Error:Field validation for '%s' failed on the '%s' tag")

TIMESPANS = ("second", "minute", "hour", "day", "week", "month", "quarter", "year")
MAX_LIMIT = 50000
DEFAULT_LIMIT = 5000


class ApiError(Exception):
    """An error answer: HTTP status plus a Polygon body (minus request_id)."""

    def __init__(self, status, body):
        super().__init__(status)
        self.status = status
        self.body = body


def error_body(error):
    return {"status": "ERROR", "error": error}


def not_authorized_body():
    return {"status": "NOT_AUTHORIZED", "message": MSG_NOT_ENTITLED}


def with_request_id(body, request_id):
    """Polygon puts request_id right after status, in errors and successes."""
    out = {}
    for name, value in body.items():
        out[name] = value
        if name == "status":
            out["request_id"] = request_id
    return out


def not_utf8(body):
    """body with a 0xFF byte (never valid UTF-8) at the start of its last
    "status" string, or in its middle when it has none."""
    at = body.rfind(b'"status":"')
    at = at + len(b'"status":"') if at >= 0 else len(body) // 2
    return body[:at] + b"\xff" + body[at:]


GATEWAY_PAGE = ("<html>\r\n<head><title>{code} {reason}</title></head>\r\n<body>\r\n"
                "<center><h1>{code} {reason}</h1></center>\r\n<hr><center>nginx</center>\r\n"
                "</body>\r\n</html>\r\n")


# --------------------------------------------------------------------------
# Aggregates request parsing and answering (pure: no sockets, no state)
# --------------------------------------------------------------------------

AGGS_PATH = re.compile(r"^/v2/aggs/ticker/([^/]+)/range/([^/]+)/([^/]+)/([^/]+)/([^/]+)/?$")
DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
MS_RE = re.compile(r"^-?\d{1,16}$")


def parse_time_param(raw, name):
    """A path bound: ("date", date) or ("ms", int); 400 when unparseable."""
    try:
        if DATE_RE.match(raw):
            return "date", dt.date.fromisoformat(raw)
        if MS_RE.match(raw):
            ms = int(raw)
            ms_to_ny_date(ms)   # rejects values outside datetime's range
            return "ms", ms
    except (ValueError, OverflowError, OSError):
        pass
    raise ApiError(400, error_body(MSG_BAD_TIME % name))


def bound_ms(bound):
    kind, value = bound
    return midnight_ms(value) if kind == "date" else value


def first_day(bound):
    """First day whose bar ("t" = midnight) is at or after the from bound."""
    kind, value = bound
    if kind == "date":
        return value
    day = ms_to_ny_date(value)
    return day if midnight_ms(day) >= value else day + dt.timedelta(days=1)


def last_day(bound):
    """Last day whose bar is at or before the to bound."""
    kind, value = bound
    return value if kind == "date" else ms_to_ny_date(value)


def encode_cursor(options):
    """Opaque like the real one (base64url of a query string, no padding)."""
    text = urllib.parse.urlencode(options)
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode_cursor(cursor):
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        text = base64.urlsafe_b64decode(padded.encode()).decode()
        return dict(urllib.parse.parse_qsl(text, strict_parsing=True))
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, error_body("Invalid cursor"))


def parse_bool(raw):
    """strconv.ParseBool, which the Go backend uses."""
    if raw in ("1", "t", "T", "true", "TRUE", "True"):
        return True
    if raw in ("0", "f", "F", "false", "FALSE", "False"):
        return False
    raise ApiError(400, error_body(MSG_BAD_QUERY % ("Adjusted", "Adjusted", "boolean")))


def parse_options(params):
    """adjusted/sort/limit, from the query or, on next_url pages, the cursor."""
    options = dict(params)
    if "cursor" in params:
        options.update(decode_cursor(params["cursor"]))
    adjusted = parse_bool(options.get("adjusted", "true"))
    sort = options.get("sort", "asc")
    if sort not in ("asc", "desc"):
        raise ApiError(400, error_body(MSG_BAD_QUERY % ("Sort", "Sort", "oneof")))
    try:
        limit = int(options.get("limit", DEFAULT_LIMIT))
    except ValueError:
        raise ApiError(400, error_body(MSG_BAD_QUERY % ("Limit", "Limit", "numeric")))
    if limit < 1:
        raise ApiError(400, error_body(MSG_BAD_QUERY % ("Limit", "Limit", "min")))
    if limit > MAX_LIMIT:
        raise ApiError(400, error_body(MSG_BAD_QUERY % ("Limit", "Limit", "max")))
    return adjusted, sort, limit


def parse_range(multiplier, timespan):
    if not re.match(r"^[1-9]\d{0,8}$", multiplier):
        raise ApiError(400, error_body("Invalid multiplier: '%s'" % multiplier))
    if timespan not in TIMESPANS:
        raise ApiError(400, error_body("Invalid timespan: '%s'" % timespan))
    return int(multiplier), timespan


def answer_aggregates(path, params, now, page_size=None, base_url="", status_text="OK"):
    """(status, body-without-request_id) for an authorised aggregates request.

    params: single-valued query dict.  Raises ApiError for 400s."""
    match = AGGS_PATH.match(path)
    ticker, multiplier, timespan, from_raw, to_raw = (
        urllib.parse.unquote(part) for part in match.groups())
    multiplier, timespan = parse_range(multiplier, timespan)
    start = parse_time_param(from_raw, "from")
    end = parse_time_param(to_raw, "to")
    if bound_ms(end) < bound_ms(start):
        raise ApiError(400, error_body(MSG_TO_BEFORE_FROM))
    adjusted, sort, limit = parse_options(params)

    days = []
    if (multiplier, timespan) == (1, "day"):   # the only series with data
        days = published_days(ticker, first_day(start), last_day(end), now)
    if sort == "desc":
        days.reverse()
    page_cap = limit if page_size is None else min(limit, page_size)
    page, rest = days[:page_cap], days[page_cap:]

    body = {"ticker": ticker, "queryCount": len(page), "resultsCount": len(page),
            "adjusted": adjusted}
    if page:
        # The real API omits results (and count) when there are none.
        body["results"] = [make_bar(ticker, day) for day in page]
    body["status"] = status_text
    if page:
        body["count"] = len(page)
    if rest:
        body["next_url"] = next_url(base_url, ticker, timespan, multiplier, from_raw,
                                    to_raw, rest[0], sort, limit, adjusted)
    return 200, body


def next_url(base_url, ticker, timespan, multiplier, from_raw, to_raw, next_day,
             sort, limit, adjusted):
    """Like the real one: the moving bound becomes the next bar's ms
    timestamp, the options ride in the cursor, and the key is left out."""
    next_ms = str(midnight_ms(next_day))
    lo, hi = (next_ms, to_raw) if sort == "asc" else (from_raw, next_ms)
    options = {} if adjusted else {"adjusted": "false"}
    options.update(limit=limit, sort=sort)
    return "%s/v2/aggs/ticker/%s/range/%d/%s/%s/%s?cursor=%s" % (
        base_url, urllib.parse.quote(ticker), multiplier, timespan, lo, hi,
        encode_cursor(options))


# --------------------------------------------------------------------------
# Mutable server state: clock, faults, rate limits, request log
# --------------------------------------------------------------------------

FAULT_KEYS = {"fail_next", "fail_after", "status", "retry_after", "body",
              "truncate_next", "close_next", "delay_ms", "garbage_next", "delayed",
              "cut_next", "bad_utf8_next", "skip_next"}
COUNT_KEYS = ("fail_next", "fail_after", "truncate_next", "close_next",
              "delay_ms", "garbage_next", "retry_after", "cut_next",
              "bad_utf8_next", "skip_next")


def validate_faults(spec):
    """Reject what a test surely did not mean, rather than ignore it."""
    if not isinstance(spec, dict):
        raise ValueError("faults must be a JSON object")
    unknown = set(spec) - FAULT_KEYS
    if unknown:
        raise ValueError("unknown fault keys: %s" % ", ".join(sorted(unknown)))
    for key in COUNT_KEYS:
        value = spec.get(key)
        if value is not None and (type(value) is not int or value < 0):
            raise ValueError("%s must be a non-negative integer" % key)
    if not isinstance(spec.get("delayed", False), bool):
        raise ValueError("delayed must be true or false")
    status = spec.get("status", 503)
    if type(status) is not int or not 400 <= status <= 599:
        raise ValueError("status must be an HTTP error status")
    if spec.get("body", "json") not in ("json", "html"):
        raise ValueError('body must be "json" or "html"')


class State:
    """Everything the control API changes; one lock guards it all."""

    def __init__(self, fixed_now=None, rate_limit=None):
        self.lock = threading.Lock()
        self.fixed_now = fixed_now
        self.rate_limit = rate_limit
        self.reset()

    def reset(self):
        with self.lock:
            self.faults = {}
            self.request_seq = 0
            self.aggs_seen = 0          # aggregates requests since faults were set
            self.log = []
            self.windows = {}           # api key -> deque of monotonic times

    # -- clock --
    def now(self):
        with self.lock:
            fixed = self.fixed_now
        return fixed if fixed is not None else dt.datetime.now(UTC)

    def set_clock(self, instant):
        with self.lock:
            self.fixed_now = instant

    # -- ids --
    def next_request_id(self):
        """32 hex chars like the real ids, deterministic after a reset."""
        with self.lock:
            self.request_seq += 1
            seq = self.request_seq
        return hashlib.md5(b"request-%d" % seq).hexdigest()

    # -- faults --
    def configure_faults(self, spec):
        validate_faults(spec)
        with self.lock:
            self.faults.update(spec)
            if "fail_after" in spec:
                self.aggs_seen = 0

    def fault_config(self):
        with self.lock:
            return dict(self.faults)

    def _take(self, key):
        """Consume one unit of a "next N" fault; True when it fires."""
        remaining = self.faults.get(key) or 0
        if remaining > 0:
            self.faults[key] = remaining - 1
            return True
        return False

    def plan_faults(self):
        """Decide, atomically, what happens to one aggregates request."""
        with self.lock:
            f = self.faults
            index = self.aggs_seen
            self.aggs_seen += 1
            plan = {"delay_ms": f.get("delay_ms") or 0, "close": False,
                    "fail": None, "garbage": False, "truncate": False,
                    "cut": False, "bad_utf8": False,
                    "delayed": bool(f.get("delayed"))}
            if self._take("skip_next"):
                return plan
            plan["close"] = self._take("close_next")
            if plan["close"]:
                return plan
            failing = self._take("fail_next") or (
                f.get("fail_after") is not None and index >= f["fail_after"])
            if failing:
                plan["fail"] = {"status": f.get("status", 503),
                                "retry_after": f.get("retry_after"),
                                "body": f.get("body")}
            plan["garbage"] = self._take("garbage_next")
            plan["truncate"] = self._take("truncate_next")
            plan["cut"] = self._take("cut_next")
            plan["bad_utf8"] = self._take("bad_utf8_next")
            return plan

    # -- rate limit --
    def admit(self, key):
        """Rolling 60 s window per key (real time: the server clock may be
        frozen).  Rejected requests do not count, so waiting always helps."""
        if not self.rate_limit:
            return True
        with self.lock:
            window = self.windows.setdefault(key, deque())
            now = time.monotonic()
            while window and now - window[0] >= 60:
                window.popleft()
            if len(window) >= self.rate_limit:
                return False
            window.append(now)
            return True

    # -- log --
    def record(self, entry):
        with self.lock:
            self.log.append(entry)

    def log_entries(self):
        with self.lock:
            return list(self.log)


# --------------------------------------------------------------------------
# HTTP
# --------------------------------------------------------------------------

API_KEY_IN_QUERY = re.compile(r"(?i)(^|&)(apikey=)[^&]*")


def redact_query(query):
    return API_KEY_IN_QUERY.sub(r"\1\2REDACTED", query)


def single_valued(query):
    """Query dict keeping the first value of each name."""
    params = {}
    for name, value in urllib.parse.parse_qsl(query, keep_blank_values=True):
        params.setdefault(name, value)
    return params


def extract_key(headers, params):
    """(key, scheme): Bearer header first, then the apiKey parameter."""
    header = headers.get("Authorization")
    scheme = None
    if header:
        scheme, _, token = header.strip().partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip(), scheme
    return (params.get("apiKey") or None), scheme


def key_fingerprint(key):
    """Lets tests tell keys apart in the log without the log holding them."""
    return hashlib.sha256(key.encode()).hexdigest()[:8] if key else None


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"      # keep-alive, like the real API
    server_version = "polygon-test-server"
    timeout = 60                       # idle keep-alive connections go away

    # -- plumbing --
    def version_string(self):
        return self.server_version

    @property
    def state(self):
        return self.server.state

    def split_path(self):
        parts = urllib.parse.urlsplit(self.path)
        return parts.path, parts.query

    def read_body(self):
        """Consume the request body so a keep-alive connection stays in sync."""
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = 0
        return self.rfile.read(length) if length > 0 else b""

    def send(self, status, body, content_type="application/json",
             headers=(), truncate=False):
        """Write a full response; truncate sends half of it, then closes."""
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        if truncate:
            self.wfile.write(body[:len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)

    def send_json(self, status, value, headers=()):
        self.send(status, to_json(value).encode(), headers=headers)

    def log_message(self, fmt, *args):
        if not self.server.quiet:
            sys.stderr.write("polygon_server: %s\n" % (fmt % args))

    def log_request(self, code="-", size="-"):
        # The default logs the raw request line, which may hold the key.
        path, query = self.split_path()
        shown = path + ("?" + redact_query(query) if query else "")
        self.log_message("%s %s %s", self.command, shown, code)

    # -- routing --
    def do_GET(self):
        path, query = self.split_path()
        if path.startswith("/_control/"):
            self.read_body()
            return self.control_get(path, query)
        return self.api(path, query)

    def do_POST(self):
        path, query = self.split_path()
        body = self.read_body()
        if path.startswith("/_control/"):
            return self.control_post(path, body)
        return self.api(path, query)

    # -- the API --
    def api(self, path, query):
        params = single_valued(query)
        key, scheme = extract_key(self.headers, params)
        entry = {
            "time": dt.datetime.now(UTC).isoformat(timespec="milliseconds"),
            "method": self.command, "path": path, "query": redact_query(query),
            "authorization_present": "Authorization" in self.headers,
            "authorization_scheme": scheme,
            "api_key_in_query": bool(params.get("apiKey")),
            "key_fingerprint": key_fingerprint(key),
            "key_state": self.key_state(key),
            "status": None, "fault": None,
        }
        logged = []

        def log_entry():
            # Before the answer goes out: a client that has its answer finds
            # the request in the log.
            if not logged:
                logged.append(True)
                self.state.record(entry)

        try:
            self.api_answer(path, params, key, entry, log_entry)
        finally:
            log_entry()

    def api_answer(self, path, params, key, entry, log_entry):
        is_aggs = self.command == "GET" and AGGS_PATH.match(path) is not None
        plan = self.state.plan_faults() if is_aggs else None
        if plan and plan["delay_ms"]:
            time.sleep(plan["delay_ms"] / 1000)
        if plan and plan["close"]:
            entry["fault"] = "close"
            self.close_connection = True    # hang up without a word
            return
        request_id = self.state.next_request_id()
        entry["request_id"] = request_id
        if plan and plan["fail"]:
            entry["fault"] = "fail"
            status, body, ctype, headers = self.fault_response(plan["fail"], request_id)
        else:
            status, body, ctype, headers = self.normal_response(
                path, params, key, request_id, plan, is_aggs)
        if plan and plan["garbage"]:
            entry["fault"] = "garbage"
            status, ctype = 200, "application/json"   # a lying proxy
            body = b"<html><body><h1>OK</h1>this is not JSON</body></html>\n"
        if plan and plan["cut"]:
            entry["fault"] = "cut"
            body = body[:len(body) // 2]
        if plan and plan["bad_utf8"]:
            entry["fault"] = "bad_utf8"
            body = not_utf8(body)
        if plan and plan["truncate"]:
            entry["fault"] = "truncate"
        entry["status"] = status
        headers = [("X-Request-Id", request_id)] + headers
        log_entry()
        self.send(status, body, ctype, headers, truncate=bool(plan and plan["truncate"]))

    def normal_response(self, path, params, key, request_id, plan, is_aggs):
        """Auth, rate limit, then the data; returns (status, body, type, headers)."""
        status, body = self.authorise(key)
        if status == 200 and not is_aggs:
            status, body = 404, {"status": "NOT_FOUND", "message": "Not found."}
        if status == 200:
            try:
                status, body = answer_aggregates(
                    path, params, self.state.now(), self.server.page_size,
                    self.server.base_url, "DELAYED" if plan["delayed"] else "OK")
            except ApiError as error:
                status, body = error.status, error.body
        return status, to_json(with_request_id(body, request_id)).encode(), "application/json", []

    def authorise(self, key):
        if not key:
            return 401, error_body(MSG_NO_KEY)
        if key not in self.server.keys and key not in self.server.forbidden_keys:
            return 401, error_body(MSG_UNKNOWN_KEY)
        if not self.state.admit(key):
            return 429, error_body(MSG_RATE_LIMIT)
        if key in self.server.forbidden_keys:
            return 403, not_authorized_body()
        return 200, None

    def key_state(self, key):
        if not key:
            return "missing"
        if key in self.server.keys:
            return "valid"
        return "forbidden" if key in self.server.forbidden_keys else "unknown"

    def fault_response(self, fail, request_id):
        status = fail["status"]
        kind = fail["body"] or ("html" if status in (502, 503, 504) else "json")
        headers = []
        if fail["retry_after"] is not None:
            headers.append(("Retry-After", str(fail["retry_after"])))
        if kind == "html":
            reason = self.responses.get(status, ("Error",))[0]
            page = GATEWAY_PAGE.format(code=status, reason=reason)
            return status, page.encode(), "text/html", headers
        error = MSG_RATE_LIMIT if status == 429 else self.responses.get(status, ("Error",))[0]
        body = to_json(with_request_id(error_body(error), request_id)).encode()
        return status, body, "application/json", headers

    # -- the control API --
    def control_get(self, path, query):
        if path == "/_control/log":
            return self.send_json(200, self.state.log_entries())
        if path == "/_control/faults":
            return self.send_json(200, self.state.fault_config())
        if path == "/_control/clock":
            return self.send_json(200, self.clock_body())
        if path == "/_control/published":
            return self.control_published(single_valued(query))
        return self.send_json(404, {"error": "no such control endpoint"})

    def control_post(self, path, raw):
        try:
            body = json.loads(raw or b"{}")
            if path == "/_control/clock":
                if not isinstance(body, dict) or "now" not in body:
                    raise ValueError('expected {"now": ISO8601 or null}')
                now = body["now"]
                self.state.set_clock(parse_instant(now) if now is not None else None)
                return self.send_json(200, self.clock_body())
            if path == "/_control/faults":
                self.state.configure_faults(body)
                return self.send_json(200, self.state.fault_config())
            if path == "/_control/reset":
                self.state.reset()
                return self.send_json(200, {"reset": True})
        except (ValueError, TypeError, AttributeError) as error:
            return self.send_json(400, {"error": str(error)})
        return self.send_json(404, {"error": "no such control endpoint"})

    def clock_body(self):
        now = self.state.now()
        return {"now": now.isoformat(), "new_york": to_new_york(now).isoformat(),
                "fixed": self.state.fixed_now is not None}

    def control_published(self, params):
        try:
            first = dt.date.fromisoformat(params["from"])
            last = dt.date.fromisoformat(params["to"])
            ticker = params["ticker"]
        except (KeyError, ValueError) as error:
            return self.send_json(400, {"error": "need ticker, from, to: %s" % error})
        return self.send_json(200, published_bars(ticker, first, last, self.state.now()))


class Server(ThreadingHTTPServer):
    daemon_threads = True   # open keep-alive connections must not block exit

    def __init__(self, config):
        host = config.host
        if ":" in host:
            self.address_family = socket.AF_INET6
        super().__init__((host, config.port), Handler)
        self.state = State(config.now, config.rate_limit)
        self.keys = set(config.keys)
        self.forbidden_keys = set(config.forbidden_keys)
        self.page_size = config.page_size
        self.quiet = config.quiet
        url_host = "[%s]" % host if ":" in host else host
        self.base_url = "http://%s:%d" % (url_host, self.server_address[1])


# --------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


def split_keys(text):
    return [k for k in (part.strip() for part in text.split(",")) if k]


def positive_int(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def parse_args(argv):
    p = argparse.ArgumentParser(description="Polygon.io-compatible test server")
    p.add_argument("--host", default="127.0.0.1", choices=LOOPBACK_HOSTS,
                   help="loopback address to listen on")
    p.add_argument("--port", type=int, default=0, help="0 picks a free port")
    p.add_argument("--port-file", help="write the chosen port here (atomically)")
    p.add_argument("--keys", type=split_keys,
                   default=split_keys("sl-test-key-0001,sl-secret-d3adb33f-canary"))
    p.add_argument("--forbidden-keys", type=split_keys,
                   default=split_keys("sl-forbidden-0001"))
    p.add_argument("--page-size", type=positive_int, help="cap every page at N bars")
    p.add_argument("--now", type=parse_instant, help="freeze the clock (ISO 8601)")
    p.add_argument("--rate-limit", type=positive_int,
                   help="at most N requests per rolling 60 s per key")
    p.add_argument("--quiet", action="store_true", help="no request log on stderr")
    return p.parse_args(argv)


def write_port_file(path, port):
    """Write then rename, so a reader never sees a half-written file."""
    tmp = "%s.tmp.%d" % (path, os.getpid())
    with open(tmp, "w") as f:
        f.write("%d\n" % port)
    os.replace(tmp, path)


def main(argv=None):
    config = parse_args(sys.argv[1:] if argv is None else argv)
    server = Server(config)

    def stop(signum, frame):
        # shutdown() waits for serve_forever, which runs in this very thread.
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    if config.port_file:
        write_port_file(config.port_file, server.server_address[1])
    print("listening on %s" % server.base_url, flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
