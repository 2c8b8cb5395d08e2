"""Cursor kinds, orders, ceilings and the checks at load, on small scripts whose pages are written
in the test: the requests go to the local server (with ?page=N), and parse serves page N instead
of its answer. The exactly-once property under random pages and failures is tests/property's."""

from __future__ import annotations

import json

import pytest

from .conftest import STREAM, utc

AFTER_CLOSE = utc(2022, 3, 11, 22, 0)

SCRIPT = """\
local PAGES = { %(pages)s }
local MAPPER = records.declare { list = "results", next_url = "next_url", fields = { %(fields)s } }
return {
  spec = { connectionSpecification = { type = "object", required = { "api_key", "base_url" },
    properties = { api_key = { type = "string", airbyte_secret = true }, base_url = { type = "string" } } } },
  check = function() return true end,
  streams = { {
    name = "stock_prices",
    json_schema = { type = "object", properties = {} },
%(stream)s
    request = function(ctx)
      log.info("window", tostring(ctx.from), tostring(ctx.to))
      return ctx.config.base_url .. "/v2/aggs/ticker/TSLA/range/1/day/2022-03-01/2022-03-11?page=1",
        { headers = { Authorization = "Bearer " .. ctx.config.api_key } }
    end,
    parse = function(ctx, response)
      local page = tonumber(response.url:match("[?&]page=(%%d+)"))
      response.text = assert(PAGES[page], "no page " .. tostring(page))
      if %(declared)s then return MAPPER:map(ctx, response) end
      return response.body.results, response.body.next_url
    end,
  } },
}
"""


def lua_string(text: str) -> str:
    return "[==[" + text + "]==]"


def page_texts(server, pages: list) -> list:
    """Pages as JSON texts, each but the last pointing at the next (?page=N+1)."""
    url = server.base_url + "/v2/aggs/ticker/TSLA/range/1/day/2022-03-01/2022-03-11?page=%d"
    texts = []
    for i, records in enumerate(pages):
        body = {"results": records}
        if i + 1 < len(pages):
            body["next_url"] = url % (i + 2)
        texts.append(json.dumps(body))
    return texts


def script(tmp_path, server, stream: str, pages: list, fields: str = "", declared: bool = False, name="s.lua"):
    path = tmp_path / name
    path.write_text(SCRIPT % {"pages": ", ".join(lua_string(t) for t in page_texts(server, pages)),
                              "stream": stream, "fields": fields or '{ "x", from = "x" }',
                              "declared": "true" if declared else "false"}, encoding="utf-8")
    return path


def stream_state(result) -> dict:
    return result.last_stream_state


def platform_state(result) -> list:
    return [result.of("STATE")[-1]["state"]]


def read(connector, path, state=None, now=AFTER_CLOSE, catalog="incremental"):
    kwargs = {} if state is None else {"state": state}
    return connector.read(connector.config(), catalog=catalog, now=now, flags=("--script", path), **kwargs)


def windows(result) -> list:
    return [m["log"]["message"].split(" ", 1)[1] for m in result.of("LOG")
            if m["log"]["message"].startswith("window ")]


# --------------------------------------------------------------------------------------------
# datetime
# --------------------------------------------------------------------------------------------

DATETIME = """\
    primary_key = "id",
    cursor_field = "at",
    cursor_kind = "datetime",
    start = "2022-03-01",
    ["end"] = "2022-03-10T00:00:00Z",
"""


@pytest.mark.parametrize("declared", [False, True], ids=["lua", "declared"])
def test_datetime_values_compare_as_instants_whatever_their_offset(connector, tmp_path, declared):
    records = [{"id": "a", "at": "2022-03-02T10:00:00Z"},
               {"id": "b", "at": "2022-03-02T12:30:00+02:00"},      # 10:30Z
               {"id": "c", "at": "2022-03-02T06:00:00.250-05:00"},  # 11:00:00.25Z
               {"id": "d", "at": "2022-03-03T00:00:00Z"}]
    fields = '{ "id", from = "id" }, { "at", from = "at", as = "datetime" },'
    path = script(tmp_path, connector.server, DATETIME, [records], fields, declared)
    result = read(connector, path).assert_complete()
    assert [d["id"] for d in result.data] == ["a", "b", "c", "d"]
    # The state holds one form: RFC 3339 in UTC, to the microsecond. A datetime position stays open
    # at its value with the keys sent at it: a record indexed late at that instant is not lost.
    assert stream_state(result) == {"at": "2022-03-03T00:00:00Z", "emitted_at_cursor": [["d"]]}
    assert windows(result) == ["2022-03-01T00:00:00Z 2022-03-10T00:00:00Z"]


def test_datetime_going_backwards_is_an_error_naming_the_record(connector, tmp_path):
    records = [{"id": "a", "at": "2022-03-02T10:00:00Z"}, {"id": "b", "at": "2022-03-02T11:00:00+02:00"}]
    result = read(connector, script(tmp_path, connector.server, DATETIME, [records]))
    assert result.returncode == 1
    message = result.errors[-1]["message"]
    assert "ascending at order" in message and "record 2" in message, message
    assert "2022-03-02T09:00:00Z after 2022-03-02T10:00:00Z" in message, message


def test_datetime_run_across_pages_resumes_inside_it(connector, tmp_path):
    """Five articles share one second; a page holds two; the read fails on page 3. The state
    keeps the ids sent at that second; the next read asks from it and sends only the rest."""
    same = "2022-03-05T09:15:00Z"
    records = [{"id": "x0", "at": "2022-03-04T00:00:00Z"}] + [{"id": f"s{i}", "at": same} for i in range(5)] + \
              [{"id": "y0", "at": "2022-03-06T00:00:00Z"}]
    pages = [records[0:2], records[2:4], records[4:6], records[6:]]
    path = script(tmp_path, connector.server, DATETIME, pages)
    broken = path.read_text().replace('assert(PAGES[page], "no page " .. tostring(page))',
                                      'page == 3 and error({failure_type = "transient_error", message = "boom"})'
                                      ' or PAGES[page]')
    broken_path = tmp_path / "broken.lua"
    broken_path.write_text(broken)
    first = read(connector, broken_path)
    assert first.returncode == 1
    assert [d["id"] for d in first.data] == ["x0", "s0", "s1", "s2"]
    position = stream_state(first)
    assert position["at"] == same
    assert sorted(position["emitted_at_cursor"]) == [["s0"], ["s1"], ["s2"]]
    second = read(connector, path, state=platform_state(first)).assert_complete()
    assert [d["id"] for d in second.data] == ["s3", "s4", "y0"]
    assert windows(second) == [f"{same} 2022-03-10T00:00:00Z"]
    assert stream_state(second) == {"at": "2022-03-06T00:00:00Z", "emitted_at_cursor": [["y0"]]}


@pytest.mark.parametrize("fmt,values", [
    ("epoch_ms", [1646215200000, 1646218800000]),
    ("epoch_s", [1646215200, "1646218800"]),
    ("%d/%m/%Y %H:%M", ["02/03/2022 10:00", "02/03/2022 11:00"]),
])
def test_datetime_formats(connector, tmp_path, fmt, values):
    """Records spell the cursor as the format says; the state keeps RFC 3339 whatever it is."""
    stream = DATETIME.replace('cursor_kind = "datetime",', f'cursor_kind = "datetime", cursor_format = "{fmt}",')
    records = [{"id": "a", "at": values[0]}, {"id": "b", "at": values[1]}]
    result = read(connector, script(tmp_path, connector.server, stream, [records])).assert_complete()
    assert [d["id"] for d in result.data] == ["a", "b"]
    assert stream_state(result) == {"at": "2022-03-02T11:00:00Z", "emitted_at_cursor": [["b"]]}


def test_ceiling_lag_keeps_checkpoints_before_data_not_final_yet(connector, tmp_path):
    """Data newer than now minus an hour is sent, but the position stays before it; the next read
    sends it again (it may still change)."""
    stream = DATETIME.replace('    ["end"] = "2022-03-10T00:00:00Z",\n', '    ceiling_lag = "PT1H",\n')
    now = utc(2022, 3, 5, 12, 0)
    records = [{"id": "old", "at": "2022-03-05T10:00:00Z"}, {"id": "recent", "at": "2022-03-05T11:30:00Z"}]
    path = script(tmp_path, connector.server, stream, [records])
    first = read(connector, path, now=now).assert_complete()
    assert [d["id"] for d in first.data] == ["old", "recent"]
    assert stream_state(first) == {"at": "2022-03-05T10:00:00Z", "emitted_at_cursor": [["old"]]}
    assert any("not final yet" in m["log"]["message"] for m in first.of("LOG"))
    second = read(connector, path, state=platform_state(first), now=utc(2022, 3, 5, 14, 0)).assert_complete()
    assert [d["id"] for d in second.data] == ["recent"]
    assert stream_state(second) == {"at": "2022-03-05T11:30:00Z", "emitted_at_cursor": [["recent"]]}


# --------------------------------------------------------------------------------------------
# integer
# --------------------------------------------------------------------------------------------

INTEGER = """\
    primary_key = "id",
    cursor_field = "seq",
    cursor_kind = "integer",
    start = 9007199254740990,
"""


@pytest.mark.parametrize("declared", [False, True], ids=["lua", "declared"])
def test_integer_cursor_is_exact_past_two_to_the_53(connector, tmp_path, declared):
    big = 9007199254740993  # 2^53 + 1: a double would read it as 2^53
    records = [{"id": 1, "seq": big}, {"id": 2, "seq": big + 2}]
    fields = '{ "id", from = "id" }, { "seq", from = "seq", as = "integer" },'
    path = script(tmp_path, connector.server, INTEGER, [records], fields, declared)
    first = read(connector, path).assert_complete()
    assert [d["seq"] for d in first.data] == [big, big + 2]
    assert '"seq":9007199254740995' in first.stdout
    assert stream_state(first) == {"seq": big + 2}
    assert windows(first) == ["9007199254740990 nil"]
    second = read(connector, path, state=platform_state(first)).assert_complete()
    assert second.data == []
    assert windows(second) == [f"{big + 3} nil"]


def test_integer_cursor_from_decimal_text(connector, tmp_path):
    records = [{"id": 1, "seq": "9007199254740993"}]
    result = read(connector, script(tmp_path, connector.server, INTEGER, [records])).assert_complete()
    assert stream_state(result) == {"seq": 9007199254740993}


# --------------------------------------------------------------------------------------------
# orders
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("order", ["descending", "unsorted"])
def test_unordered_streams_checkpoint_at_the_window_end(connector, tmp_path, order):
    stream = DATETIME.replace('cursor_kind = "datetime",', f'cursor_kind = "datetime", cursor_order = "{order}",')
    records = [{"id": "c", "at": "2022-03-04T00:00:00Z"}, {"id": "a", "at": "2022-03-02T00:00:00Z"},
               {"id": "b", "at": "2022-03-03T00:00:00Z"}]
    path = script(tmp_path, connector.server, stream, [records[:2], records[2:]])
    broken = tmp_path / "broken.lua"
    broken.write_text(path.read_text().replace(
        'assert(PAGES[page], "no page " .. tostring(page))',
        'page == 2 and error({failure_type = "transient_error", message = "boom"}) or PAGES[page]'))
    first = read(connector, broken)
    assert first.returncode == 1
    assert [d["id"] for d in first.data] == ["c", "a"]
    # No position yet (the window did not end): the keys of what it sent, with their values, so
    # a resume repeats none.
    assert stream_state(first) == {"emitted_after_cursor": [{"cursor": "2022-03-04T00:00:00Z", "key": ["c"]},
                                                            {"cursor": "2022-03-02T00:00:00Z", "key": ["a"]}]}
    second = read(connector, path, state=platform_state(first)).assert_complete()
    assert [d["id"] for d in second.data] == ["b"]
    assert stream_state(second) == {"at": "2022-03-04T00:00:00Z", "emitted_at_cursor": [["c"]]}


# --------------------------------------------------------------------------------------------
# streams without a cursor
# --------------------------------------------------------------------------------------------

NO_CURSOR = """\
    primary_key = "id",
"""


def test_stream_without_cursor_is_full_refresh_only(connector, tmp_path):
    path = script(tmp_path, connector.server, NO_CURSOR, [[{"id": 1}, {"id": 2}], [{"id": 3}]])
    catalog = connector.discover(connector.config(), flags=("--script", path)).of("CATALOG")[0]["catalog"]
    entry = catalog["streams"][0]
    assert entry["supported_sync_modes"] == ["full_refresh"]
    assert "default_cursor_field" not in entry and entry["is_resumable"] is False
    assert entry["source_defined_primary_key"] == [["id"]]
    full = read(connector, path, catalog="full_refresh").assert_complete()
    assert [d["id"] for d in full.data] == [1, 2, 3]
    assert full.states == []
    incremental = read(connector, path)
    assert incremental.returncode == 1
    error = incremental.errors[-1]
    assert error["failure_type"] == "config_error" and "has no cursor" in error["message"], error
    assert incremental.data == []


# --------------------------------------------------------------------------------------------
# days
# --------------------------------------------------------------------------------------------

DAY = """\
    primary_key = { "stock_ticker", "date" },
    cursor_field = "date",
    start = "2022-03-01",
    timezone = "Asia/Tokyo",
    day_complete_at = "%s",
"""


def test_day_complete_at_midnight_means_once_the_day_has_ended(connector, tmp_path):
    """"00:00" cannot mean a day is complete as it begins: rows published later that day would be
    lost. It means the day's end, like the default."""
    records = [{"stock_ticker": "T", "date": "2022-03-04"}]
    path = script(tmp_path, connector.server, DAY % "00:00", [records])
    # 10:00 on 2022-03-05 in Tokyo: the 5th is not complete, the 4th is.
    result = read(connector, path, now=utc(2022, 3, 5, 1, 0)).assert_complete()
    assert windows(result) == ["2022-03-01 2022-03-04"]
    later = read(connector, script(tmp_path, connector.server, DAY % "09:30", [records], name="t.lua"),
                 now=utc(2022, 3, 5, 1, 0)).assert_complete()
    assert windows(later) == ["2022-03-01 2022-03-05"], "09:30 in Tokyo has passed: the 5th is complete"


# --------------------------------------------------------------------------------------------
# checked at load
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("edit,words", [
    (('cursor_field = "at",', 'cursor_feild = "at",'), "unknown key 'cursor_feild' (did you mean cursor_field?)"),
    (('cursor_kind = "datetime",', 'cursor_kind = "datetme",'), "cursor_kind 'datetme' is not one of day, datetime, "
                                                                "integer (did you mean datetime?)"),
    (('start = "2022-03-01",', 'start = "2022-03-01", timezone = "Europe/Londn",'),
     "unknown time zone 'Europe/Londn' (did you mean Europe/London"),
    (('start = "2022-03-01",', 'start = "2022-03-01", window = "30 days",'), "window: '30 days' is not an ISO 8601 duration"),
    (('cursor_kind = "datetime",', 'cursor_kind = "datetime", day_complete_at = "16:00",'),
     "day_complete_at goes with cursor_kind = \"day\""),
])
def test_mistakes_in_a_stream_are_found_at_load(connector, tmp_path, edit, words):
    path = script(tmp_path, connector.server, DATETIME.replace(*edit), [[]])
    result = connector.spec(flags=("--script", path))
    assert result.returncode != 0
    assert [e["failure_type"] for e in result.errors] == ["system_error"], result.describe()
    assert words in result.errors[0]["message"], result.errors[0]["message"]


def test_a_stream_the_catalog_misspells_names_the_closest(connector, tmp_path):
    path = script(tmp_path, connector.server, DATETIME, [[]])
    catalog = {"streams": [{"stream": {"name": "stock_price", "json_schema": {}}, "sync_mode": "incremental",
                            "destination_sync_mode": "append"}]}
    result = read(connector, path, catalog=catalog)
    assert "does not have (did you mean stock_prices?)" in result.errors[-1]["message"], result.describe()
    assert STREAM == "stock_prices"


def test_a_record_indexed_late_at_the_last_instant_is_sent_next_time(connector, tmp_path):
    """The read ends at its value with the keys it sent; the API later shows another record at that
    same instant: the next read asks from it again and sends only that one."""
    first_pages = [[{"id": "a", "at": "2022-03-02T10:00:00Z"}, {"id": "b", "at": "2022-03-03T10:00:00Z"}]]
    first = read(connector, script(tmp_path, connector.server, DATETIME, first_pages)).assert_complete()
    assert stream_state(first) == {"at": "2022-03-03T10:00:00Z", "emitted_at_cursor": [["b"]]}
    later = [[{"id": "b", "at": "2022-03-03T10:00:00Z"}, {"id": "late", "at": "2022-03-03T10:00:00Z"},
              {"id": "c", "at": "2022-03-04T10:00:00Z"}]]
    second = read(connector, script(tmp_path, connector.server, DATETIME, later, name="later.lua"),
                  state=platform_state(first)).assert_complete()
    assert [d["id"] for d in second.data] == ["late", "c"]
    assert windows(second) == ["2022-03-03T10:00:00Z 2022-03-10T00:00:00Z"]


def test_a_stream_without_primary_key_says_what_a_resume_may_repeat(connector, tmp_path):
    stream = DATETIME.replace('    primary_key = "id",\n', '')
    records = [{"id": "a", "at": "2022-03-02T10:00:00Z"}]
    result = read(connector, script(tmp_path, connector.server, stream, [records])).assert_complete()
    warnings = [m["log"]["message"] for m in result.of("LOG") if m["log"]["level"] == "WARN"]
    assert len(warnings) == 1 and "has no primary_key" in warnings[0] and "at least once" in warnings[0], warnings
    # Without keys to skip by, a datetime position closes at its value when the read ends.
    assert stream_state(result) == {"at": "2022-03-02T10:00:00Z"}


def test_a_next_url_past_64_kb_is_an_error_not_a_retry(connector, tmp_path):
    """A 2 MB next URL was "Out of memory" from libcurl, asked for again until the budget ran out."""
    path = script(tmp_path, connector.server, DATETIME, [[{"id": "a", "at": "2022-03-02T10:00:00Z"}]])
    huge = connector.server.base_url + "/v2/aggs/ticker/TSLA/range/1/day/2022-03-01/2022-03-11?page=2&x=" + "a" * 2000000
    text = path.read_text().replace('return response.body.results, response.body.next_url',
                                    'return response.body.results, ' + lua_string(huge))
    path.write_text(text)
    result = read(connector, path)
    assert result.returncode == 1
    error = result.errors[-1]
    assert error["failure_type"] == "system_error" and "next page URL of 2" in error["message"], error
    assert [d["id"] for d in result.data] == ["a"]
    assert stream_state(result) == {"at": "2022-03-02T10:00:00Z", "emitted_at_cursor": [["a"]]}
