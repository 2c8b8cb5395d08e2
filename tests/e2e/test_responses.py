"""What parse is handed and what it may hand back: the answer's header fields (any case), and a
next page URL relative to the page's own, resolved as a browser resolves a link."""
from __future__ import annotations

import pytest

from .conftest import duplicates, script_copy, utc

AFTER_CLOSE = utc(2022, 3, 11, 22, 0)  # Friday 2022-03-11, 17:00 New York
PARSE_CALL = "    return BARS:map(ctx, response)\n"
TICKERS = "AAPL,TSLA"

# Lua that turns the absolute next_url the server gave into another spelling of the same link.
RELATIVE_FORMS = {
    # "/v2/aggs/...?cursor=..."
    "path-absolute": 'next_url:gsub("^https?://[^/]+", "")',
    # "//127.0.0.1:PORT/v2/aggs/...?cursor=..."
    "scheme-relative": 'next_url:gsub("^https?:", "")',
    # "../LO/HI?cursor=...": the page's URL ends .../day/FROM/TO, the next one .../day/LO/HI.
    "path-relative": '"../" .. next_url:match("/day/([^/]+/[^/?]+%?.*)$")',
}


def relative_next_script(tmp_path, form: str):
    code = (f"    local batch = BARS:map(ctx, response)\n"
            f"    local next_url = response.body.next_url\n"
            f"    if next_url then next_url = ({RELATIVE_FORMS[form]}) end\n"
            f"    return batch, next_url\n")
    return script_copy(tmp_path, (PARSE_CALL, code), name=f"relative-{form}.lua")


@pytest.mark.parametrize("form", list(RELATIVE_FORMS))
def test_a_relative_next_url_is_resolved_against_the_page(paged_connector, tmp_path, form):
    config = paged_connector.config(stock_ticker=TICKERS, start_date="2020-01-01")
    plain = paged_connector.read(config, catalog="full_refresh", now=AFTER_CLOSE).assert_complete()
    relative = paged_connector.read(config, catalog="full_refresh", now=AFTER_CLOSE,
                                    flags=("--script", relative_next_script(tmp_path, form))).assert_complete()
    assert len(plain.data) > 10 * 50, "many pages a ticker"
    # Tickers are read at once, so only each ticker's own order is fixed.
    for ticker in TICKERS.split(","):
        assert ([d for d in relative.data if d["stock_ticker"] == ticker]
                == [d for d in plain.data if d["stock_ticker"] == ticker])
    assert len(relative.data) == len(plain.data)
    assert duplicates(relative.keys) == []


def test_a_next_url_that_is_not_a_url_fails_the_read(paged_connector, tmp_path):
    code = "    return BARS:map(ctx, response), 'http://[::1'\n"
    script = script_copy(tmp_path, (PARSE_CALL, code), name="bad-next.lua")
    result = paged_connector.read(paged_connector.config(stock_ticker="AAPL", start_date="2020-01-01"),
                                  catalog="full_refresh", now=AFTER_CLOSE, flags=("--script", script))
    assert result.returncode != 0
    assert any("is not a URL" in e["message"] for e in result.errors), result.describe()


def test_parse_sees_the_answers_header_fields_in_any_case(connector, tmp_path):
    code = ("    local h = response.headers\n"
            "    log.info('headers: ' .. tostring(h['content-type']) .. ' | ' .. tostring(h['Content-Type'])\n"
            "             .. ' | ' .. tostring(h.CONTENT_TYPE) .. ' | ' .. tostring(h['X-Not-Sent']))\n"
            + PARSE_CALL)
    script = script_copy(tmp_path, (PARSE_CALL, code), name="headers.lua")
    result = connector.read(connector.config(stock_ticker="AAPL", start_date="2022-03-01"), now=AFTER_CLOSE,
                            flags=("--script", script)).assert_complete()
    logged = [m["log"]["message"] for m in result.of("LOG") if m["log"]["message"].startswith("headers: ")]
    assert logged, result.describe()
    content_type = logged[0].split(" | ")[0][len("headers: "):]
    assert content_type.startswith("application/json"), logged
    assert logged[0] == f"headers: {content_type} | {content_type} | nil | nil", logged


# parse's records: a list (or a batch); anything else was read as no records, and the read
# ended "successfully" with nothing.
NOT_LISTS = {
    "one-record": ("    return { date = '2022-03-01', stock_ticker = 'AAPL', price = 1 }\n",
                   "with the key '"),
    "nil": ("    return nil\n", "not nil; a page without records is {}"),
    "list-and-a-key": ("    local t = {} t.next = 'x' return t\n", "with the key 'next'"),
    "a-gap": ("    return { [1] = {}, [3] = {} }\n", "with the key 3"),
}


@pytest.mark.parametrize("case", list(NOT_LISTS))
def test_parse_returning_anything_but_a_list_fails_the_read(connector, tmp_path, case):
    code, message = NOT_LISTS[case]
    script = script_copy(tmp_path, (PARSE_CALL, code), name=f"{case}.lua")
    result = connector.read(connector.config(stock_ticker="AAPL", start_date="2022-03-01"), now=AFTER_CLOSE,
                            flags=("--script", script))
    assert result.returncode != 0 and result.data == [], result.describe()
    assert any(message in e["message"] for e in result.errors), result.describe()


def test_a_list_built_backwards_is_a_list(connector, tmp_path):
    """Filled from its end, a list's keys may live in the table's hash part: still a list."""
    code = ("    local bars, list = response.body.results or {}, {}\n"
            "    for i = #bars, 1, -1 do\n"
            "      local b = bars[i]\n"
            "      list[i] = { date = date.from_ms(b.t, 'America/New_York'), stock_ticker = ctx.partition,\n"
            "                  price = b.c, open = b.o, high = b.h, low = b.l, close = b.c, volume = b.v,\n"
            "                  vwap = b.vw, transactions = b.n }\n"
            "    end\n"
            "    return list\n")
    script = script_copy(tmp_path, (PARSE_CALL, code), name="backwards.lua")
    config = connector.config(stock_ticker="AAPL", start_date="2022-03-01")
    built = connector.read(config, now=AFTER_CLOSE, flags=("--script", script)).assert_complete()
    declared = connector.read(config, now=AFTER_CLOSE).assert_complete()
    assert [d["date"] for d in built.data] == [d["date"] for d in declared.data] != []


# Records built in Lua are checked against the stream's json_schema (type and required).
WRONG_PRICE = ("    local batch = response.body.results or {}\n"
               "    local list = {}\n"
               "    for i, b in ipairs(batch) do\n"
               "      list[i] = { date = date.from_ms(b.t, 'America/New_York'), stock_ticker = ctx.partition,\n"
               "                  price = tostring(b.c), close = b.c }\n"
               "    end\n"
               "    return list\n")


def test_a_record_that_breaks_the_schema_fails_the_read_naming_the_field(connector, tmp_path):
    script = script_copy(tmp_path, (PARSE_CALL, WRONG_PRICE), name="wrong.lua")
    result = connector.read(connector.config(stock_ticker="AAPL", start_date="2022-03-01"), now=AFTER_CLOSE,
                            flags=("--script", script))
    assert result.returncode != 0 and result.data == [], result.describe()
    message = result.errors[-1]["message"]
    assert "record 1 from parse does not match the stream's json_schema: field 'price'" in message, message
    assert "string" in message and "number" in message, message


def test_a_lenient_stream_sends_such_records_with_one_warning_a_field(connector, tmp_path):
    script = script_copy(tmp_path, (PARSE_CALL, WRONG_PRICE),
                         ("  describe_error = describe_error,\n",
                          "  describe_error = describe_error,\n  schema_check = \"warn\",\n"), name="lenient.lua")
    result = connector.read(connector.config(stock_ticker="AAPL", start_date="2022-03-01"), now=AFTER_CLOSE,
                            flags=("--script", script)).assert_complete()
    assert len(result.data) > 3 and all(isinstance(d["price"], str) for d in result.data)
    warnings = [m["log"]["message"] for m in result.of("LOG") if m["log"]["level"] == "WARN"]
    assert len(warnings) == 1 and "field 'price'" in warnings[0], warnings


def test_schema_check_takes_error_warn_or_off(connector, tmp_path):
    script = script_copy(tmp_path, ("  describe_error = describe_error,\n",
                                    "  describe_error = describe_error,\n  schema_check = \"lenient\",\n"),
                         name="bad-check.lua")
    result = connector.read(connector.config(stock_ticker="AAPL", start_date="2022-03-01"), now=AFTER_CLOSE,
                            flags=("--script", script))
    assert result.returncode != 0
    assert 'schema_check must be "error", "warn" or "off"' in result.errors[-1]["message"], result.errors
