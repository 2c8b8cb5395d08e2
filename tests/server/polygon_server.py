#!/usr/bin/env python3
"""A Polygon.io-compatible test server: daily aggregates, ticker news,
tickers and ticker details.

The connector under test (source-lua) talks to this server instead of
api.polygon.io.  Everything it returns is deterministic: the bars of a ticker
on a day are derived from sha256(ticker, day), the trading calendar is the
NYSE one computed from rules, news and the ticker universe are derived from
hashes too, and the clock can be frozen.  Standard library only, so it runs
with the distribution's /usr/bin/python3.

Usage
-----
    python3 tests/server/polygon_server.py [--host 127.0.0.1] [--port 0]
        [--port-file FILE] [--keys k1,k2] [--forbidden-keys k3]
        [--page-size N] [--now ISO8601] [--rate-limit N] [--quiet]

--port 0 picks a free port; the port is written atomically to --port-file and
"listening on http://HOST:PORT" is printed (flushed) on stdout.  SIGTERM and
SIGINT stop the server with exit status 0.  --page-size caps every page of
every endpoint (bars, articles, tickers) whatever limit asks for.

The API
-------
Every endpoint takes the key in "Authorization: Bearer KEY" or in apiKey, and
answers a missing key 401 {"status":"ERROR","request_id":..,"error":"API Key
was not provided"}, an unknown one 401 "Unknown API Key", a forbidden one 403
{"status":"NOT_AUTHORIZED",..,"message":"You are not entitled ..."}, and an
over-the-rate-limit one 429.  Every request gets a request_id (32 hex) in the
body and in X-Request-Id, and goes in the request log; faults apply to all.
When more results remain than the page holds, next_url points back at this
server with an opaque cursor and without the key, like the real API; a
next_url page takes its options from the cursor alone.  Bad parameters get
400 {"status":"ERROR","request_id":..,"error":"..."}.

GET /v2/aggs/ticker/{ticker}/range/{multiplier}/{timespan}/{from}/{to}
    ?adjusted=true|false&sort=asc|desc&limit=1..50000&apiKey=KEY&cursor=...
Only 1/day has data.  A bar for day D is published once the server clock
reaches 16:00 America/New_York on D; there is no data before 2000-01-03;
ticker NODATA never has bars; a malformed ticker gets an empty 200.

GET /v2/reference/news?ticker=&ticker.gte|.gt|.lte|.lt=&published_utc=
        &published_utc.gte|.gt|.lte|.lt=&order=asc|desc&sort=published_utc
        &limit=1..1000&cursor=...
    {"results":[article...],"status":"OK","request_id":..,"count":N,
     "next_url":..}; no results is "results":[] and count 0.  An article
    exists once the server clock has reached its published_utc.  Order is by
    (published_utc, id), ascending or descending, so articles of the same
    second come in a fixed order and pages never overlap or skip one; the
    cursor holds Polygon's fields (limit, sort, order, ticker, published_utc,
    search_after = [ms, id] of the page's last article).  published_utc
    values are YYYY-MM-DD or RFC 3339 (Z or an offset; fractions allowed);
    a bare date stands for its whole UTC day: published_utc=D and .lte=D
    take all of D, .gt=D starts at D+1 00:00Z, .gte=D and .lt=D at D 00:00Z.
    ticker=T matches articles listing T; the range forms match an article
    one of whose tickers is in the range.  Default order: desc (newest
    first; the docs give none, they call the endpoint "the most recent news
    articles").  limit above 1000 is clamped to 1000 (the docs give only
    the maximum); limit < 1 or not a number, a bad order/sort or time is 400.

GET /v3/reference/tickers?ticker=&ticker.gte|.gt|.lte|.lt=&type=&market=
        &exchange=&cik=&date=YYYY-MM-DD&search=&active=true|false
        &order=asc|desc&sort=ticker|name|...&limit=1..1000&cursor=...
    {"results":[ticker...],"status":"OK","request_id":..,"count":N,
     "next_url":..}.  active defaults to true, order to asc, sort to ticker
    (ties broken by ticker), limit to 100 (above 1000 clamped).  date picks
    the day the listing is as of (default and maximum: today at the server
    clock, UTC); a ticker whose list_date is later does not exist yet, and
    one is active from list_date through delisted_utc ("the last date that
    the asset was traded").  search is a case-insensitive substring of
    ticker or name.  market and type must be one of the documented values
    (else 400).  The cursor also pins the date, so paging is stable.

GET /v3/reference/tickers/{ticker}?date=YYYY-MM-DD
    {"results":{details},"status":"OK","request_id":..}; an unknown ticker
    (or one not yet listed on date) is 404
    {"status":"NOT_FOUND","request_id":..,"message":"Ticker not found."}.
    market_cap is the latest published close (the aggregates' bars) times
    weighted_shares_outstanding, as the docs define it.

Facts taken from Polygon's documentation
----------------------------------------
[S] Polygon's OpenAPI spec (https://api.polygon.io/openapi, the source of
    https://polygon.io/docs/stocks/get_v2_reference_news,
    .../get_v3_reference_tickers and .../get_v3_reference_tickers__ticker),
    as its Python client saved it (.polygon/rest.py fetches that URL) on
    2025-10-30, before the rename to Massive:
    https://github.com/polygon-io/client-python/blob/082cd98649d833c5a8746dce11d70c0ed7ca1d7a/.polygon/rest.json
  - news: parameters ticker (+ .gte/.gt/.lte/.lt), published_utc (+ .gte/
    .gt/.lte/.lt), each "oneOf date-time or date"; order enum asc|desc (no
    default given); limit "default is 10 and max is 1000" (minimum 1); sort
    enum [published_utc], default published_utc.  Article fields: id,
    publisher{name, homepage_url, logo_url, favicon_url}, title, author,
    published_utc (date-time, example "2024-06-24T18:33:53Z"), article_url,
    tickers[], amp_url, image_url, description, keywords[],
    insights[{ticker, sentiment positive|neutral|negative,
    sentiment_reasoning}]; required: id, publisher, title, author,
    published_utc, article_url, tickers (publisher: name, logo_url,
    homepage_url).  Envelope: count, next_url, request_id, results, status.
    The example next_url's cursor is base64url JSON {"limit":1,"sort":
    "published_utc","order":"ascending","ticker":{},"published_utc":{"gte":
    "2021-04-26"},"search_after":[1619404397000,null]}.
  - tickers: ticker (+ ranges), type (enum CS, ADRC, ... LT), market (enum
    stocks, crypto, fx, otc, indices), exchange, cusip, cik, date, search
    ("terms within the ticker and/or company name"), active ("Default is
    true"), order asc|desc, limit "default is 100 and max is 1000", sort
    (default ticker, enum ticker, name, market, locale, primary_exchange,
    type, currency_symbol, currency_name, base_currency_symbol,
    base_currency_name, cik, composite_figi, share_class_figi,
    last_updated_utc, delisted_utc).  Result fields: ticker, name, market,
    locale (us|global), primary_exchange, type, active, currency_name, cik,
    composite_figi, share_class_figi, last_updated_utc, delisted_utc ("the
    last date that the asset was traded").  The example cursor is base64url
    of "active=true&date=2021-04-25&limit=1&order=asc&page_marker=A|..
    &sort=ticker".
  - ticker details: path ticker, optional date; results: ticker, name,
    market, locale, primary_exchange, type, active, currency_name, cik,
    composite_figi, share_class_figi, market_cap ("most recent close price
    ... multiplied by weighted outstanding shares"), phone_number,
    address{address1, address2, city, state, postal_code}, description,
    sic_code, sic_description, ticker_root, ticker_suffix, homepage_url,
    total_employees, list_date, branding{logo_url, icon_url},
    share_class_shares_outstanding, weighted_shares_outstanding, round_lot,
    delisted_utc; required: ticker, name, market, locale, active,
    currency_name.  AAPL's FIGIs, address, phone and share counts here are
    the docs' example.
[M] Responses recorded from the real API (the client's test mocks) give the
    wire order of fields: results, status, request_id, count, next_url, and
    each object's field order:
    https://github.com/polygon-io/client-python/tree/082cd98649d833c5a8746dce11d70c0ed7ca1d7a/test_rest/mocks/v2/reference
    https://github.com/polygon-io/client-python/tree/082cd98649d833c5a8746dce11d70c0ed7ca1d7a/test_rest/mocks/v3/reference
[P] https://polygon.io/blog/api-pagination-patterns: next_url is present
    only while there are more pages, the cursor is opaque, and the API key
    is left out of next_url.
[G] https://polygon.io/docs/stocks/getting-started: the key goes in apiKey
    or in "Authorization: Bearer <token>"; .lt/.lte/.gt/.gte extend a
    parameter to a range, the bare name is equality.
[404] https://github.com/polygon-io/issues/issues/339: an unknown ticker's
    details are 404 {"status":"NOT_FOUND","request_id":..,"message":
    "Ticker not found."}.
[400] https://github.com/polygon-io/issues/issues/325: a parameter the
    tickers endpoint cannot parse is 400 {"status":"ERROR","request_id":..,
    "error":"Failed to parse query parameters from URL: ..."}.
Not documented, chosen here: news' default order (desc), clamping a limit
above 1000, the 400 texts other than that prefix, "results":[] when empty,
the day meaning of a bare date, the (published_utc, id) tie order.

The reference data
------------------
Tickers (default_universe()): 354 -- 19 named stocks (AAPL, MSFT, TSLA,
AMZN, GOOGL, META, NVDA, NFLX, IBM, JPM, BRK.A, BRK.B, KO, XOM, SPY, NODATA,
AAA, BBB, CCC), 300 generated exchange-listed ones (mostly CS, some ETF,
ADRC, PFD, WARRANT), 15 OTC (OS), 8 crypto pairs, 7 currency pairs, 5
indices.  44 are delisted at some date up to 2025 (34 of them before
2022-03-07; X:ETHBTC on 2023-01-01) and 24 were listed only in 2020-2024.
News (the default corpus, from 2016-01-01 on): every stock-market CS, ETF or
ADRC ticker of the default universe except NODATA has news on the days it is
listed: 0-4 articles a weekday (2 on average), 0-2 a weekend day (0.8),
mostly 12:00-21:00 UTC.  The tickers are in groups (AAPL, MSFT, GOOGL, META,
NVDA / TSLA, AMZN, NFLX, IBM / SPY, JPM, BRK.A, BRK.B, KO, XOM / AAA, BBB,
CCC / the rest by hash, five to a group); an article lists only tickers of
its group: one in five lists a second one, and one day in three a group has
a wire article listing 2-4 of them.  A ticker's article shares the second of
its previous one one time in four, and half the wire articles share the
second of another member's article, so equal published_utc values are common
(AAPL: about 2 articles a day, 144 from 2022-01-01 to 2022-03-07 at 17:30
New York, 14 seconds shared by two or more, 54 listing several tickers).
Other tickers (NODATA, unknown ones) have no news.

Control API (tests only, no auth, never logged)
------------------------------------------------
POST /_control/clock      {"now": "2022-03-07T17:30:00-05:00"} freezes the
                          clock, {"now": null} returns to real time.
GET  /_control/clock      the current server time.
POST /_control/faults     fault injection on every API endpoint; keys merge
                          into the current configuration of their scope:
    {"path": "/v2/reference/news", ...}  the faults in this object apply only
        to requests whose path is that prefix or under it (whole segments:
        "/v3/reference/tickers" also covers "/v3/reference/tickers/AAPL").
        Without "path" they apply to every API request.  Each scope has its
        own counters and "_next" units; a request is seen by every scope
        that holds it, the most specific first, and of each kind of fault
        only the first scope that fires it spends a unit.
    {"fail_next": N, "status": 503, "retry_after": S, "body": "html"|"json"}
        the next N requests fail with that status (429 uses Polygon's rate
        limit body; Retry-After is sent when retry_after is given; body
        defaults to html for 502/503/504 and json otherwise).
    {"fail_after": N, "status": 500}  the first N requests succeed, all later
        ones fail (fail_after 0: never recovers).
    {"fail_at_request": N, "status": 500}  request number N (1-based, counted
        in the scope from when this is set) fails, the others do not; a list
        [N, M, ...] fails several.  For exactly-once tests: with path
        "/v2/reference/news" and N 2, page 2 of a news read fails once and
        its retry (request 3) succeeds.
    {"truncate_next": N}  Content-Length larger than the body sent, then close.
    {"close_next": N}     close the connection without answering.
    {"delay_ms": M}       every response waits M ms first.
    {"garbage_next": N}   200 with a body that is not JSON.
    {"cut_next": N}       200 whose JSON body is cut off half-way, with a
        Content-Length that matches what is sent (a proxy that lost the
        upstream mid-answer): well-formed HTTP, a text that is not JSON.
    {"bad_utf8_next": N}  the body with a byte that is not UTF-8 (0xFF) put
        into its "status" string, which comes after every bar or result.
    {"skip_next": K}      the next K requests (of the scope) are answered
        normally whatever the scope's other faults say, so that a "_next"
        fault hits request K+1 (the third page of a next_url chain with
        skip_next 2).
    {"delayed": true}     success bodies say status "DELAYED" instead of "OK".
GET  /_control/faults     the every-path configuration at the top level, plus
                          "paths": {prefix: configuration} when any.
POST /_control/reset      clears faults, counters, rate limits, request log,
                          and returns news and tickers to their defaults.
GET  /_control/log        every API request: method, path, query (apiKey
                          redacted), Authorization presence and scheme, status.
GET  /_control/published?ticker=T&from=YYYY-MM-DD&to=YYYY-MM-DD
                          the bars published at the current server clock (the
                          ground truth), each with "date" plus the bar fields.
POST /_control/news       {"articles": [...]} replaces the news corpus:
                          published_utc is required (whole seconds), every
                          other missing field is generated, a field given as
                          null is left out, unknown fields are kept; ids must
                          be unique.  Answers {"default": false, "count": N,
                          "articles": [the articles as they will be served,
                          ascending]}.
                          {"articles": null} returns to the default corpus.
GET  /_control/news?ticker=T&from=..&to=..
                          the articles visible at the current clock (the
                          ground truth), ascending by (published_utc, id);
                          each parameter optional, from/to are dates (whole
                          UTC days) or RFC 3339 instants, both inclusive.
POST /_control/tickers    {"tickers": [...]} replaces the ticker universe
                          (each needs "ticker"; missing fields are generated;
                          "active": false without delisted_utc gets one;
                          list_date and delisted_utc decide visibility and
                          activity); {"tickers": null} returns to the default.
                          The default news corpus does not change with it.
GET  /_control/tickers    every ticker listed at the current clock (active
                          or not), as the list endpoint shows it.

Importable: trading_days, is_trading_day, nyse_holidays, published_bars,
make_bar, midnight_ms, to_new_york, to_json, default_universe, news_truth,
DEFAULT_NEWS, group_news ... (see the test suite).
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
# Reference endpoints: shared parsing (news, tickers, ticker details)
# --------------------------------------------------------------------------

NEWS_PATH = "/v2/reference/news"
TICKERS_PATH = "/v3/reference/tickers"
TICKER_DETAILS_PATH = re.compile(r"^/v3/reference/tickers/([^/]+)/?$")

REF_MAX_LIMIT = 1000            # news and tickers: "max is 1000"
NEWS_DEFAULT_LIMIT = 10         # news: "default is 10"
TICKERS_DEFAULT_LIMIT = 100     # tickers: "default is 100"

MSG_TICKER_NOT_FOUND = "Ticker not found."
MSG_REF_BAD_QUERY = ("Failed to parse query parameters from URL: Key: '%s.%s' "
                     "Error:Field validation for '%s' failed on the '%s' tag")
MSG_REF_BAD_TIME = ("Could not parse the %s parameter: '%s'. "
                    "Use YYYY-MM-DD or an RFC 3339 timestamp")
MSG_BAD_CURSOR = "Invalid cursor"

EPOCH = dt.datetime(1970, 1, 1, tzinfo=UTC)
ONE_US = dt.timedelta(microseconds=1)
RANGE_OPS = ("gte", "gt", "lte", "lt")
RFC3339_RE = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?"
    r"(?:([Zz])|([+-])(\d{2}):(\d{2}))$")


def bad_query(struct, field, tag):
    return ApiError(400, error_body(MSG_REF_BAD_QUERY % (struct, field, field, tag)))


def to_us(instant):
    """Unix microseconds of an aware datetime."""
    return (instant - EPOCH) // ONE_US


def from_us(us):
    return EPOCH + dt.timedelta(microseconds=us)


def day_start_us(day):
    return to_us(dt.datetime.combine(day, dt.time(0), tzinfo=UTC))


def us_to_day(us):
    """UTC date of an instant, clamped to the dates datetime can hold."""
    try:
        return from_us(us).date()
    except OverflowError:
        return dt.date.min if us < 0 else dt.date.max


def utc_text(us):
    """Polygon's published_utc form: 2024-06-24T18:33:53Z (whole seconds)."""
    return from_us(us).strftime("%Y-%m-%dT%H:%M:%SZ")


def utc_midnight_text(day):
    return day.isoformat() + "T00:00:00Z"


def parse_rfc3339(text):
    """Unix microseconds of an RFC 3339 timestamp (offset or Z required,
    fractions beyond microseconds dropped); ValueError otherwise."""
    m = RFC3339_RE.match(text)
    if not m:
        raise ValueError("not an RFC 3339 timestamp: %r" % (text,))
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    fraction, zulu, sign, off_h, off_m = m.groups()[6:]
    micro = int((fraction or "0")[:6].ljust(6, "0"))
    offset = dt.timedelta(0)
    if not zulu:
        offset = dt.timedelta(hours=int(off_h), minutes=int(off_m))
        if sign == "-":
            offset = -offset
    value = dt.datetime(year, month, day, hour, minute, second, micro,
                        tzinfo=dt.timezone(offset))
    return to_us(value)


def parse_when(raw):
    """("day", date) for YYYY-MM-DD, ("instant", us) for RFC 3339."""
    if DATE_RE.match(raw):
        return "day", dt.date.fromisoformat(raw)
    return "instant", parse_rfc3339(raw)


def time_bounds(filters):
    """[lo, hi) in microseconds from {op: (kind, value)}; None = unbounded.

    A bare date means its whole UTC day: published_utc=D and .lte D include
    all of D, .gt D starts the next day, .gte D and .lt D start at 00:00Z."""
    lo = hi = None
    for op, (kind, value) in filters.items():
        if kind == "day":
            a = day_start_us(value)
            b = a + 86400 * 10 ** 6
        else:
            a, b = value, value + 1
        new_lo, new_hi = {"eq": (a, b), "gte": (a, None), "gt": (b, None),
                          "lte": (None, b), "lt": (None, a)}[op]
        if new_lo is not None:
            lo = new_lo if lo is None else max(lo, new_lo)
        if new_hi is not None:
            hi = new_hi if hi is None else min(hi, new_hi)
    return lo, hi


def parse_ref_limit(raw, default, struct):
    """1..1000; larger values are clamped to 1000 (the docs give only the
    maximum, not what happens above it)."""
    if raw is None or raw == "":
        return default
    try:
        limit = int(raw)
    except ValueError:
        raise bad_query(struct, "Limit", "numeric")
    if limit < 1:
        raise bad_query(struct, "Limit", "min")
    return min(limit, REF_MAX_LIMIT)


def parse_bool_param(raw, struct, field):
    """strconv.ParseBool, which the Go backend uses."""
    if raw in ("1", "t", "T", "true", "TRUE", "True"):
        return True
    if raw in ("0", "f", "F", "false", "FALSE", "False"):
        return False
    raise bad_query(struct, field, "boolean")


def ticker_ops(params, struct):
    """{"eq": T, "gte": ..., ...} from ticker and ticker.gte/.gt/.lte/.lt;
    empty values mean "no filter", as the docs say of ticker."""
    ops = {}
    if params.get("ticker"):
        ops["eq"] = params["ticker"]
    for op in RANGE_OPS:
        if params.get("ticker." + op):
            ops[op] = params["ticker." + op]
    return ops


def ticker_matches(ops, ticker):
    """One ticker against every operator."""
    for op, value in ops.items():
        if not {"eq": ticker == value, "gte": ticker >= value, "gt": ticker > value,
                "lte": ticker <= value, "lt": ticker < value}[op]:
            return False
    return True


def tickers_match(ops, tickers):
    """An article's tickers[]: eq must be one of them, and one of them must
    satisfy all the range operators together (a range query on an array)."""
    if "eq" in ops and ops["eq"] not in tickers:
        return False
    ranged = {op: v for op, v in ops.items() if op != "eq"}
    return not ranged or any(ticker_matches(ranged, t) for t in tickers)


def b64_json(value):
    text = json.dumps(value, separators=(",", ":"))
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def un_b64_json(cursor):
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        return json.loads(base64.urlsafe_b64decode(padded.encode()).decode())
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, error_body(MSG_BAD_CURSOR))


def _pick(digest, index, choices):
    return choices[digest[index % len(digest)] % len(choices)]


def _slug(text):
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:60]


# --------------------------------------------------------------------------
# Reference tickers: a deterministic universe
# --------------------------------------------------------------------------

MARKETS = ("stocks", "crypto", "fx", "otc", "indices")
TICKER_TYPES = ("CS", "ADRC", "ADRP", "ADRR", "UNIT", "RIGHT", "PFD", "FUND", "SP",
                "WARRANT", "INDEX", "ETF", "ETN", "OS", "GDR", "OTHER", "NYRS",
                "AGEN", "EQLK", "BOND", "ADRW", "BASKET", "LT")
TICKER_SORTS = ("ticker", "name", "market", "locale", "primary_exchange", "type",
                "currency_symbol", "currency_name", "base_currency_symbol",
                "base_currency_name", "cik", "composite_figi", "share_class_figi",
                "last_updated_utc", "delisted_utc")

SIC = {
    "3571": "ELECTRONIC COMPUTERS",
    "7372": "SERVICES-PREPACKAGED SOFTWARE",
    "3711": "MOTOR VEHICLES & PASSENGER CAR BODIES",
    "5961": "RETAIL-CATALOG & MAIL-ORDER HOUSES",
    "7370": "SERVICES-COMPUTER PROGRAMMING, DATA PROCESSING, ETC.",
    "3674": "SEMICONDUCTORS & RELATED DEVICES",
    "7841": "SERVICES-VIDEO TAPE RENTAL",
    "6021": "NATIONAL COMMERCIAL BANKS",
    "6331": "FIRE, MARINE & CASUALTY INSURANCE",
    "2834": "PHARMACEUTICAL PREPARATIONS",
    "1311": "CRUDE PETROLEUM & NATURAL GAS",
    "3560": "GENERAL INDUSTRIAL MACHINERY & EQUIPMENT",
    "5331": "RETAIL-VARIETY STORES",
    "4911": "ELECTRIC SERVICES",
    "6770": "BLANK CHECKS",
    "2080": "BEVERAGES",
}

# ticker, name, primary_exchange, type, cik, list_date, sic_code, homepage,
# total_employees.  CIKs are the public SEC ones; the rest is plausible, not
# a record of the real companies.
KNOWN_STOCKS = [
    ("AAPL", "Apple Inc.", "XNAS", "CS", "0000320193", "1980-12-12", "3571",
     "https://www.apple.com", 154000),
    ("MSFT", "Microsoft Corp", "XNAS", "CS", "0000789019", "1986-03-13", "7372",
     "https://www.microsoft.com", 221000),
    ("TSLA", "Tesla, Inc. Common Stock", "XNAS", "CS", "0001318605", "2010-06-29", "3711",
     "https://www.tesla.com", 127855),
    ("AMZN", "Amazon.com, Inc.", "XNAS", "CS", "0001018724", "1997-05-15", "5961",
     "https://www.amazon.com", 1541000),
    ("GOOGL", "Alphabet Inc. Class A Common Stock", "XNAS", "CS", "0001652044", "2004-08-19",
     "7370", "https://www.abc.xyz", 190234),
    ("META", "Meta Platforms, Inc. Class A Common Stock", "XNAS", "CS", "0001326801",
     "2012-05-18", "7370", "https://investor.fb.com", 86482),
    ("NVDA", "Nvidia Corp", "XNAS", "CS", "0001045810", "1999-01-22", "3674",
     "https://www.nvidia.com", 26196),
    ("NFLX", "Netflix, Inc.", "XNAS", "CS", "0001065280", "2002-05-23", "7841",
     "https://www.netflix.com", 12800),
    ("IBM", "International Business Machines", "XNYS", "CS", "0000051143", "1962-01-02",
     "3571", "https://www.ibm.com", 288300),
    ("JPM", "JPMorgan Chase & Co.", "XNYS", "CS", "0000019617", "1969-03-05", "6021",
     "https://www.jpmorganchase.com", 293723),
    ("BRK.A", "Berkshire Hathaway Inc.", "XNYS", "CS", "0001067983", "1980-03-17", "6331",
     "https://www.berkshirehathaway.com", 383000),
    ("BRK.B", "Berkshire Hathaway Inc.", "XNYS", "CS", "0001067983", "1996-05-09", "6331",
     "https://www.berkshirehathaway.com", 383000),
    ("KO", "Coca-Cola Co", "XNYS", "CS", "0000021344", "1962-01-02", "2080",
     "https://www.coca-colacompany.com", 79000),
    ("XOM", "Exxon Mobil Corp", "XNYS", "CS", "0000034088", "1962-01-02", "1311",
     "https://corporate.exxonmobil.com", 62000),
    ("SPY", "SPDR S&P 500 ETF Trust", "ARCX", "ETF", "0000884394", "1993-01-29", None,
     None, None),
    ("NODATA", "Nodata Holdings Inc.", "XNYS", "CS", None, "2001-04-02", "6770",
     None, None),
    ("AAA", "Alpha Alpha Alpha Capital Corp", "XNYS", "CS", None, "1999-06-01", "6770",
     None, None),
    ("BBB", "Bravo Bridge Bancorp, Inc.", "XNAS", "CS", None, "2003-09-15", "6021",
     None, None),
    ("CCC", "Charlie Crest Chemicals Corp", "XNYS", "CS", None, "1995-02-21", "3560",
     None, None),
]
KNOWN_OVERRIDES = {   # from the ticker details example in Polygon's docs
    "AAPL": {"composite_figi": "BBG000B9XRY4", "share_class_figi": "BBG001S5N8V8",
             "phone_number": "(408) 996-1010",
             "address": {"address1": "ONE APPLE PARK WAY", "city": "CUPERTINO",
                         "state": "CA", "postal_code": "95014"},
             "share_class_shares_outstanding": 16406400000,
             "weighted_shares_outstanding": 16334371000},
}
CRYPTO = [("BTC", "Bitcoin"), ("ETH", "Ethereum"), ("SOL", "Solana"), ("LTC", "Litecoin"),
          ("DOGE", "Dogecoin"), ("ADA", "Cardano"), ("XRP", "XRP")]
FX = [("EUR", "USD", "Euro", "United States Dollar"),
      ("USD", "JPY", "United States Dollar", "Japanese Yen"),
      ("GBP", "USD", "British Pound", "United States Dollar"),
      ("AUD", "USD", "Australian Dollar", "United States Dollar"),
      ("USD", "CAD", "United States Dollar", "Canadian Dollar"),
      ("USD", "CHF", "United States Dollar", "Swiss Franc"),
      ("EUR", "GBP", "Euro", "British Pound")]
INDICES = [("I:SPX", "Standard & Poor's 500"), ("I:NDX", "Nasdaq-100"),
           ("I:DJI", "Dow Jones Industrial Average"), ("I:VIX", "Cboe Volatility Index"),
           ("I:RUT", "Russell 2000 Index")]

SYLLABLES = ("al", "bar", "cor", "den", "el", "fal", "gen", "hal", "in", "jur", "kel",
             "lor", "mar", "nov", "or", "pra", "quin", "ros", "sol", "tra", "ul", "ven",
             "wes", "xan", "yor", "zen", "bri", "cal", "dra", "ter")
ENDINGS = ("a", "ex", "on", "ia", "is", "ent", "ara", "ix", "ova", "um", "ly", "co")
INDUSTRIES = [   # name suffix, sic_code, type
    ("Holdings Inc.", "6770", "CS"), ("Therapeutics, Inc.", "2834", "CS"),
    ("Bancorp, Inc.", "6021", "CS"), ("Energy Corp", "1311", "CS"),
    ("Technologies Inc.", "7372", "CS"), ("Industries Inc", "3560", "CS"),
    ("Retail Group, Inc.", "5331", "CS"), ("Semiconductor Corp", "3674", "CS"),
    ("Power & Light Co", "4911", "CS"), ("Software Inc. Class A", "7372", "CS"),
    ("Group plc American Depositary Shares", "3560", "ADRC"),
    ("Sector Index ETF", None, "ETF"), ("Dividend Growth ETF", None, "ETF"),
    ("Financial Corp 6.25% Preferred Series A", "6021", "PFD"),
    ("Acquisition Corp Warrants", "6770", "WARRANT"),
]
CITIES = [("NEW YORK", "NY", "100"), ("SAN JOSE", "CA", "951"), ("AUSTIN", "TX", "787"),
          ("BOSTON", "MA", "021"), ("CHICAGO", "IL", "606"), ("SEATTLE", "WA", "981"),
          ("DENVER", "CO", "802"), ("ATLANTA", "GA", "303"), ("MIAMI", "FL", "331")]
STREETS = ("Main Street", "Market Street", "Park Avenue", "Commerce Drive",
           "Innovation Way", "Harbor Boulevard", "Lakeview Parkway")
FIGI_CHARS = "BCDFGHJKLMNPQRSTVWXYZ0123456789"
EXCHANGES = ("XNAS", "XNYS", "XNYS", "XNAS", "ARCX", "BATS", "XASE")


def _figi(kind, ticker):
    """BBG000 (composite) or BBG001 (share class), five characters and a digit."""
    d = _digest("figi", kind, ticker)
    return ("BBG000" if kind == "composite" else "BBG001") + "".join(
        FIGI_CHARS[b % len(FIGI_CHARS)] for b in d[:5]) + str(d[5] % 10)


def _days_after(day, d, index, span):
    return day + dt.timedelta(days=int(_unit(d, index) * span))


def complete_ticker(spec):
    """A universe record from a partial one: every missing field gets a
    plausible value derived from sha256(ticker).  Internal fields:
    list_date (YYYY-MM-DD) and delisted_utc (RFC 3339 or None); whether the
    ticker is active is worked out at the date of each request."""
    if not isinstance(spec, dict):
        raise ValueError("a ticker must be a JSON object")
    ticker = spec.get("ticker")
    if not isinstance(ticker, str) or not ticker:
        raise ValueError("every ticker needs a non-empty \"ticker\" string")
    d = _digest("ticker", ticker)
    prefix = ticker[:2]
    market = spec.get("market") or {"X:": "crypto", "C:": "fx", "I:": "indices"}.get(
        prefix, "stocks")
    if market not in MARKETS:
        raise ValueError("market must be one of %s" % ", ".join(MARKETS))
    rec = {"ticker": ticker}
    exchange_like = market in ("stocks", "otc")
    stem = ticker.split(":")[-1]
    if exchange_like:
        default_name = "%s%s Corp" % (stem[:1], stem[1:].lower())
    else:
        default_name = stem
    rec["name"] = spec.get("name", default_name)
    rec["market"] = market
    rec["locale"] = spec.get("locale", "global" if market in ("crypto", "fx") else "us")
    if market == "stocks":
        rec["primary_exchange"] = spec.get("primary_exchange", _pick(d, 0, EXCHANGES))
    elif "primary_exchange" in spec:
        rec["primary_exchange"] = spec["primary_exchange"]
    default_type = {"stocks": "CS", "otc": "OS", "indices": "INDEX"}.get(market)
    if spec.get("type", default_type) is not None:
        rec["type"] = spec.get("type", default_type)
    if market in ("crypto", "fx"):
        for key in ("currency_symbol", "base_currency_symbol", "base_currency_name"):
            if spec.get(key) is not None:
                rec[key] = spec[key]
        rec["currency_name"] = spec.get("currency_name", "United States Dollar")
    else:
        rec["currency_name"] = spec.get("currency_name", "usd")
    if exchange_like:
        rec["cik"] = spec.get("cik", "%010d" % (1000000 + int(_unit(d, 1) * 900000)))
        rec["composite_figi"] = spec.get("composite_figi", _figi("composite", ticker))
        rec["share_class_figi"] = spec.get("share_class_figi", _figi("share", ticker))
    list_date = spec.get("list_date") or _days_after(
        dt.date(1985, 1, 2), d, 2, 365 * 30).isoformat()
    rec["list_date"] = dt.date.fromisoformat(list_date).isoformat()
    delisted = spec.get("delisted_utc")
    if delisted is not None:
        kind, value = parse_when(delisted)
        delisted = utc_midnight_text(value) if kind == "day" else utc_text(value)
    if spec.get("active") is False and delisted is None:
        start = dt.date.fromisoformat(rec["list_date"]) + dt.timedelta(days=365)
        delisted = utc_midnight_text(min(_days_after(start, d, 3, 3000),
                                         dt.date(2019, 12, 31)))
    if spec.get("active") is True and delisted is not None:
        raise ValueError("%s: active true contradicts delisted_utc" % ticker)
    if delisted is not None and delisted[:10] < rec["list_date"]:
        raise ValueError("%s: delisted_utc before list_date" % ticker)
    rec["delisted_utc"] = delisted
    if exchange_like and rec.get("type") not in ("ETF", "ETN", "FUND"):
        city, state, zip3 = _pick(d, 4, CITIES)
        sic = spec.get("sic_code", _pick(d, 5, sorted(SIC)))
        shares = int(10 ** (7 + 2.5 * _unit(d, 6)))
        defaults = {
            "phone_number": "(%03d) %03d-%04d" % (201 + d[7] % 700, 200 + d[8] % 700,
                                                 int(_unit(d, 3) * 9999)),
            "address": {"address1": ("%d %s" % (1 + int(_unit(d, 5) * 9000),
                                                  _pick(d, 10, STREETS))).upper(),
                        "city": city, "state": state,
                        "postal_code": "%s%02d" % (zip3, d[11] % 100)},
            "description": ("%s is a company listed in the United States. This "
                            "description is generated by the test server." % rec["name"]),
            "sic_code": sic,
            "sic_description": SIC.get(sic, "SERVICES-MISC"),
            "homepage_url": "https://www.%s.example" % _slug(rec["name"].split()[0]),
            "total_employees": 50 + int(_unit(d, 4) ** 2 * 80000),
            "share_class_shares_outstanding": shares,
            "weighted_shares_outstanding": shares - shares // (20 + d[12] % 30),
        }
    else:
        defaults = {}
    if exchange_like:
        root, _, suffix = stem.partition(".")
        defaults["ticker_root"] = root
        if suffix:
            defaults["ticker_suffix"] = suffix
        defaults["round_lot"] = 100
        site = "www.%s.example" % _slug(rec["name"].split()[0])
        domain = base64.urlsafe_b64encode(site.encode())
        base = "https://api.polygon.io/v1/reference/company-branding/%s/images/2022-01-10" % (
            domain.decode().rstrip("="))
        defaults["branding"] = {"logo_url": base + "_logo.svg", "icon_url": base + "_icon.png"}
    for key in DETAIL_KEYS:
        if key in spec:
            if spec[key] is not None:
                rec[key] = spec[key]
        elif key in defaults:
            rec[key] = defaults[key]
    if spec.get("market_cap") is not None:
        rec["market_cap"] = spec["market_cap"]
    known = set(rec) | {"active", "delisted_utc", "market_cap", "last_updated_utc"}
    for key, value in spec.items():          # extra fields are kept, in order
        if key not in known and value is not None:
            rec[key] = value
    return rec


DETAIL_KEYS = ("phone_number", "address", "description", "sic_code", "sic_description",
               "ticker_root", "ticker_suffix", "homepage_url", "total_employees",
               "branding", "share_class_shares_outstanding",
               "weighted_shares_outstanding", "round_lot")
LIST_KEYS = ("ticker", "name", "market", "locale", "primary_exchange", "type", "active",
             "currency_symbol", "currency_name", "base_currency_symbol",
             "base_currency_name", "cik", "composite_figi", "share_class_figi")


def _synthetic_stem(i):
    d = _digest("stem", str(i))
    n = 2 + d[0] % 2
    stem = "".join(_pick(d, 1 + k, SYLLABLES) for k in range(n)) + _pick(d, 5, ENDINGS)
    return stem.capitalize(), d


def _ticker_from_stem(stem, d, taken, length):
    letters = stem.upper()
    consonants = [c for c in letters[1:] if c not in "AEIOU"]
    for extra in range(len(consonants) + 1):
        candidate = (letters[0] + "".join(consonants[extra:]))[:length]
        if len(candidate) == length and candidate not in taken:
            return candidate
    return None


@lru_cache(maxsize=1)
def default_universe():
    """The default ticker universe, sorted by ticker (records, not views):
    19 named stocks (the aggregates tests' AAPL, MSFT, TSLA, NODATA, SPY, IBM,
    AMZN, AAA, BBB, CCC among them), 300 generated exchange-listed ones
    (common stock mostly, some ETFs, ADRs, preferreds, warrants; about one in
    eight delisted at some date up to 2025, one in twelve listed only in
    2020-2024), 15 OTC ones, 7 crypto pairs, 7 currency pairs, 5 indices."""
    recs, taken = [], set()
    for (ticker, name, exchange, kind, cik, list_date, sic, homepage,
         employees) in KNOWN_STOCKS:
        spec = {"ticker": ticker, "name": name, "primary_exchange": exchange,
                "type": kind, "list_date": list_date}
        if cik:
            spec["cik"] = cik
        if sic:
            spec["sic_code"] = sic
        if homepage:
            spec["homepage_url"] = homepage
        if employees:
            spec["total_employees"] = employees
        spec.update(KNOWN_OVERRIDES.get(ticker, {}))
        recs.append(complete_ticker(spec))
        taken.add(ticker)
    i = stocks = otc = 0
    while stocks < 300 or otc < 15:
        stem, d = _synthetic_stem(i)
        i += 1
        want_otc = stocks >= 300 or (otc < 15 and d[6] % 21 == 0)
        ticker = _ticker_from_stem(stem, d, taken, 4 if want_otc else 2 + d[7] % 3)
        if ticker is None:
            continue
        suffix, sic, kind = _pick(d, 8, INDUSTRIES) if d[9] % 3 == 0 else INDUSTRIES[d[9] % 10]
        if want_otc:
            ticker += "F"
            suffix, kind = "Ltd Ordinary Shares", "OS"
        elif kind == "WARRANT":
            ticker += "W"
        if ticker in taken:
            continue
        taken.add(ticker)
        if d[10] % 12 == 0:
            list_date = _days_after(dt.date(2020, 1, 2), d, 3, 365 * 5)
        else:
            list_date = _days_after(dt.date(1985, 1, 2), d, 3, 365 * 34)
        spec = {"ticker": ticker, "name": "%s %s" % (stem, suffix), "type": kind,
                "market": "otc" if want_otc else "stocks", "list_date": list_date.isoformat()}
        if sic:
            spec["sic_code"] = sic
        if kind == "ETF":
            spec["primary_exchange"] = _pick(d, 11, ("ARCX", "BATS", "XNAS"))
        if d[12] % 8 == 0:
            end = _days_after(list_date + dt.timedelta(days=400), d, 4, 365 * 12)
            spec["delisted_utc"] = utc_midnight_text(min(end, dt.date(2025, 6, 30)))
        recs.append(complete_ticker(spec))
        if want_otc:
            otc += 1
        else:
            stocks += 1
    for symbol, name in CRYPTO:
        recs.append(complete_ticker({
            "ticker": "X:%sUSD" % symbol, "name": "%s - United States dollar" % name,
            "currency_symbol": "USD", "currency_name": "United States dollar",
            "base_currency_symbol": symbol, "base_currency_name": name,
            "list_date": "2017-01-01"}))
    recs.append(complete_ticker({
        "ticker": "X:ETHBTC", "name": "Ethereum - Bitcoin", "currency_symbol": "BTC",
        "currency_name": "Bitcoin", "base_currency_symbol": "ETH",
        "base_currency_name": "Ethereum", "list_date": "2017-01-01",
        "delisted_utc": "2023-01-01"}))
    for base, quote, base_name, quote_name in FX:
        recs.append(complete_ticker({
            "ticker": "C:%s%s" % (base, quote), "name": "%s - %s" % (base_name, quote_name),
            "currency_symbol": quote, "currency_name": quote_name,
            "base_currency_symbol": base, "base_currency_name": base_name,
            "list_date": "2004-01-01"}))
    for ticker, name in INDICES:
        recs.append(complete_ticker({"ticker": ticker, "name": name, "list_date": "2000-01-03"}))
    recs.sort(key=lambda r: r["ticker"])
    return tuple(recs)


def ticker_dates(rec):
    listed = dt.date.fromisoformat(rec["list_date"])
    delisted = rec["delisted_utc"]
    return listed, (parse_when(delisted[:10])[1] if delisted else None)


def ticker_visible(rec, day):
    """Listed on or before day (a ticker listed later does not exist yet)."""
    return ticker_dates(rec)[0] <= day


def ticker_active(rec, day):
    """delisted_utc is "the last date that the asset was traded": active
    through that day, inactive after it."""
    listed, delisted = ticker_dates(rec)
    return listed <= day and (delisted is None or day <= delisted)


def ticker_view(rec, day):
    """A /v3/reference/tickers result as of day."""
    active = ticker_active(rec, day)
    out = {}
    for key in LIST_KEYS:
        if key == "active":
            out["active"] = active
        elif rec.get(key) is not None:
            out[key] = rec[key]
    if active:
        out["last_updated_utc"] = utc_midnight_text(day)
    else:
        out["last_updated_utc"] = rec["delisted_utc"]
        out["delisted_utc"] = rec["delisted_utc"]
    return out


def market_cap(rec, day, now):
    """The docs: the most recent close times the weighted shares outstanding."""
    if rec.get("market_cap") is not None:
        return rec["market_cap"]
    shares = rec.get("weighted_shares_outstanding")
    if not shares or rec["market"] != "stocks":
        return None
    days = published_days(rec["ticker"], day - dt.timedelta(days=14), day, now)
    if not days:
        return None
    return round(make_bar(rec["ticker"], days[-1])["c"] * shares, 2)


def ticker_details(rec, day, now):
    """A /v3/reference/tickers/{ticker} results object as of day."""
    view = ticker_view(rec, day)
    out = {}
    for key in ("ticker", "name", "market", "locale", "primary_exchange", "type",
                "active", "currency_symbol", "currency_name", "base_currency_symbol",
                "base_currency_name", "cik", "composite_figi", "share_class_figi",
                "delisted_utc"):
        if key in view:
            out[key] = view[key]
    cap = market_cap(rec, day, now)
    if cap is not None:
        out["market_cap"] = cap
    for key in ("phone_number", "address", "description", "sic_code", "sic_description",
                "ticker_root", "ticker_suffix", "homepage_url", "total_employees"):
        if key in rec:
            out[key] = rec[key]
    out["list_date"] = rec["list_date"]
    for key in ("branding", "share_class_shares_outstanding",
                "weighted_shares_outstanding", "round_lot"):
        if key in rec:
            out[key] = rec[key]
    internal = set(out) | set(LIST_KEYS) | set(DETAIL_KEYS) | {
        "list_date", "delisted_utc", "market_cap"}
    for key, value in rec.items():
        if key not in internal:
            out[key] = value
    return out


def ticker_sort_key(view, sort):
    value = view.get(sort)
    return [value is None, "" if value is None else str(value), view["ticker"]]


def answer_tickers(params, now, universe, page_size=None, base_url="", status_text="OK"):
    """(status, body) for GET /v3/reference/tickers; raises ApiError."""
    struct = "ListTickersParams"
    options = dict(params)
    if params.get("cursor"):
        options = decode_cursor(params["cursor"])
        if "page_marker" not in options:
            raise ApiError(400, error_body(MSG_BAD_CURSOR))
    today = now.astimezone(UTC).date()
    day = today
    if options.get("date"):
        if not DATE_RE.match(options["date"]):
            raise bad_query(struct, "Date", "date")
        try:
            day = min(dt.date.fromisoformat(options["date"]), today)
        except ValueError:
            raise bad_query(struct, "Date", "date")
    active = parse_bool_param(options.get("active") or "true", struct, "Active")
    market = options.get("market") or None
    if market is not None and market not in MARKETS:
        raise bad_query(struct, "Market", "oneof")
    kind = options.get("type") or None
    if kind is not None and kind not in TICKER_TYPES:
        raise bad_query(struct, "Type", "oneof")
    order = options.get("order") or "asc"
    if order not in ("asc", "desc"):
        raise bad_query(struct, "Order", "oneof")
    sort = options.get("sort") or "ticker"
    if sort not in TICKER_SORTS:
        raise bad_query(struct, "Sort", "oneof")
    limit = parse_ref_limit(options.get("limit"), TICKERS_DEFAULT_LIMIT, struct)
    ops = ticker_ops(options, struct)
    search = (options.get("search") or "").lower()
    exchange, cik = options.get("exchange") or None, options.get("cik") or None
    marker = None
    if "page_marker" in options:
        try:
            marker = json.loads(options["page_marker"])
            if not (isinstance(marker, list) and len(marker) == 3
                    and isinstance(marker[0], bool)
                    and all(isinstance(part, str) for part in marker[1:])):
                raise ValueError
        except ValueError:
            raise ApiError(400, error_body(MSG_BAD_CURSOR))

    rows = []
    for rec in universe:
        if not ticker_visible(rec, day) or ticker_active(rec, day) != active:
            continue
        if market and rec["market"] != market or kind and rec.get("type") != kind:
            continue
        if exchange and rec.get("primary_exchange") != exchange:
            continue
        if cik and rec.get("cik") != cik:
            continue
        if ops and not ticker_matches(ops, rec["ticker"]):
            continue
        if search and search not in rec["ticker"].lower() and search not in rec["name"].lower():
            continue
        view = ticker_view(rec, day)
        rows.append((ticker_sort_key(view, sort), view))
    rows.sort(key=lambda row: row[0], reverse=(order == "desc"))
    if marker is not None:
        rows = [row for row in rows
                if (row[0] > marker if order == "asc" else row[0] < marker)]
    cap = limit if page_size is None else min(limit, page_size)
    page, rest = rows[:cap], rows[cap:]
    body = {"results": [view for _, view in page], "status": status_text,
            "count": len(page)}
    if rest:
        state = {"active": "true" if active else "false", "date": day.isoformat(),
                 "limit": limit, "order": order,
                 "page_marker": json.dumps(page[-1][0], separators=(",", ":")),
                 "sort": sort}
        for name, value in (("market", market), ("type", kind), ("exchange", exchange),
                            ("cik", cik), ("search", options.get("search") or None)):
            if value is not None:
                state[name] = value
        for op, value in ops.items():
            state["ticker" if op == "eq" else "ticker." + op] = value
        body["next_url"] = "%s%s?cursor=%s" % (base_url, TICKERS_PATH, encode_cursor(state))
    return 200, body


def answer_ticker_details(path, params, now, universe, status_text="OK"):
    """(status, body) for GET /v3/reference/tickers/{ticker}."""
    ticker = urllib.parse.unquote(TICKER_DETAILS_PATH.match(path).group(1))
    today = now.astimezone(UTC).date()
    day = today
    if params.get("date"):
        if not DATE_RE.match(params["date"]):
            raise bad_query("TickerDetailsParams", "Date", "date")
        try:
            day = min(dt.date.fromisoformat(params["date"]), today)
        except ValueError:
            raise bad_query("TickerDetailsParams", "Date", "date")
    for rec in universe:
        if rec["ticker"] == ticker and ticker_visible(rec, day):
            return 200, {"results": ticker_details(rec, day, now), "status": status_text}
    return 404, {"status": "NOT_FOUND", "message": MSG_TICKER_NOT_FOUND}


# --------------------------------------------------------------------------
# Reference news: a deterministic default corpus, or one a test installs
# --------------------------------------------------------------------------

NEWS_FIRST_DAY = dt.date(2016, 1, 1)   # the default corpus starts here
NEWS_TYPES = ("CS", "ETF", "ADRC")     # which universe tickers have news
NEWS_FIELDS = ("id", "publisher", "title", "author", "published_utc", "article_url",
               "tickers", "amp_url", "image_url", "description", "keywords", "insights")
# Tickers whose news is shared (an article lists several of them, and they
# sometimes publish in the same second); the other tickers are grouped by
# hash, five to a group.  An article only ever lists tickers of one group.
NEWS_GROUPS = (("AAPL", "MSFT", "GOOGL", "META", "NVDA"),
               ("TSLA", "AMZN", "NFLX", "IBM"),
               ("SPY", "JPM", "BRK.A", "BRK.B", "KO", "XOM"),
               ("AAA", "BBB", "CCC"))

PUBLISHERS = tuple(
    dict([("name", name), ("homepage_url", "https://www.%s.example/" % slug),
          ("logo_url", "https://s3.polygon.io/public/assets/news/logos/%s.svg" % slug)]
         + ([("favicon_url", "https://s3.polygon.io/public/assets/news/favicons/%s.ico" % slug)]
            if favicon else []))
    for name, slug, favicon in (
        ("Example Wire", "examplewire", True), ("Market Ledger", "marketledger", True),
        ("The Daily Ticker", "thedailyticker", True), ("Street Signal", "streetsignal", True),
        ("Fundamentals Weekly", "fundamentalsweekly", True),
        ("Press Release Hub", "pressreleasehub", False)))
AUTHORS = ("Staff Writer", "Jane Doe", "Ravi Patel", "Maria Gonzalez", "Chen Wei",
           "Sam Okafor", "Editorial Team", "Lena Fischer")
EVENTS = ("an earnings beat", "a guidance update", "a product launch", "regulatory news",
          "an analyst upgrade", "an analyst downgrade", "a CEO interview",
          "a supply chain report", "a buyback announcement", "a dividend increase",
          "an earnings miss", "a lawsuit")
EVENT_SENTIMENT = {"an earnings beat": "positive", "an analyst upgrade": "positive",
                   "a buyback announcement": "positive", "a dividend increase": "positive",
                   "an analyst downgrade": "negative", "an earnings miss": "negative",
                   "a lawsuit": "negative"}
KEYWORDS = ("earnings", "analyst ratings", "technology", "markets", "dividends",
            "mergers and acquisitions", "guidance", "interest rates", "stocks", "investing")
SENTIMENTS = ("positive", "neutral", "negative")
NAME_NOISE = re.compile(r"(,? (Inc\.?|Corp\.?|Corporation|Co\.?|Ltd|plc|Common Stock|"
                        r"Class [A-C]|Holdings|Ordinary Shares)\b)+.*$")


def short_name(ticker):
    rec = universe_index().get(ticker)
    if rec is None:
        return ticker
    return NAME_NOISE.sub("", rec["name"]).strip() or rec["name"]


@lru_cache(maxsize=1)
def universe_index():
    return {rec["ticker"]: rec for rec in default_universe()}


@lru_cache(maxsize=1)
def news_groups():
    """(groups, group of ticker, listing window of ticker) of the default
    corpus: each group is (members, first day, last day)."""
    eligible = [r for r in default_universe() if r["market"] == "stocks"
                and r.get("type") in NEWS_TYPES and r["ticker"] != NO_DATA_TICKER]
    windows = {}
    for rec in eligible:
        listed, delisted = ticker_dates(rec)
        windows[rec["ticker"]] = (listed, delisted or dt.date.max)
    members = [tuple(t for t in group if t in windows) for group in NEWS_GROUPS]
    grouped = {t for group in members for t in group}
    rest = sorted((t for t in windows if t not in grouped),
                  key=lambda t: _digest("news-group", t))
    members += [tuple(sorted(rest[i:i + 5])) for i in range(0, len(rest), 5)]
    groups = tuple((m, min(windows[t][0] for t in m), max(windows[t][1] for t in m))
                   for m in members if m)
    index = {t: gi for gi, (m, _, _) in enumerate(groups) for t in m}
    return groups, index, windows


def _listed_on(windows, ticker, day):
    first, last = windows[ticker]
    return first <= day <= last


@lru_cache(maxsize=65536)
def group_news(gi, day):
    """The default corpus's articles of group gi published on UTC day, as
    (us, id, tickers, owner, day, k) sorted by (us, id).  Each listed member
    has 0-4 articles on a weekday (2 on average) and 0-2 on a weekend day,
    mostly between 12:00 and 21:00 UTC; a member's article shares the second
    of its previous one one time in four and lists a second member one time
    in five; one day in three the group also has a wire article listing 2-4
    members, half the time in the same second as another member's article."""
    groups, _, windows = news_groups()
    members = groups[gi][0]
    listed = [t for t in members if _listed_on(windows, t, day)]
    base = day_start_us(day)
    weekend = day.weekday() >= SAT
    out = []
    for owner in listed:
        d = _digest("news", owner, day.isoformat())
        count = (0, 0, 1, 1, 2)[d[0] % 5] if weekend else (0, 1, 1, 2, 2, 2, 3, 3, 4)[d[0] % 9]
        second = None
        others = [t for t in listed if t != owner]
        for k in range(count):
            da = _digest("news", owner, day.isoformat(), str(k))
            if second is not None and da[0] % 4 == 0:
                pass                                    # same second as the last one
            elif da[1] % 10 < 7:
                second = 12 * 3600 + int(_unit(da, 1) * 9 * 3600)
            else:
                second = int(_unit(da, 2) * 86400)
            tickers = (owner,)
            if others and da[3] % 5 == 0:
                tickers += (_pick(da, 4, others),)
            aid = hashlib.sha256(("news|%s|%s|%d" % (owner, day, k)).encode()).hexdigest()
            out.append((base + second * 10 ** 6, aid, tickers, owner, day, k))
    dw = _digest("wire", "+".join(members), day.isoformat())
    if len(listed) >= 2 and dw[0] % 3 == 0:
        size = min(len(listed), 2 + dw[1] % 3)
        start = dw[2] % len(listed)
        tickers = tuple(listed[(start + j) % len(listed)] for j in range(size))
        if out and dw[3] % 2 == 0:
            us = out[dw[4] % len(out)][0]
        else:
            us = base + int(_unit(dw, 2) * 86400) * 10 ** 6
        aid = hashlib.sha256(("wire|%s|%s" % ("+".join(members), day)).encode()).hexdigest()
        out.append((us, aid, tickers, tickers[0], day, -1))
    out.sort()
    return tuple(out)


def make_news_article(item):
    """The full article of a default-corpus item (id, publisher, title, ...
    in the order the real API writes them).  amp_url is left out of one
    article in four and keywords of one in six (the docs do not require
    them); publisher "Press Release Hub" has no favicon_url."""
    us, aid, tickers, owner, day, k = item
    d = _digest("article", aid)
    publisher = dict(_pick(d, 0, PUBLISHERS))
    event = _pick(d, 1, EVENTS)
    names = [short_name(t) for t in tickers]
    if not tickers:
        title = "Market update after %s" % event
    elif k == -1 and len(names) > 1:
        title = "%s and %s among movers after %s" % (", ".join(names[:-1]), names[-1], event)
    else:
        title = _pick(d, 2, (
            "{name} shares move after {event}", "Why {name} stock is in focus today",
            "{name} ({ticker}) draws attention with {event}",
            "Is {name} a buy after {event}?", "What {event} means for {name} investors",
        )).format(name=names[0], ticker=tickers[0], event=event)
    author = publisher["name"] if d[3] % 5 == 0 else _pick(d, 4, AUTHORS)
    when = from_us(us)
    article_url = "%snews/%s/%s-%s" % (publisher["homepage_url"], when.strftime("%Y/%m/%d"),
                                       _slug(title), aid[:8])
    article = {"id": aid, "publisher": publisher, "title": title, "author": author,
               "published_utc": utc_text(us), "article_url": article_url,
               "tickers": list(tickers)}
    if d[5] % 4:
        article["amp_url"] = article_url.replace("/news/", "/amp/news/", 1)
    article["image_url"] = "%simages/%s.jpg" % (publisher["homepage_url"], aid[:16])
    article["description"] = (
        "%s: coverage of %s and what it may mean for the shares. "
        "Generated by the test server." % (", ".join(names) or "Markets", event))
    if d[6] % 6:
        count = 2 + d[7] % 3
        article["keywords"] = [KEYWORDS[(d[8] + 3 * j) % len(KEYWORDS)] for j in range(count)]
    insights = []
    for j, ticker in enumerate(tickers):
        sentiment = EVENT_SENTIMENT.get(event) if j == 0 else None
        sentiment = sentiment or SENTIMENTS[d[9 + j % 8] % 3]
        insights.append({"ticker": ticker, "sentiment": sentiment,
                         "sentiment_reasoning": "The article covers %s at %s, which reads as "
                         "%s for the company." % (event, names[j], sentiment)})
    if insights:
        article["insights"] = insights
    return article


class DefaultNews:
    """The default corpus: every ticker of the default universe's stock
    market that is common stock, an ETF or an ADR (NODATA excepted) has news
    on the days it is listed, from NEWS_FIRST_DAY on."""

    installed = False

    def iterate(self, ops, lo, hi, desc, after):
        """Items (us, id, tickers, ...) in [lo, hi) whose tickers match ops,
        in (published, id) order (reversed when desc), strictly after the
        key `after` in that order; produced day by day, lazily."""
        groups, index, _ = news_groups()
        if "eq" in ops:
            chosen = [index[ops["eq"]]] if ops["eq"] in index else []
        else:
            chosen = list(range(len(groups)))
        ranged = {op: v for op, v in ops.items() if op != "eq"}
        if ranged:
            chosen = [gi for gi in chosen
                      if any(ticker_matches(ranged, t) for t in groups[gi][0])]
        if not chosen:
            return
        first = max(NEWS_FIRST_DAY, min(groups[gi][1] for gi in chosen))
        last = min(max(groups[gi][2] for gi in chosen), us_to_day(hi - 1))
        if lo is not None:
            first = max(first, us_to_day(lo))
        if after is not None:
            if desc:
                last = min(last, us_to_day(after[0]))
            else:
                first = max(first, us_to_day(after[0]))
        if first > last:
            return
        ordinals = range(first.toordinal(), last.toordinal() + 1)
        for ordinal in (reversed(ordinals) if desc else ordinals):
            day = dt.date.fromordinal(ordinal)
            items = [item for gi in chosen for item in group_news(gi, day)
                     if (lo is None or item[0] >= lo) and item[0] < hi
                     and tickers_match(ops, item[2])]
            if after is not None:
                items = [item for item in items
                         if ((item[0], item[1]) < after if desc else (item[0], item[1]) > after)]
            items.sort(reverse=desc)
            yield from items

    def render(self, item):
        return make_news_article(item)


class InstalledNews:
    """A corpus installed with POST /_control/news."""

    installed = True

    def __init__(self, articles):
        self.items = sorted(articles, key=lambda item: (item[0], item[1]))

    def iterate(self, ops, lo, hi, desc, after):
        for item in (reversed(self.items) if desc else self.items):
            key = (item[0], item[1])
            if (lo is None or key[0] >= lo) and key[0] < hi and tickers_match(ops, item[2]):
                if after is None or (key < after if desc else key > after):
                    yield item

    def render(self, item):
        return item[3]


def complete_article(spec, position):
    """(us, id, tickers, article) from a partial article: published_utc is
    required (YYYY-MM-DD or RFC 3339, whole seconds; written back in
    Polygon's Z form); every other missing field gets a generated value; a
    field given as null is left out; fields the docs do not name are kept."""
    if not isinstance(spec, dict):
        raise ValueError("an article must be a JSON object")
    raw = spec.get("published_utc")
    if not isinstance(raw, str):
        raise ValueError("article %d: published_utc (a string) is required" % position)
    kind, value = parse_when(raw)
    us = day_start_us(value) if kind == "day" else value
    if us % 10 ** 6:
        raise ValueError("article %d: published_utc must be whole seconds" % position)
    tickers = spec.get("tickers", [])
    if tickers is not None and (not isinstance(tickers, list)
                                or not all(isinstance(t, str) for t in tickers)):
        raise ValueError("article %d: tickers must be a list of strings" % position)
    aid = spec.get("id")
    if aid is None:
        aid = hashlib.sha256(("installed|%d|%s|%s" % (
            position, utc_text(us), spec.get("title"))).encode()).hexdigest()
    elif not isinstance(aid, str) or not aid:
        raise ValueError("article %d: id must be a non-empty string" % position)
    tickers = tuple(tickers or ())
    generated = make_news_article((us, aid, tickers, tickers[0] if tickers else None,
                                   us_to_day(us), position))
    article = {}
    for field in NEWS_FIELDS:
        if field in ("id", "published_utc"):
            article[field] = aid if field == "id" else utc_text(us)
        elif field not in spec:
            if field in generated:
                article[field] = generated[field]
        elif spec[field] is not None:
            value = spec[field]
            if field == "publisher" and isinstance(value, dict):
                value = dict(generated["publisher"], **value)
            article[field] = value
    for field, value in spec.items():
        if field not in article and field not in NEWS_FIELDS:
            article[field] = value
    return us, aid, tickers, article


def install_news(articles):
    items = [complete_article(spec, i) for i, spec in enumerate(articles)]
    ids = [item[1] for item in items]
    if len(set(ids)) != len(ids):
        raise ValueError("article ids must be unique")
    return InstalledNews(items)


DEFAULT_NEWS = DefaultNews()
NEWS_TIME_PARAMS = (("eq", "published_utc"), ("gte", "published_utc.gte"),
                    ("gt", "published_utc.gt"), ("lte", "published_utc.lte"),
                    ("lt", "published_utc.lt"))


def parse_news_times(raw_ops):
    """{op: raw} -> {op: (kind, value)}; 400 naming the parameter."""
    out = {}
    for op, name in NEWS_TIME_PARAMS:
        if op in raw_ops:
            try:
                out[op] = parse_when(raw_ops[op])
            except ValueError:
                raise ApiError(400, error_body(MSG_REF_BAD_TIME % (name, raw_ops[op])))
    return out


def news_options(params):
    """(limit, desc, ticker ops, published_utc {op: raw}, after) from the
    query or, on next_url pages, from the cursor alone."""
    struct = "ListNewsParams"
    if params.get("cursor"):
        state = un_b64_json(params["cursor"])
        try:
            limit, order = state["limit"], state["order"]
            ops, times, after = state["ticker"], state["published_utc"], state["search_after"]
            if (type(limit) is not int or not 1 <= limit <= REF_MAX_LIMIT
                    or order not in ("ascending", "descending")
                    or state.get("sort") != "published_utc"
                    or not isinstance(ops, dict) or not isinstance(times, dict)
                    or not all(op in ("eq",) + RANGE_OPS and isinstance(v, str)
                               for d in (ops, times) for op, v in d.items())
                    or not isinstance(after, list) or len(after) != 2
                    or type(after[0]) is not int or not isinstance(after[1], str)):
                raise ValueError
        except (KeyError, TypeError, ValueError):
            raise ApiError(400, error_body(MSG_BAD_CURSOR))
        return limit, order == "descending", ops, times, (after[0] * 1000, after[1])
    order = params.get("order") or "desc"
    if order not in ("asc", "desc"):
        raise bad_query(struct, "Order", "oneof")
    if (params.get("sort") or "published_utc") != "published_utc":
        raise bad_query(struct, "Sort", "oneof")
    limit = parse_ref_limit(params.get("limit"), NEWS_DEFAULT_LIMIT, struct)
    times = {op: params[name] for op, name in NEWS_TIME_PARAMS if params.get(name)}
    return limit, order == "desc", ticker_ops(params, struct), times, None


def answer_news(params, now, corpus, page_size=None, base_url="", status_text="OK"):
    """(status, body) for GET /v2/reference/news; raises ApiError for 400s.

    Only articles whose published_utc the server clock has reached exist."""
    limit, desc, ops, times, after = news_options(params)
    lo, hi = time_bounds(parse_news_times(times))
    visible = to_us(now) + 1
    hi = visible if hi is None else min(hi, visible)
    cap = limit if page_size is None else min(limit, page_size)
    items = []
    if lo is None or lo < hi:
        for item in corpus.iterate(ops, lo, hi, desc, after):
            items.append(item)
            if len(items) > cap:
                break
    page = items[:cap]
    body = {"results": [corpus.render(item) for item in page], "status": status_text,
            "count": len(page)}
    if len(items) > cap:
        last = page[-1]
        state = {"limit": limit, "sort": "published_utc",
                 "order": "descending" if desc else "ascending",
                 "ticker": ops, "published_utc": times,
                 "search_after": [last[0] // 1000, last[1]]}
        body["next_url"] = "%s%s?cursor=%s" % (base_url, NEWS_PATH, b64_json(state))
    return 200, body


def news_truth(corpus, now, ticker=None, first=None, last=None):
    """Ground truth: every article visible at now, ascending by
    (published_utc, id), with ticker among its tickers and published within
    [first, last] (each YYYY-MM-DD, a whole UTC day, or RFC 3339)."""
    raw = {}
    if first:
        raw["gte"] = first
    if last:
        raw["lte"] = last
    filters = {}
    for op, value in raw.items():
        filters[op] = parse_when(value)
    lo, hi = time_bounds(filters)
    visible = to_us(now) + 1
    hi = visible if hi is None else min(hi, visible)
    if lo is not None and lo >= hi:
        return []
    ops = {"eq": ticker} if ticker else {}
    return [corpus.render(item) for item in corpus.iterate(ops, lo, hi, False, None)]


# --------------------------------------------------------------------------
# Mutable server state: clock, faults, rate limits, request log
# --------------------------------------------------------------------------

FAULT_KEYS = {"fail_next", "fail_after", "status", "retry_after", "body",
              "truncate_next", "close_next", "delay_ms", "garbage_next", "delayed",
              "cut_next", "bad_utf8_next", "skip_next", "fail_at_request", "path"}
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
    at = spec.get("fail_at_request")
    if at is not None:
        numbers = at if isinstance(at, list) else [at]
        if not numbers or not all(type(n) is int and n >= 1 for n in numbers):
            raise ValueError("fail_at_request must be a request number (1 = the first "
                             "request after the fault is set) or a list of them")
    path = spec.get("path")
    if path is not None and (not isinstance(path, str) or not path.startswith("/")
                             or path.startswith("/_control")):
        raise ValueError('path must be an API path prefix such as "/v2/reference/news"')


def path_matches(prefix, path):
    """Whole path segments: /v3/reference/tickers matches itself and
    /v3/reference/tickers/AAPL, not /v3/reference/tickersX."""
    prefix = prefix.rstrip("/") or "/"
    return path == prefix or path.startswith(prefix if prefix.endswith("/") else prefix + "/")


class FaultSet:
    """The faults of one scope: every API request (path None) or the
    requests under one path prefix, with that scope's own request counters."""

    def __init__(self, path):
        self.path = path
        self.spec = {}
        self.seen_after = 0     # requests in scope since fail_after was set
        self.seen_at = 0        # requests in scope since fail_at_request was set

    def configure(self, spec):
        self.spec.update(spec)
        if "fail_after" in spec:
            self.seen_after = 0
        if "fail_at_request" in spec:
            self.seen_at = 0

    def take(self, key):
        """Consume one unit of a "next N" fault; True when it fires."""
        remaining = self.spec.get(key) or 0
        if remaining > 0:
            self.spec[key] = remaining - 1
            return True
        return False

    def failing(self, after_index, at_number):
        f = self.spec
        at = f.get("fail_at_request")
        at = at if isinstance(at, list) else [at]
        return (self.take("fail_next")
                or (f.get("fail_after") is not None and after_index >= f["fail_after"])
                or at_number in at)


class State:
    """Everything the control API changes; one lock guards it all."""

    def __init__(self, fixed_now=None, rate_limit=None):
        self.lock = threading.Lock()
        self.fixed_now = fixed_now
        self.rate_limit = rate_limit
        self.reset()

    def reset(self):
        with self.lock:
            self.faults = {}            # None (every path) or prefix -> FaultSet
            self.request_seq = 0
            self.log = []
            self.windows = {}           # api key -> deque of monotonic times
            self.news = DEFAULT_NEWS
            self.tickers = None         # None: the default universe

    # -- clock --
    def now(self):
        with self.lock:
            fixed = self.fixed_now
        return fixed if fixed is not None else dt.datetime.now(UTC)

    def set_clock(self, instant):
        with self.lock:
            self.fixed_now = instant

    # -- reference data --
    def set_news(self, corpus):
        with self.lock:
            self.news = corpus

    def news_corpus(self):
        with self.lock:
            return self.news

    def set_tickers(self, universe):
        with self.lock:
            self.tickers = universe

    def ticker_universe(self):
        with self.lock:
            return self.tickers if self.tickers is not None else default_universe()

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
        spec = dict(spec)
        path = spec.pop("path", None)
        with self.lock:
            self.faults.setdefault(path, FaultSet(path)).configure(spec)

    def fault_config(self):
        """The every-path faults at the top level (as before paths existed),
        plus "paths": {prefix: faults} when some target a path."""
        with self.lock:
            config = dict(self.faults[None].spec) if None in self.faults else {}
            scoped = {p: dict(f.spec) for p, f in self.faults.items() if p is not None}
            if scoped:
                config["paths"] = scoped
            return config

    def plan_faults(self, path):
        """Decide, atomically, what happens to one API request.

        Every fault set whose scope holds the path counts the request; the
        most specific scope is asked first, and for each kind of fault the
        first scope that fires it is the one whose unit is consumed."""
        with self.lock:
            scopes = sorted((f for p, f in self.faults.items()
                             if p is not None and path_matches(p, path)),
                            key=lambda f: -len(f.path))
            if None in self.faults:
                scopes.append(self.faults[None])
            plan = {"delay_ms": 0, "close": False, "fail": None, "garbage": False,
                    "truncate": False, "cut": False, "bad_utf8": False,
                    "delayed": False}
            live = []
            for f in scopes:
                after_index, f.seen_after = f.seen_after, f.seen_after + 1
                f.seen_at += 1
                plan["delay_ms"] = max(plan["delay_ms"], f.spec.get("delay_ms") or 0)
                plan["delayed"] = plan["delayed"] or bool(f.spec.get("delayed"))
                if not f.take("skip_next"):
                    live.append((f, after_index, f.seen_at))
            plan["close"] = any(f.take("close_next") for f, _, _ in live)
            if plan["close"]:
                return plan
            for f, after_index, at_number in live:
                if f.failing(after_index, at_number):
                    plan["fail"] = {"status": f.spec.get("status", 503),
                                    "retry_after": f.spec.get("retry_after"),
                                    "body": f.spec.get("body")}
                    break
            for kind in ("garbage", "truncate", "cut", "bad_utf8"):
                plan[kind] = any(f.take(kind + "_next") for f, _, _ in live)
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
    # Headers and body go out in two writes: without TCP_NODELAY the body of every answer but a
    # connection's first waits for the client's delayed ACK, ~40 ms a request.
    disable_nagle_algorithm = True
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

    def route(self, path):
        """Which API endpoint a request is for (None: not one we serve)."""
        if self.command != "GET":
            return None
        if AGGS_PATH.match(path):
            return "aggs"
        if path.rstrip("/") == NEWS_PATH:
            return "news"
        if path.rstrip("/") == TICKERS_PATH:
            return "tickers"
        if TICKER_DETAILS_PATH.match(path):
            return "ticker_details"
        return None

    def api_answer(self, path, params, key, entry, log_entry):
        route = self.route(path)
        plan = self.state.plan_faults(path) if route else None
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
                path, params, key, request_id, plan, route)
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

    def normal_response(self, path, params, key, request_id, plan, route):
        """Auth, rate limit, then the data; returns (status, body, type, headers)."""
        status, body = self.authorise(key)
        if status == 200 and route is None:
            status, body = 404, {"status": "NOT_FOUND", "message": "Not found."}
        if status == 200:
            now, page_size, base = self.state.now(), self.server.page_size, self.server.base_url
            status_text = "DELAYED" if plan["delayed"] else "OK"
            try:
                if route == "aggs":
                    status, body = answer_aggregates(
                        path, params, now, page_size, base, status_text)
                elif route == "news":
                    status, body = answer_news(
                        params, now, self.state.news_corpus(), page_size, base, status_text)
                elif route == "tickers":
                    status, body = answer_tickers(
                        params, now, self.state.ticker_universe(), page_size, base,
                        status_text)
                else:
                    status, body = answer_ticker_details(
                        path, params, now, self.state.ticker_universe(), status_text)
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
        if path == "/_control/news":
            return self.control_news(single_valued(query))
        if path == "/_control/tickers":
            day = self.state.now().astimezone(UTC).date()
            return self.send_json(200, [ticker_view(rec, day)
                                        for rec in self.state.ticker_universe()
                                        if ticker_visible(rec, day)])
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
            if path == "/_control/news":
                articles = self.control_list(body, "articles")
                if articles is None:
                    self.state.set_news(DEFAULT_NEWS)
                    return self.send_json(200, {"default": True})
                corpus = install_news(articles)
                self.state.set_news(corpus)
                return self.send_json(200, {"default": False, "count": len(corpus.items),
                                            "articles": [item[3] for item in corpus.items]})
            if path == "/_control/tickers":
                tickers = self.control_list(body, "tickers")
                if tickers is None:
                    self.state.set_tickers(None)
                    return self.send_json(200, {"default": True})
                universe = [complete_ticker(spec) for spec in tickers]
                if len({rec["ticker"] for rec in universe}) != len(universe):
                    raise ValueError("tickers must be unique")
                universe.sort(key=lambda rec: rec["ticker"])
                self.state.set_tickers(tuple(universe))
                return self.send_json(200, {"default": False, "count": len(universe)})
        except (ValueError, TypeError, AttributeError, KeyError) as error:
            return self.send_json(400, {"error": str(error)})
        return self.send_json(404, {"error": "no such control endpoint"})

    def clock_body(self):
        now = self.state.now()
        return {"now": now.isoformat(), "new_york": to_new_york(now).isoformat(),
                "fixed": self.state.fixed_now is not None}

    @staticmethod
    def control_list(body, name):
        """body[name]: a list, or None for "back to the default"."""
        if not isinstance(body, dict) or name not in body:
            raise ValueError('expected {"%s": [...] or null}' % name)
        value = body[name]
        if value is not None and not isinstance(value, list):
            raise ValueError("%s must be a list or null" % name)
        return value

    def control_news(self, params):
        try:
            truth = news_truth(self.state.news_corpus(), self.state.now(),
                               params.get("ticker") or None, params.get("from") or None,
                               params.get("to") or None)
        except ValueError as error:
            return self.send_json(400, {"error": "from/to: YYYY-MM-DD or RFC 3339: %s" % error})
        return self.send_json(200, truth)

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
