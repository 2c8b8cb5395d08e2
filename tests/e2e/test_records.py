"""Declared records (records.declare, mapper:map): a page's text mapped to RECORD data in C.

* The declared stock script (scripts/stock_prices.lua) and its reference, the same mapping written
  as a Lua loop over response.body (tests/lua_loop.py), give record for record the same data and
  the same states, over several tickers, pages, years, lookbacks and syncs.
* The mapping's rules, through small scripts whose pages are written in the script (the requests
  still go to the local server, so the engine, next_url and the protocol writer are the real ones):
  declared field order, absent members, null, the integer rule, numbers, escapes, constants.
* Dotted paths into the items' objects, every `as`, defaults: small scripts whose parse is the
  declared mapper or the same mapping as a Lua loop (MAPPER_SCRIPT) give the same records, on
  hand-written pages (nested parents missing, not objects, given twice; negative and fractional
  epochs, zones across their changes) and on random declarations over random nested pages; datetime
  and day cursors fed by the epoch kinds, state for state; a required field that finds nothing and
  a misspelt list are one system_error each.
* Bad pages: a page that is not JSON (the server's cut, bad_utf8 and garbage faults, and pages a
  script garbles once) is asked for again and nothing is lost or sent twice; valid JSON of the
  wrong shape is one system_error that keeps the state of the pages before it; a bad declaration
  fails at load, naming the script's file and line.

Every read has its clock fixed (libfaketime and the server's clock).
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import os
import random
import re
import sys
from pathlib import Path

import pytest

from .conftest import (
    REPO, documented, duplicates, line_of, ny, platform_state, polygon_server, sample_under_wrapper, script_copy,
    utc)

sys.path.insert(0, str(REPO / "tests"))
from lua_loop import lua_loop_script  # noqa: E402

AFTER_CLOSE = utc(2022, 3, 11, 22, 0)      # Friday 2022-03-11, 17:00 New York
DECLARED_ORDER = ["date", "stock_ticker", "price", "open", "high", "low", "close", "volume", "vwap",
                  "transactions"]
RECORD_LINE = re.compile(r'^\{"type":"RECORD","record":\{"stream":"stock_prices","data":(.*),"emitted_at":\d+\}\}$')
WAIT = re.compile(r"; retry (\d+) in (\d+(?:\.\d+)?) s$")
PARSE_CALL = "    return BARS:map(ctx, response)\n"


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------

def canonical(data: dict) -> str:
    """A record as text that tells 27 from 27.0 and ignores key order."""
    return json.dumps(data, sort_keys=True)


def per_ticker(result) -> dict:
    out = {}
    for data in result.data:
        out.setdefault(data["stock_ticker"], []).append(canonical(data))
    return out


def data_texts(result) -> list:
    """The data object of every RECORD exactly as written on stdout."""
    texts = []
    for line in result.stdout.splitlines():
        if line.startswith('{"type":"RECORD"'):
            match = RECORD_LINE.match(line)
            assert match, line
            texts.append(match.group(1))
    return texts


def retry_warnings(result) -> list:
    return [m["log"]["message"] for m in result.of("LOG") if WAIT.search(m["log"]["message"])]


def log_in_order(server) -> list:
    return sorted(server.log(), key=lambda e: e["time"])


def assert_failed_once(result, failure_type: str = "system_error") -> dict:
    """Non-zero exit, INCOMPLETE, exactly one TRACE error of that type, which comes last."""
    assert result.returncode != 0, result.describe()
    assert [e["failure_type"] for e in result.errors] == [failure_type], result.describe()
    assert result.messages[-1]["type"] == "TRACE" and result.messages[-1]["trace"]["type"] == "ERROR"
    assert "INCOMPLETE" in result.statuses and "COMPLETE" not in result.statuses, result.describe()
    return result.errors[0]


def assert_states_match_records(result) -> None:
    """Every STATE covers exactly the records before it (cursor per ticker, recordCount). The
    scripts of hand-written pages have the one partition TSLA."""
    last, since = {}, 0
    for message in result.messages:
        if message["type"] == "RECORD":
            data = message["record"]["data"]
            last[data.get("stock_ticker", "TSLA")] = data["date"]
            since += 1
        elif message["type"] == "STATE":
            state = message["state"]
            tickers = state["stream"]["stream_state"].get("tickers", {})
            assert {t: c["date"] for t, c in tickers.items()} == last, (state, last)
            assert state["sourceStats"]["recordCount"] == since, (state, since)
            since = 0


def lua_string(data) -> str:
    """A Lua string literal holding exactly these bytes (any byte goes, as a decimal escape)."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    return '"' + "".join(chr(b) if 0x20 <= b < 0x7f and b not in b'"\\' else "\\%03d" % b for b in data) + '"'


def day_ms(day: str) -> int:
    """Midnight UTC of day, in ms."""
    return int(utc(*map(int, day.split("-"))).timestamp()) * 1000


PAGE_SCRIPT = """\
-- A minimal connector for the tests: its pages are written below; the requests go to the local
-- server (with ?page=N), whose own answer is replaced by page N before it is mapped.
local M = records.declare {
  list = "results",
  next_url = "next_url",
  fields = {
%(fields)s
  },
}
local PAGES = { %(pages)s }
-- pages answered instead of PAGES[N] the first time page N is asked for
local BAD = { %(bad_pages)s }
local served = {}

return {
  spec = { connectionSpecification = { type = "object", required = { "api_key", "base_url" },
    properties = { api_key = { type = "string", airbyte_secret = true }, base_url = { type = "string" } } } },
  check = function() return true end,
  streams = { {
    name = "stock_prices",
    json_schema = { type = "object", additionalProperties = true, properties = {} },
    primary_key = { { "stock_ticker" }, { "date" } },
    cursor_field = "date",
    partitions = function() return { "TSLA" } end,
    partition_state_key = "tickers",
    start_date = "2022-03-01",
    end_date = function() return "2022-03-11" end,
    request = function(ctx)
      return ctx.config.base_url .. "/v2/aggs/ticker/" .. ctx.partition .. "/range/1/day/" .. ctx.from .. "/"
          .. ctx.to .. "?page=1", { headers = { Authorization = "Bearer " .. ctx.config.api_key } }
    end,
    parse = function(ctx, response)
      local page = tonumber(response.url:match("[?&]page=(%%d+)"))
      served[page] = (served[page] or 0) + 1
      response.text = served[page] == 1 and BAD[page] or assert(PAGES[page], "no page " .. tostring(page))
      return M:map(ctx, response)
    end,
  } },
}
"""


def page_script(tmp_path, fields: str, pages: list, bad: dict | None = None, name: str = "pages.lua"):
    """A script serving pages[N-1] for ?page=N; bad[N] is served instead the first time."""
    bad = bad or {}
    path = tmp_path / name
    path.write_text(PAGE_SCRIPT % {
        "fields": fields,
        "pages": ", ".join(lua_string(p) for p in pages),
        "bad_pages": ", ".join(f"[{n}] = {lua_string(p)}" for n, p in bad.items()),
    }, encoding="utf-8")
    return path


# --------------------------------------------------------------------------------------------
# the declared script and its Lua-loop reference agree
# --------------------------------------------------------------------------------------------

TICKERS = "AAPL,MSFT,TSLA,NODATA"   # NODATA: pages without "results"


@pytest.fixture
def loop_script(tmp_path):
    return lua_loop_script(tmp_path / "stock_prices_lua_loop.lua")


def without_counts(states: list) -> list:
    """STATE messages without sourceStats: with tickers read concurrently, which page is
    checkpointed with which others depends on the order the answers come in."""
    return [{k: v for k, v in state.items() if k != "sourceStats"} for state in states]


def assert_same_sync(declared, loop) -> None:
    declared.assert_complete()
    loop.assert_complete()
    # Tickers may be read concurrently: compare each ticker's records, in order, then the whole.
    assert per_ticker(declared) == per_ticker(loop)
    assert sorted(map(canonical, declared.data)) == sorted(map(canonical, loop.data))
    assert declared.last_stream_state == loop.last_stream_state
    assert without_counts(declared.states[-1:]) == without_counts(loop.states[-1:])
    assert sum(s["sourceStats"]["recordCount"] for s in declared.states) == len(declared.records)
    assert sum(s["sourceStats"]["recordCount"] for s in loop.states) == len(loop.records)


def exponent_volumes(records) -> dict:
    """Of the records, those whose bar volume the server writes with an exponent: whether it is
    integral -> list of records."""
    found = {True: [], False: []}
    for data in records:
        bar = polygon_server.make_bar(data["stock_ticker"], dt.date.fromisoformat(data["date"]))
        if isinstance(bar["v"], polygon_server.ExpFloat):
            found[bar["v"].is_integer()].append(data)
    return found


def test_full_refresh_declared_equals_lua_loop(paged_connector, loop_script):
    server = paged_connector.server
    config = paged_connector.config(stock_ticker=TICKERS, start_date="2019-01-01")
    declared = paged_connector.read(config, catalog="full_refresh", now=AFTER_CLOSE)
    loop = paged_connector.read(config, catalog="full_refresh", now=AFTER_CLOSE, flags=("--script", loop_script))
    assert_same_sync(declared, loop)
    # Both equal the truth, over many pages.
    tickers = per_ticker(declared)
    assert sorted(tickers) == ["AAPL", "MSFT", "TSLA"], "NODATA has no bars"
    for ticker in tickers:
        expected = server.expected(ticker, "2019-01-01", "2022-03-11")
        assert [documented(d) for d in declared.data if d["stock_ticker"] == ticker] == expected
        assert len(expected) > 15 * 50, "many pages per ticker"
    assert duplicates(declared.keys) == []
    # Volumes the server writes as 9.833403e+06 come out as the integer 9833403, others as floats.
    found = exponent_volumes(declared.data)
    assert found[True] and found[False], "the range has both kinds of exponent volumes"
    assert all(type(d["volume"]) is int for d in found[True])
    assert all(type(d["volume"]) is float for d in found[False])
    assert all(type(d["transactions"]) is int for d in declared.data)
    # The declared records are written in the declared field order.
    for text in data_texts(declared):
        assert list(json.loads(text)) == DECLARED_ORDER, text
        assert not re.search(r"\d[eE]", text), text


def test_incremental_syncs_declared_equal_lua_loop(paged_connector, loop_script):
    """Three syncs in a row (the second with a lookback), each from the same state with both
    scripts: the same records and the same states."""
    config = paged_connector.config(stock_ticker=TICKERS, start_date="2020-06-01")
    runs = [(utc(2021, 12, 31, 23), 0), (AFTER_CLOSE, 5), (utc(2022, 3, 18, 22), 0)]
    state = None
    for now, lookback in runs:
        cfg = dict(config, lookback_days=lookback)
        given = state if state is not None else "[]"
        declared = paged_connector.read(cfg, state=given, now=now)
        loop = paged_connector.read(cfg, state=given, now=now, flags=("--script", loop_script))
        assert_same_sync(declared, loop)
        assert declared.records, declared.describe()
        if state is None:
            truth = paged_connector.server.expected("TSLA", "2020-06-01", "2021-12-31")
            assert [documented(d) for d in declared.data if d["stock_ticker"] == "TSLA"] == truth
        assert without_counts(platform_state(state, declared)) == without_counts(platform_state(state, loop))
        if lookback:
            # The cursor was 2021-12-31: the lookback re-reads from 2021-12-27 (both scripts).
            assert declared.dates("TSLA")[0] == "2021-12-27", declared.describe()
        state = platform_state(state, declared)
    assert state[0]["stream"]["stream_state"]["tickers"]["TSLA"] == {"date": "2022-03-18"}


# --------------------------------------------------------------------------------------------
# the mapping's rules, on pages written by hand
# --------------------------------------------------------------------------------------------

FIELDS = """\
    { "date", from = "t", as = "day_from_ms" },
    { "stock_ticker", context = "partition" },
    { "price", from = "c" },
    { "label", from = "s" },
    { "count", from = "n", as = "integer" },
    { "extra", from = "x" },
    { "day_text", from = "d", as = "day" },
    { "window_from", context = "from" },
    { "nowhere", context = "no_such_ctx_field" },
    { "source", value = "polygon" },
    { "version", value = 3 },
    { "tags", value = { "a", "b" } },
    { "nothing", value = json.null },"""
CONSTANTS = '"window_from":"2022-03-01","source":"polygon","version":3,"tags":["a","b"],"nothing":null'
UNICODE = 'caf\\u00e9 \\"q\\" \\ud834\\udd1e é✓𝄞 \\/'

# (item as the page spells it, the record's data text)
ITEMS = [
    # members in another order than declared; containers and strings copied verbatim
    ('{"x":{"k": [1, 2.50, 1e2]},"n":42,"s":"%s","c":9.833403e+06,"d":"2022-03-01","t":%d}'
     % (UNICODE, day_ms("2022-03-01")),
     '{"date":"2022-03-01","stock_ticker":"TSLA","price":9833403,"label":"%s","count":42,'
     '"extra":{"k": [1, 2.50, 1e2]},"day_text":"2022-03-01",%s}' % (UNICODE, CONSTANTS)),
    # absent members: their fields are left out
    ('{"t":%d}' % day_ms("2022-03-02"),
     '{"date":"2022-03-02","stock_ticker":"TSLA",%s}' % CONSTANTS),
    # null: copied by a plain field, left out by as = "integer" and as = "day"
    ('{"t":%d,"c":null,"s":null,"n":null,"x":null,"d":null}' % day_ms("2022-03-03"),
     '{"date":"2022-03-03","stock_ticker":"TSLA","price":null,"label":null,"extra":null,%s}' % CONSTANTS),
    # a trailing zero is dropped; an integral float is an integer
    ('{"t":%d,"c":1.50,"n":3.0,"x":true}' % day_ms("2022-03-04"),
     '{"date":"2022-03-04","stock_ticker":"TSLA","price":1.5,"count":3,"extra":true,%s}' % CONSTANTS),
    # a non-integral count is left out; a plain integer stays one
    ('{"t":%d,"c":27,"n":2.5,"x":false}' % day_ms("2022-03-07"),
     '{"date":"2022-03-07","stock_ticker":"TSLA","price":27,"extra":false,%s}' % CONSTANTS),
    # exponents, upper case too
    ('{"t":%d,"c":1E+2,"n":1e3,"x":[]}' % day_ms("2022-03-08"),
     '{"date":"2022-03-08","stock_ticker":"TSLA","price":100,"count":1000,"extra":[],%s}' % CONSTANTS),
    # a string count is left out; negative exponents; a JSON string copied as is
    ('{"t":%d,"c":-1.25e-3,"n":"7","x":"7"}' % day_ms("2022-03-09"),
     '{"date":"2022-03-09","stock_ticker":"TSLA","price":-0.00125,"extra":"7",%s}' % CONSTANTS),
    # every digit of a plain number is kept; -0 as an integer is 0; 2.0 is 2
    ('{"t":%d,"c":2.0,"n":-0,"x":123456789012345678901234567890}' % day_ms("2022-03-10"),
     '{"date":"2022-03-10","stock_ticker":"TSLA","price":2,"count":0,"extra":123456789012345678901234567890,%s}'
     % CONSTANTS),
]


def test_declared_mapping_writes_exactly_these_records(connector, tmp_path):
    page = '{"ticker":"TSLA","results":[%s],"status":"OK"}' % ",".join(item for item, _ in ITEMS)
    script = page_script(tmp_path, FIELDS, [page])
    result = connector.read(connector.config(), now=AFTER_CLOSE, flags=("--script", script)).assert_complete()
    texts = data_texts(result)
    for got, (item, want) in zip(texts, ITEMS):
        assert got == want, item
    assert len(texts) == len(ITEMS)
    # The verbatim escapes decode to the page's strings.
    assert result.data[0]["label"] == 'café "q" \U0001d11e é✓\U0001d11e /'
    assert result.last_stream_state["tickers"] == {"TSLA": {"date": "2022-03-10"}}
    assert_states_match_records(result)


def test_whitespace_everywhere_and_duplicate_members(connector, tmp_path):
    """JSON whitespace (space, tab, CR, LF) between every token, and a member given twice (the
    last one counts, as when the page is decoded)."""
    page = (' \t\r\n{ "results" :\n[ {\t"t" : %d ,\r\n"c" : 1 , "c" : 2.5 } ,\n{ "t":%d, "t":%d } ]\n,'
            '\t"x" : [ ] } \n ' % (day_ms("2022-03-01"), day_ms("2022-03-01"), day_ms("2022-03-02")))
    script = page_script(tmp_path, '{ "date", from = "t", as = "day_from_ms" }, { "price", from = "c" },', [page])
    result = connector.read(connector.config(), now=AFTER_CLOSE, flags=("--script", script)).assert_complete()
    assert data_texts(result) == ['{"date":"2022-03-01","price":2.5}', '{"date":"2022-03-02"}']


def test_escaped_member_names_and_next_url(connector, tmp_path):
    """Member names spelt with escapes match their declared names (and only those); next_url's
    escapes are decoded before the engine follows it."""
    port = connector.server.port
    page1 = ('{"\\u0072esults":[{"\\u0074":%d,"c\\u0000":5,"\\u0063":1.5,"t ":0}],'
             '"next\\u005furl":"http:\\/\\/127.0.0.1:%d\\/v2\\/aggs\\/ticker\\/TSLA\\/range\\/1\\/day\\/'
             '2022-03-01\\/2022-03-11?page=2\\u0026note=a%%2Fb"}' % (day_ms("2022-03-01"), port))
    page2 = '{"results":[{"t":%d,"c":2}],"next_url":null,"results ":7}' % day_ms("2022-03-02")
    script = page_script(tmp_path, '{ "date", from = "t", as = "day_from_ms" }, { "price", from = "c" },',
                         [page1, page2])
    result = connector.read(connector.config(), now=AFTER_CLOSE, flags=("--script", script)).assert_complete()
    assert data_texts(result) == ['{"date":"2022-03-01","price":1.5}', '{"date":"2022-03-02","price":2}']
    queries = [e["query"] for e in log_in_order(connector.server)]
    assert queries == ["page=1", "page=2&note=a%2Fb"], queries
    assert_states_match_records(result)


def test_day_from_ms_zone_and_day_text(connector, tmp_path):
    """23:30 in New York is already the next day in UTC: the zone decides the day. as = "day"
    keeps the page's day text."""
    late = int(utc(2022, 3, 2, 4, 30).timestamp()) * 1000   # 2022-03-01 23:30 New York (EST)
    fields = ('{ "date", from = "t", as = "day_from_ms", zone = "America/New_York" },'
              '{ "utc_day", from = "t", as = "day_from_ms" },'
              '{ "as_text", from = "d", as = "day" },')
    page = '{"results":[{"t":%d,"d":"2022-02-28"},{"t":%d,"d":"2024-02-29"}]}' % (late, late + 86_400_000)
    script = page_script(tmp_path, fields, [page])
    result = connector.read(connector.config(), now=AFTER_CLOSE, flags=("--script", script)).assert_complete()
    assert data_texts(result) == [
        '{"date":"2022-03-01","utc_day":"2022-03-02","as_text":"2022-02-28"}',
        '{"date":"2022-03-02","utc_day":"2022-03-03","as_text":"2024-02-29"}']


def test_cursor_may_be_an_as_day_field(connector, tmp_path):
    """The cursor field declared with as = "day": its text is the record's day."""
    fields = '{ "date", from = "day", as = "day" }, { "n", from = "n" },'
    page = '{"results":[{"day":"2022-02-28","n":0},{"day":"2022-03-01","n":1},{"day":"2022-03-11","n":2},' \
           '{"day":"2022-03-12","n":3}]}'
    script = page_script(tmp_path, fields, [page])
    result = connector.read(connector.config(), now=AFTER_CLOSE, flags=("--script", script)).assert_complete()
    # Days outside the window [2022-03-01, 2022-03-11] are dropped, as for Lua records.
    assert data_texts(result) == ['{"date":"2022-03-01","n":1}', '{"date":"2022-03-11","n":2}']
    assert result.last_stream_state["tickers"] == {"TSLA": {"date": "2022-03-11"}}


def test_empty_absent_and_null_lists_give_no_records(connector, tmp_path):
    fields = '{ "date", from = "t", as = "day_from_ms" },'
    port = connector.server.port
    url = "http://127.0.0.1:%d/v2/aggs/ticker/TSLA/range/1/day/2022-03-01/2022-03-11?page=%%d" % port
    pages = ['{"results":[],"next_url":"%s"}' % (url % 2), '{"results":null,"next_url":"%s"}' % (url % 3),
             '{"status":"OK","next_url":"%s"}' % (url % 4), '{}']
    script = page_script(tmp_path, fields, pages)
    result = connector.read(connector.config(), now=AFTER_CLOSE, flags=("--script", script)).assert_complete()
    assert result.records == []
    assert [e["query"] for e in log_in_order(connector.server)] == ["page=1", "page=2", "page=3", "page=4"]


# --------------------------------------------------------------------------------------------
# dotted paths into the items' objects, against the same mapping as a Lua loop
# --------------------------------------------------------------------------------------------

MAPPER_SCRIPT = """\
-- Its pages are written below (the requests still go to the local server, with ?page=N);
-- parse maps page N with the declared mapper, or with the same mapping as a Lua loop.
local M = records.declare {
  list = %(list)s,
  next_url = %(next_url)s,
  fields = {
%(fields)s
  },
}
local PAGES = { %(pages)s }

-- The value the dotted path finds in t, or nil (a segment missing, or a parent not an object).
local function at(t, path)
  for segment in path:gmatch("[^.]+") do
    if type(t) ~= "table" then return nil end
    t = t[segment]
  end
  return t
end

-- Whether s is exactly a JSON number.
local function is_json_number(s)
  local whole, rest = s:gsub("^%%-", "", 1):match("^(%%d+)(.*)$")
  if not whole or (#whole > 1 and whole:sub(1, 1) == "0") then return false end
  rest = rest:gsub("^%%.%%d+", "", 1)
  rest = rest:gsub("^[eE][-+]?%%d+", "", 1)
  return rest == ""
end

-- RFC 3339 in UTC of an integer number of milliseconds, ".mmm" only when not a whole second.
local function instant(ms)
  local fraction = ms %% 1000
  return date.format(ms // 1000, "%%Y-%%m-%%dT%%H:%%M:%%S") .. (fraction ~= 0 and (".%%03d"):format(fraction) or "") .. "Z"
end

local function given(v) return v ~= nil and v ~= json.null end

-- Each as: the value written for v, the value the path found (nil: none), or nil to leave it out.
local AS = {
  copy = function(v) return v end,
  integer = function(v) return type(v) == "number" and math.tointeger(v) or nil end,
  number = function(v)
    if type(v) == "number" then return v end
    if type(v) == "string" and is_json_number(v) then return tonumber(v) end
  end,
  string = function(v)
    if type(v) == "string" then return v end
    if type(v) == "number" or type(v) == "boolean" then return tostring(v) end
  end,
  boolean = function(v)
    if v == true or v == "true" then return true end
    if v == false or v == "false" then return false end
  end,
  day = function(v) if given(v) then return v end end,
  datetime = function(v) if given(v) then return v end end,
  day_from_ms = function(v, zone) if given(v) then return date.from_ms(v, zone) end end,
  day_from_s = function(v, zone) if given(v) then return date.from_ms(math.floor(v) * 1000, zone) end end,
  datetime_from_ms = function(v) if given(v) then return instant(math.floor(v)) end end,
  datetime_from_s = function(v) if given(v) then return instant(math.floor(v * 1000)) end end,
}

local function loop(ctx, response)
  local records = {}
  for i, item in ipairs(%(loop_list)s or {}) do
    local r, v = {}
%(loop_fields)s
    records[i] = r
  end
  return records, response.body.next_url
end

return {
  spec = { connectionSpecification = { type = "object", required = { "api_key", "base_url" },
    properties = { api_key = { type = "string", airbyte_secret = true }, base_url = { type = "string" } } } },
  check = function() return true end,
  streams = { {
    name = "stock_prices",
    json_schema = { type = "object", additionalProperties = true, properties = {} },
%(stream)s
    request = function(ctx)
      return ctx.config.base_url .. "/v2/aggs/ticker/TSLA/range/1/day/2022-03-01/2022-03-11?page=1",
        { headers = { Authorization = "Bearer " .. ctx.config.api_key } }
    end,
    parse = function(ctx, response)
      local page = tonumber(response.url:match("[?&]page=(%%d+)"))
      response.text = assert(PAGES[page], "no page " .. tostring(page))
      return %(parse)s
    end,
  } },
}
"""

def lua_value(value) -> str:
    """A Lua expression for a JSON-like Python value."""
    if value is None:
        return "json.null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return lua_string(value)
    if isinstance(value, list):
        return "json.array({ %s })" % ", ".join(map(lua_value, value))
    return "json.object({ %s })" % ", ".join(f"[{lua_string(k)}] = {lua_value(v)}" for k, v in value.items())


def declared_field(field: dict) -> str:
    """One entry of a declaration's fields, from {name, from, as, zone, default, required}."""
    parts = [lua_string(field["name"]), f"from = {lua_string(field['from'])}"]
    if field.get("as"):
        parts.append(f"as = {lua_string(field['as'])}")
    if field.get("zone"):
        parts.append(f"zone = {lua_string(field['zone'])}")
    if "default" in field:
        parts.append(f"default = {lua_value(field['default'])}")
    if field.get("required"):
        parts.append("required = true")
    return "    { %s }," % ", ".join(parts)


def loop_field(field: dict) -> str:
    """The same field as Lua-loop statements setting r[name]."""
    conversion = f"AS[{lua_string(field.get('as') or 'copy')}]"
    zone = lua_string(field.get("zone") or "UTC")
    lines = [f"    v = {conversion}(at(item, {lua_string(field['from'])}), {zone})"]
    if "default" in field:
        lines.append(f"    if v == nil then v = {lua_value(field['default'])} end")
    lines.append(f"    r[{lua_string(field['name'])}] = v")
    return "\n".join(lines)


def mapper_script(tmp_path, fields: list, pages: list, variant: str = "declared", list_path: str = "results",
                  stream: str = "", name: str = "") -> Path:
    """A script whose page N is pages[N-1], mapped by the declaration of fields or by its Lua loop.
    stream: the stream's cursor keys (none: read in full)."""
    loop_list = "response.body" if list_path == "$" else f"at(response.body, {lua_string(list_path)})"
    path = tmp_path / (name or f"{variant}.lua")
    path.write_text(MAPPER_SCRIPT % {
        "list": lua_string(list_path),
        "next_url": "nil" if list_path == "$" else '"next_url"',
        "fields": "\n".join(map(declared_field, fields)),
        "pages": ", ".join(lua_string(p) for p in pages),
        "loop_list": loop_list,
        "loop_fields": "\n".join(map(loop_field, fields)),
        "stream": stream,
        "parse": "M:map(ctx, response)" if variant == "declared" else "loop(ctx, response)",
    }, encoding="utf-8")
    return path


def read_both(connector, tmp_path, fields, pages, catalog="full_refresh", **kw):
    """The declared mapper's read and the Lua loop's, each complete; the declared read first."""
    results = []
    for variant in ("declared", "loop"):
        script = mapper_script(tmp_path, fields, pages, variant, **kw)
        results.append(connector.read(connector.config(), catalog=catalog, now=AFTER_CLOSE,
                                      flags=("--script", script)).assert_complete())
    return results


HUBSPOT_FIELDS = [
    {"name": "id", "from": "id"},
    {"name": "email", "from": "properties.email"},
    {"name": "firstname", "from": "properties.firstname"},
    {"name": "employees", "from": "properties.company.size", "as": "integer"},
    {"name": "company", "from": "properties.company"},
    {"name": "created", "from": "createdAt"},
]

HUBSPOT_ITEMS = [
    # all there, other members around, the nested ones in another order than declared
    '{"id":"1","properties":{"lastname":"L","firstname":"Ann","email":"a@x.io","company":{"size":40.0,"n":"Co"}},'
    '"createdAt":"2024-01-02T03:04:05.006Z","archived":false}',
    # the same shape with other nested members: the first item's shape and plan must not be used as is
    '{"id":"2","properties":{"lastname":"M","firstname":null,"email":"b@x.io","company":null},'
    '"createdAt":"2024-01-03T00:00:00Z","archived":false}',
    '{"id":"3","properties":{"company":{"size":"40"}},"createdAt":"2024-01-04T00:00:00Z","archived":false}',
    # parents that are not objects, or absent; a parent given twice (the last counts)
    '{"id":"4","properties":[{"email":"no"}],"createdAt":null}',
    '{"id":"5","properties":"p"}',
    '{"id":"6"}',
    '{"id":"7","properties":{"email":"old","company":{"size":1}},"properties":{"firstname":"New"}}',
    # escapes in names, space everywhere, a nested member given twice
    '{ "id" : "8" , "pro\\u0070erties" : { "email" : "x" , "em\\u0061il" : "y" , "company" : { "size" : 2e1 } } }',
]


def test_dotted_paths_equal_a_lua_loop(connector, tmp_path):
    page = '{"results":[%s],"status":"OK"}' % ",".join(HUBSPOT_ITEMS)
    declared, loop = read_both(connector, tmp_path, HUBSPOT_FIELDS, [page])
    assert declared.data == loop.data
    assert data_texts(declared) == [
        '{"id":"1","email":"a@x.io","firstname":"Ann","employees":40,"company":{"size":40.0,"n":"Co"},'
        '"created":"2024-01-02T03:04:05.006Z"}',
        '{"id":"2","email":"b@x.io","firstname":null,"company":null,"created":"2024-01-03T00:00:00Z"}',
        '{"id":"3","company":{"size":"40"},"created":"2024-01-04T00:00:00Z"}',
        '{"id":"4","created":null}',
        '{"id":"5"}',
        '{"id":"6"}',
        '{"id":"7","firstname":"New"}',
        '{"id":"8","email":"y","employees":20,"company":{ "size" : 2e1 }}',
    ]


def test_dotted_paths_under_a_dotted_list(connector, tmp_path):
    fields = [{"name": "id", "from": "id"}, {"name": "login", "from": "user.login"}]
    pages = ['{"data":{"items":[{"id":1,"user":{"login":"a"}},{"id":2,"user":{}}]},"meta":{"user":{"login":"m"}}}']
    declared, loop = read_both(connector, tmp_path, fields, pages, list_path="data.items")
    assert declared.data == loop.data == [{"id": 1, "login": "a"}, {"id": 2}]


CONVERSION_FIELDS = [
    {"name": "id", "from": "id"},
    {"name": "n", "from": "v.num", "as": "number"},
    {"name": "count", "from": "v.num", "as": "integer"},
    {"name": "s", "from": "v.str", "as": "string"},
    {"name": "b", "from": "v.bool", "as": "boolean"},
    {"name": "created", "from": "t.ms", "as": "datetime_from_ms"},
    {"name": "seen", "from": "t.s", "as": "datetime_from_s"},
    {"name": "seen_day", "from": "t.s", "as": "day_from_s", "zone": "America/New_York"},
    {"name": "seen_day_utc", "from": "t.s", "as": "day_from_s"},
    {"name": "created_day", "from": "t.ms", "as": "day_from_ms", "zone": "Europe/London"},
]

CONVERSION_ITEMS = [
    '{"id":1,"v":{"num":12,"str":"abc","bool":true},"t":{"ms":1646629200123,"s":1647143999}}',
    # negative epochs; a number as a string; "false"
    '{"id":2,"v":{"num":"12.5","str":12,"bool":"false"},"t":{"ms":-1,"s":-1}}',
    # fractions of a millisecond and of a second, rounded down; New York's spring change
    '{"id":3,"v":{"num":"x","str":true,"bool":"yes"},"t":{"ms":1646629200000.7,"s":1647154800.25}}',
    '{"id":4,"v":{"num":2.5,"str":null,"bool":null},"t":{"ms":null,"s":null}}',
    # London's and New York's autumn changes
    '{"id":5,"v":{"num":null,"str":{"a":1},"bool":false},"t":{"ms":1667091599999,"s":1667707199}}',
    '{"id":6,"t":{"ms":1667091600000,"s":1667707200}}',
    '{"id":7,"v":{"num":"-1E+2","str":"","bool":"true"},"t":{"ms":-86400001,"s":-86401}}',
]


def test_conversions_equal_a_lua_loop(connector, tmp_path):
    page = '{"results":[%s]}' % ",".join(CONVERSION_ITEMS)
    declared, loop = read_both(connector, tmp_path, CONVERSION_FIELDS, [page])
    assert list(map(canonical, declared.data)) == list(map(canonical, loop.data))
    assert [json.loads(t) for t in data_texts(declared)[:3]] == [
        {"id": 1, "n": 12, "count": 12, "s": "abc", "b": True, "created": "2022-03-07T05:00:00.123Z",
         "seen": "2022-03-13T03:59:59Z", "seen_day": "2022-03-12", "seen_day_utc": "2022-03-13",
         "created_day": "2022-03-07"},
        {"id": 2, "n": 12.5, "s": "12", "b": False, "created": "1969-12-31T23:59:59.999Z",
         "seen": "1969-12-31T23:59:59Z", "seen_day": "1969-12-31", "seen_day_utc": "1969-12-31",
         "created_day": "1970-01-01"},
        {"id": 3, "s": "true", "created": "2022-03-07T05:00:00Z", "seen": "2022-03-13T07:00:00.250Z",
         "seen_day": "2022-03-13", "seen_day_utc": "2022-03-13", "created_day": "2022-03-07"},
    ]


DEFAULT_FIELDS = [
    {"name": "id", "from": "id"},
    {"name": "email", "from": "properties.email", "default": ""},
    {"name": "employees", "from": "properties.company.size", "as": "integer", "default": 0},
    {"name": "tags", "from": "tags", "default": []},
    {"name": "active", "from": "properties.active", "as": "boolean", "default": None},
    {"name": "created", "from": "t", "as": "datetime_from_ms", "default": "1970-01-01T00:00:00Z"},
]


def test_defaults_equal_a_lua_loop(connector, tmp_path):
    """A default is written wherever the field would be left out: the path finds nothing, or as
    leaves the value out. A plain copy of null finds null."""
    items = ['{"id":1,"properties":{"email":"a@x","company":{"size":3},"active":"true"},"tags":["x"],"t":0}',
             '{"id":2,"properties":{"email":null,"company":{"size":2.5},"active":"maybe"},"tags":null,"t":null}',
             '{"id":3,"properties":null}',
             '{"id":4,"properties":{"company":7}}']
    page = '{"results":[%s]}' % ",".join(items)
    declared, loop = read_both(connector, tmp_path, DEFAULT_FIELDS, [page])
    assert list(map(canonical, declared.data)) == list(map(canonical, loop.data))
    assert data_texts(declared) == [
        '{"id":1,"email":"a@x","employees":3,"tags":["x"],"active":true,"created":"1970-01-01T00:00:00Z"}',
        '{"id":2,"email":null,"employees":0,"tags":null,"active":null,"created":"1970-01-01T00:00:00Z"}',
        '{"id":3,"email":"","employees":0,"tags":[],"active":null,"created":"1970-01-01T00:00:00Z"}',
        '{"id":4,"email":"","employees":0,"tags":[],"active":null,"created":"1970-01-01T00:00:00Z"}',
    ]


def test_a_required_field_that_finds_nothing_is_one_system_error(connector, tmp_path):
    """Item 3 has no properties.email: the page is refused as a whole, naming the item, the
    field, its path and the script line of the map call; the page before it is emitted."""
    fields = [{"name": "id", "from": "id"}, {"name": "email", "from": "properties.email", "required": True}]
    url = "http://127.0.0.1:%d/v2/aggs/ticker/TSLA/range/1/day/2022-03-01/2022-03-11?page=2" % connector.server.port
    pages = ['{"results":[{"id":1,"properties":{"email":"a"}}],"next_url":"%s"}' % url,
             '{"results":[{"id":2,"properties":{"email":null}},{"id":3,"properties":{"email":"c"}},'
             '{"id":4,"properties":{"mail":"d"}}]}']
    script = mapper_script(tmp_path, fields, pages)
    result = connector.read(connector.config(), catalog="full_refresh", now=AFTER_CLOSE, flags=("--script", script))
    error = assert_failed_once(result)
    where = f"{script.name}:{line_of(script, 'return M:map(ctx, response)')}: records: "
    assert (where + "item 3 of 'results': field 'email' is required, and its path 'properties.email' finds "
            "nothing") in error["message"], error
    assert result.data == [{"id": 1, "email": "a"}]


DATETIME_STREAM = """\
    primary_key = "id",
    cursor_field = "date",
    cursor_kind = "datetime",
    start = "2022-03-01T00:00:00Z",
"""


@pytest.mark.parametrize("kind", ["datetime_from_ms", "datetime_from_s"])
def test_datetime_cursor_from_epochs(connector, tmp_path, kind):
    """A datetime cursor declared with as = datetime_from_ms or datetime_from_s: the records in the
    read's range, the state at the last one's instant, to the millisecond; a read from that state
    sends only what came after. The same as the Lua loop, state for state."""
    per = 1000 if kind == "datetime_from_ms" else 1
    stamps = [utc(2022, 2, 28, 23, 59, 59), utc(2022, 3, 1), utc(2022, 3, 4, 12), utc(2022, 3, 4, 12),
              utc(2022, 3, 9, 8, 30)]
    fractions = [0, 0, 0.25, 0.5, 0.125]
    items = ['{"id":%d,"t":%s}' % (i, repr(int(stamp.timestamp()) * per + fraction * per))
             for i, (stamp, fraction) in enumerate(zip(stamps, fractions))]
    page = '{"results":[%s]}' % ",".join(items)
    fields = [{"name": "id", "from": "id"}, {"name": "date", "from": "t", "as": kind}]
    runs = []
    for variant in ("declared", "loop"):
        script = mapper_script(tmp_path, fields, [page], variant, stream=DATETIME_STREAM)
        first = connector.read(connector.config(), catalog=DATETIME_CATALOG, now=AFTER_CLOSE,
                               flags=("--script", script)).assert_complete()
        state = platform_state(None, first)
        again = connector.read(connector.config(), catalog=DATETIME_CATALOG, state=state, now=AFTER_CLOSE,
                               flags=("--script", script)).assert_complete()
        runs.append((first, again))
    (declared, declared_again), (loop, loop_again) = runs
    assert declared.data == loop.data == [
        {"id": 1, "date": "2022-03-01T00:00:00Z"},
        {"id": 2, "date": "2022-03-04T12:00:00.250Z"},
        {"id": 3, "date": "2022-03-04T12:00:00.500Z"},
        {"id": 4, "date": "2022-03-09T08:30:00.125Z"},
    ]
    assert declared.last_stream_state == loop.last_stream_state
    assert "2022-03-09T08:30:00.125Z" in json.dumps(declared.last_stream_state)
    assert declared_again.data == loop_again.data == []


DATETIME_CATALOG = {"streams": [{
    "stream": {"name": "stock_prices", "supported_sync_modes": ["full_refresh", "incremental"],
               "source_defined_cursor": True, "default_cursor_field": ["date"], "json_schema": {}},
    "sync_mode": "incremental", "destination_sync_mode": "append_dedup", "cursor_field": ["date"],
    "primary_key": [["id"]]}]}


@pytest.mark.parametrize("declared_as", ["integer", "day_from_ms", None])
def test_a_datetime_cursor_needs_a_datetime_field(connector, tmp_path, declared_as):
    """A batch's column holds one kind of value: a datetime cursor cannot read an integer or a day
    column as microseconds."""
    fields = [{"name": "id", "from": "id"}, {"name": "date", "from": "t", "as": declared_as}]
    script = mapper_script(tmp_path, fields, ['{"results":[{"id":1,"t":1646629200000}]}'],
                           stream=DATETIME_STREAM)
    result = connector.read(connector.config(), catalog=DATETIME_CATALOG, now=AFTER_CLOSE,
                            flags=("--script", script))
    error = assert_failed_once(result)
    assert ("no field 'date' with a value the cursor can read: declare it with as = \"datetime\", "
            "\"datetime_from_ms\" or \"datetime_from_s\"") in error["message"], error
    assert result.records == []


def test_day_cursor_from_epoch_seconds(connector, tmp_path):
    """The stock stream's day cursor declared with as = day_from_s in New York."""
    seconds = [int(ny(day, 9).timestamp()) for day in ("2022-02-28", "2022-03-01", "2022-03-11")]
    seconds.append(int(ny("2022-03-11", 23, 59).timestamp()))
    page = '{"results":[%s]}' % ",".join('{"s":%d,"n":%d}' % (s, i) for i, s in enumerate(seconds))
    fields = '{ "date", from = "s", as = "day_from_s", zone = "America/New_York" }, { "n", from = "n" },'
    script = page_script(tmp_path, fields, [page])
    result = connector.read(connector.config(), now=AFTER_CLOSE, flags=("--script", script)).assert_complete()
    assert data_texts(result) == ['{"date":"2022-03-01","n":1}', '{"date":"2022-03-11","n":2}',
                                  '{"date":"2022-03-11","n":3}']
    assert result.last_stream_state["tickers"] == {"TSLA": {"date": "2022-03-11"}}


def test_a_misspelt_list_is_one_system_error_naming_the_arrays(connector, tmp_path):
    """list = "data.itmes" on pages whose items are at data.items: no silent empty read."""
    fields = [{"name": "id", "from": "id"}]
    script = mapper_script(tmp_path, fields, ['{"data":{"items":[{"id":1}],"total":1}}'], list_path="data.itmes")
    result = connector.read(connector.config(), catalog="full_refresh", now=AFTER_CLOSE, flags=("--script", script))
    error = assert_failed_once(result)
    assert 'records: list "data.itmes" finds nothing; the page has an array at "data.items"' in error["message"]
    assert result.records == []


def test_a_page_without_the_list_or_any_array_is_empty(connector, tmp_path):
    """Polygon leaves results out of an empty page."""
    fields = [{"name": "id", "from": "id"}]
    page = '{"ticker":"NODATA","queryCount":0,"resultsCount":0,"adjusted":true,"status":"OK","request_id":"x","count":0}'
    script = mapper_script(tmp_path, fields, [page])
    result = connector.read(connector.config(), catalog="full_refresh", now=AFTER_CLOSE, flags=("--script", script))
    result.assert_complete()
    assert result.records == []


# --------------------------------------------------------------------------------------------
# property: random declarations on random nested pages give the Lua loop's records
# --------------------------------------------------------------------------------------------

NAMES = ["id", "a", "b", "props", "x", "caf\u00e9", "deep"]
ZONES = ["UTC", "America/New_York", "Europe/London", "Australia/Lord_Howe", "Asia/Kolkata"]
# The kinds of value a path holds, and the as each can be read with (the epoch kinds only from
# numbers: any other value is an error, which the loop would raise its own way; as = "string"
# only from numbers that Lua's tostring spells as the page does).
VALUE_KINDS = {
    "epoch": [None, "integer", "number", "datetime_from_ms", "datetime_from_s", "day_from_s", "day_from_ms"],
    "small": [None, "integer", "number", "string"],
    "text": [None, "string", "number", "boolean"],
    "bool": [None, "string", "boolean"],
    "any": [None],
}
TEXTS = ["", "abc", "caf\u00e9 \U0001d11e", 'q"uote\\', "line\nbreak", "12.5", "-3", "1e2", " 1", "0x1", "01",
         "true", "false", "True", "7"]


def random_number(rng, kind, seconds):
    """An epoch within the years 1000 to 9999 (as seconds too when a field reads it so), or a
    small number; a quarter fraction now and then."""
    if kind == "epoch" and seconds:
        value = rng.randint(-30_000_000_000, 250_000_000_000)
    elif kind == "epoch":
        value = rng.randint(-30_000_000_000_000, 250_000_000_000_000)
    else:
        value = rng.randint(-10**6, 10**6)
    if rng.random() < 0.3:
        value += rng.choice([0.25, 0.5, 0.75])
    return value


def random_value(rng, kind, seconds):
    roll = rng.random()
    if roll < 0.1:
        return None
    if kind in ("epoch", "small"):
        return random_number(rng, kind, seconds)
    if kind == "text":
        return rng.choice(TEXTS)
    if kind == "bool":
        return rng.random() < 0.5
    return rng.choice([1, 2.5, "s", True, None, [], {}, [1, {"k": "v"}], {"n": {"m": [2.25]}}])


def random_declaration(rng):
    """Fields on random paths (some through one another), each path holding one kind of value."""
    paths = {}
    for _ in range(rng.randint(2, 7)):
        path = ".".join(rng.choice(NAMES) for _ in range(rng.choice([1, 1, 2, 2, 3])))
        paths.setdefault(path, rng.choice(list(VALUE_KINDS)))
    # A path through another's leaf makes that leaf an object: copied as a whole.
    for path in list(paths):
        if any(other.startswith(path + ".") for other in paths):
            paths[path] = "object"
    fields = []
    for i in range(rng.randint(3, 10)):
        path = rng.choice(list(paths))
        as_ = rng.choice(VALUE_KINDS.get(paths[path], [None]))
        field = {"name": f"f{i}", "from": path, "as": as_}
        if as_ in ("day_from_s", "day_from_ms"):
            field["zone"] = rng.choice(ZONES)
        if as_ in (None, "integer", "number", "string", "boolean") and rng.random() < 0.3:
            field["default"] = rng.choice([0, "none", False, None, [1], {"d": 1}]) if as_ != "integer" else 0
        fields.append(field)
    return paths, fields


def set_path(item, path, value):
    *parents, leaf = path.split(".")
    for name in parents:
        item = item.setdefault(name, {})
        if not isinstance(item, dict):
            return
    item.setdefault(leaf, value)


def random_item(rng, paths, fields, i):
    """An item holding values for the declared paths, now and then not: a member left out, a parent
    that is not an object, members no path names."""
    seconds = {f["from"] for f in fields if f["as"] in ("datetime_from_s", "day_from_s")}
    item = {"n": i}
    for path, kind in sorted(paths.items(), key=lambda p: -p[0].count(".")):
        if kind == "object" or rng.random() < 0.15:
            continue
        set_path(item, path, random_value(rng, kind, path in seconds))
    for path in paths:
        if "." in path and rng.random() < 0.1:
            parents = path.split(".")[:-1]
            cut = rng.randrange(len(parents))
            target = item
            for name in parents[:cut]:
                target = target.get(name) if isinstance(target, dict) else None
            if isinstance(target, dict) and paths.get(".".join(parents[:cut + 1])) != "epoch":
                target[parents[cut]] = rng.choice(["p", 7, [1], None, []])
    for _ in range(rng.randint(0, 3)):
        item[rng.choice(["noise", "zz", "a_b", "props2"])] = rng.choice([1, "t", {"a": 1, "b": [2]}, [{"x": 1}]])
    keys = list(item)
    rng.shuffle(keys)
    return {k: item[k] for k in keys}


def random_page(rng, items, list_path):
    separators = rng.choice([(",", ":"), (", ", ": "), (" ,\n", " :\t")])
    dumps = functools.partial(json.dumps, separators=separators, ensure_ascii=rng.random() < 0.5)
    if list_path == "$":
        return dumps(items)
    body = {"status": "OK"}
    target = body
    *parents, leaf = list_path.split(".")
    for name in parents:
        target = target.setdefault(name, {})
    target[leaf] = items
    return dumps(body)


# RECORDS_PROPERTY_SEEDS=500 for a longer session (`make test-property`).
SEEDS = int(os.environ.get("RECORDS_PROPERTY_SEEDS", "12"))


@pytest.mark.parametrize("seed", sample_under_wrapper(list(range(SEEDS)), [0, 1]))
def test_random_declarations_on_random_pages_equal_a_lua_loop(connector, tmp_path, seed):
    rng = random.Random(seed)
    paths, fields = random_declaration(rng)
    list_path = rng.choice(["results", "data.items", "$"])
    items = [random_item(rng, paths, fields, i) for i in range(rng.randint(1, 60))]
    # Items of one shape in a row now and then: read from the learnt shape and its plan.
    if rng.random() < 0.5:
        items += [dict(items[0], n=100 + i) for i in range(5)]
    page = random_page(rng, items, list_path)
    declared, loop = read_both(connector, tmp_path, fields, [page], list_path=list_path)
    assert list(map(canonical, declared.data)) == list(map(canonical, loop.data)), (fields, page)
    assert len(declared.data) == len(items)
    # The declared records are written in the declared field order.
    for text in data_texts(declared):
        names = list(json.loads(text))
        assert names == [f["name"] for f in fields if f["name"] in names], text


# --------------------------------------------------------------------------------------------
# pages that are not JSON are asked for again
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("fault", sample_under_wrapper(["cut", "bad_utf8", "garbage"], ["cut"]))
@pytest.mark.parametrize("variant", ["declared", "lua_loop"])
def test_garbled_page_is_retried_and_nothing_is_lost(paged_connector, loop_script, fault, variant):
    """The third page of a chain arrives garbled (cut half-way with a matching Content-Length, a
    byte that is not UTF-8 after every bar, an HTML page): it is asked for again, and the sync
    gives every bar exactly once, each STATE matching the records before it."""
    server = paged_connector.server
    server.faults(skip_next=2, **{f"{fault}_next": 1})
    flags = ("--script", loop_script) if variant == "lua_loop" else ()
    config = paged_connector.config(start_date="2021-06-01")
    result = paged_connector.read(config, now=AFTER_CLOSE, flags=flags).assert_complete()
    expected = server.expected("TSLA", "2021-06-01", "2022-03-11")
    assert len(expected) > 3 * 50
    assert [documented(d) for d in result.data] == expected
    assert duplicates(result.keys) == []
    assert_states_match_records(result)
    log = log_in_order(server)
    assert [e["fault"] for e in log][:4] == [None, None, fault, None], log
    assert log[2]["status"] == 200 and log[3]["query"] == log[2]["query"], "the same page asked for again"
    warnings = retry_warnings(result)
    assert len(warnings) == 1 and "HTTP 200 with a body that is not JSON" in warnings[0], warnings


BAD_PAGES = {
    "truncated": '{"results":[{"t":%d,"c":1},{"t":' % day_ms("2022-03-02"),
    "bad-utf8": b'{"results":[{"t":%d,"c":1,"s":"\xc3\x28"}]}' % day_ms("2022-03-02"),
    "bad-escape": '{"results":[{"t":%d,"c":1}],"status":"\\x41"}' % day_ms("2022-03-02"),
    "trailing-text": '{"results":[{"t":%d,"c":1}]} {}' % day_ms("2022-03-02"),
    # a lone surrogate is no character: response.body refuses the page, and so must map()
    "lone-surrogate": '{"results":[{"t":%d,"c":"\\ud800"}]}' % day_ms("2022-03-02"),
}


@pytest.mark.parametrize("kind", sample_under_wrapper(list(BAD_PAGES), ["truncated", "lone-surrogate"]))
def test_page_that_is_not_json_is_asked_for_again(connector, tmp_path, kind):
    """Page 2 is not JSON the first time it comes (its records must not be emitted then), and
    right the second time: every record once, one retry."""
    fields = '{ "date", from = "t", as = "day_from_ms" }, { "price", from = "c" },'
    url = "http://127.0.0.1:%d/v2/aggs/ticker/TSLA/range/1/day/2022-03-01/2022-03-11?page=2" % connector.server.port
    pages = ['{"results":[{"t":%d,"c":0}],"next_url":"%s"}' % (day_ms("2022-03-01"), url),
             '{"results":[{"t":%d,"c":1},{"t":%d,"c":2}]}' % (day_ms("2022-03-02"), day_ms("2022-03-03"))]
    script = page_script(tmp_path, fields, pages, bad={2: BAD_PAGES[kind]})
    result = connector.read(connector.config(), now=AFTER_CLOSE, flags=("--script", script)).assert_complete()
    assert data_texts(result) == ['{"date":"2022-03-01","price":0}', '{"date":"2022-03-02","price":1}',
                                  '{"date":"2022-03-03","price":2}']
    assert [e["query"] for e in log_in_order(connector.server)] == ["page=1", "page=2", "page=2"]
    warnings = retry_warnings(result)
    assert len(warnings) == 1 and "not JSON" in warnings[0], warnings
    assert_states_match_records(result)


def test_nesting_at_the_limit_is_json(connector, tmp_path):
    """1000 levels (the page, the list, the item and 997 arrays) are still JSON: no retry."""
    fields = '{ "date", from = "t", as = "day_from_ms" }, { "price", from = "c" },'
    page = '{"results":[{"t":%d,"c":%s1%s}]}' % (day_ms("2022-03-02"), "[" * 997, "]" * 997)
    script = page_script(tmp_path, fields, [page])
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(limit + 2000)  # Python's json reads a level per frame
    try:
        result = connector.read(connector.config(), now=AFTER_CLOSE, flags=("--script", script)).assert_complete()
    finally:
        sys.setrecursionlimit(limit)
    assert data_texts(result) == ['{"date":"2022-03-02","price":%s1%s}' % ("[" * 997, "]" * 997)]
    assert retry_warnings(result) == []


@pytest.mark.parametrize("reader", ["declared", "response.body"])
def test_nesting_past_the_limit_fails_without_asking_again(connector, tmp_path, reader):
    """1001 levels may be JSON, but deeper than the runtime reads: asking again brings the same
    answer, so it is one system_error at once, not retries of a page called "not JSON"."""
    fields = '{ "date", from = "t", as = "day_from_ms" }, { "price", from = "c" },'
    page = '{"results":[{"t":%d,"c":%s1%s}]}' % (day_ms("2022-03-02"), "[" * 998, "]" * 998)
    script = page_script(tmp_path, fields, [page])
    if reader == "response.body":
        text = script.read_text(encoding="utf-8")
        script.write_text(text.replace("return M:map(ctx, response)",
                                       "local _ = response.body\n      return M:map(ctx, response)"), encoding="utf-8")
    result = connector.read(connector.config(), now=AFTER_CLOSE, flags=("--script", script))
    error = assert_failed_once(result, "system_error")
    assert "deeper than 1000 levels" in error["message"], error
    assert result.records == []
    assert [e["query"] for e in log_in_order(connector.server)] == ["page=1"]
    assert retry_warnings(result) == []


# --------------------------------------------------------------------------------------------
# valid JSON of the wrong shape: one system_error, the state of the pages before it kept
# --------------------------------------------------------------------------------------------

# Lua edits of page 3's text (s): each leaves it valid JSON of the wrong shape. The last item's
# members are the ones the `^(.*)` patterns reach. All but the last two are refused by map(), so
# nothing of page 3 is emitted; the last two are records without their cursor day, which the
# engine finds as it writes the batch (as it does for Lua records).
SHAPES = {
    "results-not-an-array": ('s:gsub(\'"results":%[\', \'"results":7,"rest":[\', 1)', "'results' is a number"),
    "results-an-object": ('s:gsub(\'"results":%[\', \'"results":{},"rest":[\', 1)', "'results' is a"),
    "item-not-an-object": ('s:gsub(\'^(.*)%},{\', \'%1},7,{\', 1)', "item 50 of 'results' is a number"),
    "results-twice": ('s:gsub(\'"results":%[\', \'"results":[],"results":[\', 1)', "'results' twice"),
    "page-not-an-object": ('"[" .. s .. "]"', "not an object with 'results'"),
    "t-a-string": ('s:gsub(\'^(.*)"t":\', \'%1"t":"1646629200000","u":\', 1)', "item 50 of 'results': 't' is a string"),
    "t-out-of-range": ('s:gsub(\'^(.*)"t":\', \'%1"t":1e300,"u":\', 1)', "item 50 of 'results': 't' = 1e300"),
    "t-absent": ('s:gsub(\'^(.*)"t":\', \'%1"u":\', 1)', "record 50 has no date"),
    "t-null": ('s:gsub(\'^(.*)"t":\', \'%1"t":null,"u":\', 1)', "record 50 has no date"),
}


@pytest.mark.parametrize("shape", sample_under_wrapper(list(SHAPES), ["item-not-an-object", "t-absent"]))
def test_wrong_shape_is_one_system_error_keeping_earlier_state(paged_connector, tmp_path, shape):
    server = paged_connector.server
    edit, words = SHAPES[shape]
    script = script_copy(tmp_path,
                         ("local BARS = records.declare {", "local pages = 0\nlocal BARS = records.declare {"),
                         (PARSE_CALL, "    pages = pages + 1\n    if pages == 3 then local s = response.text; "
                          f"response.text = ({edit}) end\n" + PARSE_CALL))
    config = paged_connector.config(start_date="2021-06-01")
    result = paged_connector.read(config, now=AFTER_CLOSE, flags=("--script", script))
    error = assert_failed_once(result, "system_error")
    assert words in error["message"], error
    truth = server.expected("TSLA", "2021-06-01", "2022-03-11")
    emitted = [documented(d) for d in result.data]
    if shape in ("t-absent", "t-null"):
        # the records before the one without a day may go out, then a STATE covers them
        assert emitted == truth[:len(emitted)] and 2 * 50 <= len(emitted) <= 3 * 50 - 1
    else:
        # pages 1 and 2; nothing of page 3, though 49 of its items were mapped before the error
        assert emitted == truth[:2 * 50]
    # Every record emitted is covered by the last STATE, and no record comes after it.
    # Open at the last day emitted: more of that day could have come on the page that failed.
    last = emitted[-1]["date"]
    assert result.last_stream_state["tickers"] == {"TSLA": {"date": last, "emitted_at_cursor": [["TSLA", last]]}}
    assert result.messages.index(result.of("STATE")[-1]) > result.messages.index(result.of("RECORD")[-1])
    assert_states_match_records(result)
    assert len(server.log()) == 3, "a page of the wrong shape is not asked for again"
    assert retry_warnings(result) == []


def test_cursor_field_must_be_a_declared_day(connector, tmp_path):
    """A batch carries the days of its day fields only: a cursor field copied as is cannot be one."""
    script = script_copy(tmp_path, ('{ "date", from = "t", as = "day_from_ms", zone = NEW_YORK },',
                                    '{ "date", from = "t" },'))
    result = connector.read(connector.config(), now=AFTER_CLOSE, flags=("--script", script))
    error = assert_failed_once(result, "system_error")
    assert "no field 'date' with a value the cursor can read" in error["message"], error
    assert 'as = "day"' in error["message"], error
    assert result.records == []


def test_a_non_day_text_in_a_day_field_is_a_system_error(connector, tmp_path):
    fields = '{ "date", from = "d", as = "day" },'
    script = page_script(tmp_path, fields, ['{"results":[{"d":"2022-03-01"},{"d":"2022-02-30"}]}'])
    result = connector.read(connector.config(), now=AFTER_CLOSE, flags=("--script", script))
    error = assert_failed_once(result)
    assert "item 2 of 'results': 'd' is not a YYYY-MM-DD day" in error["message"], error
    assert result.records == [], "the page is refused as a whole"


# --------------------------------------------------------------------------------------------
# declarations that cannot work fail at load, naming the file and line
# --------------------------------------------------------------------------------------------

DECLARATION_ERRORS = {
    "unknown-option": (('{ "price", from = "c" },', '{ "price", form = "c" },'), "unknown key 'form'"),
    "unknown-top-level-key": (('list = "results",', 'list = "results", nexturl = "next_url",'),
                              "unknown key 'nexturl'"),
    "same-name-twice": (('{ "open", from = "o" },', '{ "price", from = "o" },'), "'price' is declared twice"),
    "bad-as": (('{ "transactions", from = "n", as = "integer" },', '{ "transactions", from = "n", as = "int" },'),
               "as must be"),
    "zone-without-day_from_ms": (('{ "price", from = "c" },', '{ "price", from = "c", zone = "UTC" },'),
                                 "zone goes with as = \"day_from_ms\""),
    "unknown-zone": (("zone = NEW_YORK }", 'zone = "Europe/Pariss" }'),
                     "unknown time zone 'Europe/Pariss' (did you mean Europe/Paris"),
    "from-and-value": (('{ "price", from = "c" },', '{ "price", from = "c", value = 1 },'), "exactly one of"),
    "positional-source": (('{ "price", from = "c" },', '{ "price", "c" },'), "unknown key '2'"),
    "no-list": (('list = "results",', ''), "list must be"),
    "misspelt-default": (('{ "price", from = "c" },', '{ "price", from = "c", defualt = 0 },'),
                         "unknown key 'defualt' (did you mean default?)"),
    "misspelt-as": (('{ "transactions", from = "n", as = "integer" },',
                     '{ "transactions", from = "n", as = "integr" },'), "not 'integr' (did you mean integer?)"),
    "required-not-boolean": (('{ "price", from = "c" },', '{ "price", from = "c", required = 1 },'),
                             "required is true or false"),
    "empty-path-member": (('{ "price", from = "c" },', '{ "price", from = "c..d" },'),
                          "from 'c..d' has an empty member name"),
}


@pytest.mark.parametrize("case", sample_under_wrapper(list(DECLARATION_ERRORS), ["unknown-option", "same-name-twice"]))
def test_bad_declaration_fails_at_load_naming_file_and_line(connector, tmp_path, case):
    edit, words = DECLARATION_ERRORS[case]
    script = script_copy(tmp_path, edit)
    # Lua shortens a long chunk name from the left; the file name and line stay.
    where = f"{script.name}:{line_of(script, 'local BARS = records.declare {')}: records.declare: "
    result = connector.spec(flags=("--script", script))
    error = assert_load_error(result)
    assert where in error["message"] and words in error["message"], (where, error)


def assert_load_error(result) -> dict:
    assert result.returncode != 0, result.describe()
    assert [e["failure_type"] for e in result.errors] == ["system_error"], result.describe()
    assert not result.of("SPEC") and not result.of("RECORD"), result.describe()
    return result.errors[0]


def test_bad_declaration_stops_a_read_before_any_request(connector, tmp_path):
    script = script_copy(tmp_path, ('{ "price", from = "c" },', '{ "price", form = "c" },'))
    result = connector.read(connector.config(), now=AFTER_CLOSE, flags=("--script", script))
    error = assert_load_error(result)
    assert f"{script.name}:{line_of(script, 'local BARS = records.declare {')}:" in error["message"], error
    assert connector.server.log() == []


# --------------------------------------------------------------------------------------------
# a page's memory is given back once its records are written
# --------------------------------------------------------------------------------------------

def test_a_response_mapped_twice_keeps_its_page_for_both_walks(paged_connector, tmp_path):
    """The batch returned is released when its records are written, but the other one still holds
    the page: its next_url, read from the page's text on the next page, is still there (a use after
    free shows under ASan)."""
    server = paged_connector.server
    script = script_copy(tmp_path, ("local BARS = records.declare {", "local previous\nlocal BARS = records.declare {"),
                         (PARSE_CALL, "    local other = BARS:map(ctx, response)\n"
                                      "    local batch = BARS:map(ctx, response)\n"
                                      "    if previous then assert(previous[1]:next_url() == previous[2]) end\n"
                                      "    previous = { other, batch:next_url() }\n    return batch\n"))
    config = paged_connector.config(start_date="2021-06-01")
    result = paged_connector.read(config, now=AFTER_CLOSE, flags=("--script", script))
    result.assert_complete()
    assert [documented(d) for d in result.data] == server.expected("TSLA", "2021-06-01", "2022-03-11")


KEPT_PAST_PARSE = {
    "batch": ("    if kept then local _ = #kept end\n    kept = BARS:map(ctx, response)\n    return kept\n",
              "this batch's records were written and released"),
    "response": ("    if kept then local _ = kept.text end\n    kept = response\n" + PARSE_CALL,
                 "this page was released when its parse returned"),
    # returned again: the engine refuses it rather than read buffers another page now uses
    "batch-returned-again": ("    if kept then return kept end\n    kept = BARS:map(ctx, response)\n    return kept\n",
                             "parse returned a batch whose records were already written"),
}


@pytest.mark.parametrize("what", list(KEPT_PAST_PARSE))
def test_looking_into_a_page_after_its_records_were_written_is_an_error(paged_connector, tmp_path, what):
    """Released memory is never read: a script that kept its batch or response for the next page
    gets a system_error naming why, after the first page's records and their STATE."""
    server = paged_connector.server
    code, words = KEPT_PAST_PARSE[what]
    script = script_copy(tmp_path, ("local BARS = records.declare {", "local kept\nlocal BARS = records.declare {"),
                         (PARSE_CALL, code))
    config = paged_connector.config(start_date="2021-06-01")
    result = paged_connector.read(config, now=AFTER_CLOSE, flags=("--script", script))
    error = assert_failed_once(result, "system_error")
    assert words in error["message"], error
    emitted = [documented(d) for d in result.data]
    assert emitted == server.expected("TSLA", "2021-06-01", "2022-03-11")[:50]
    # Open at the last day emitted: more of that day could have come on the page that failed.
    last = emitted[-1]["date"]
    assert result.last_stream_state["tickers"] == {"TSLA": {"date": last, "emitted_at_cursor": [["TSLA", last]]}}


def test_a_response_kept_past_its_parse_keeps_what_was_read_during_it(paged_connector, tmp_path):
    script = script_copy(tmp_path, ("local BARS = records.declare {", "local kept\nlocal BARS = records.declare {"),
                         (PARSE_CALL, "    if kept then assert(#kept.text > 0 and kept.body.results) end\n"
                                      "    local _ = response.text, response.body\n    kept = response\n" + PARSE_CALL))
    config = paged_connector.config(start_date="2021-06-01")
    result = paged_connector.read(config, now=AFTER_CLOSE, flags=("--script", script))
    result.assert_complete()
    assert len(result.data) == len(paged_connector.server.expected("TSLA", "2021-06-01", "2022-03-11"))
