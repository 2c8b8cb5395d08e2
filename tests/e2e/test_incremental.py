"""Never lose or repeat a trading day (issue 4).

Each run hands its state to the next the way the platform does: the list of the last STATE of
each stream (the previous one kept when a run emitted none). The server's clock moves with every
run, and its published bars at the end are the ground truth the union of records must equal.
"""

from __future__ import annotations

import datetime as dt
import math

import pytest

from .conftest import (
    PAGE_SIZE, STREAM, documented, duplicates, expected_record, iso, ny, platform_state, slow_under_wrapper,
    stream_state_message, utc)

AFTER_CLOSE = utc(2022, 3, 11, 22, 0)   # Friday 2022-03-11, 17:00 New York


# --------------------------------------------------------------------------------------------
# a schedule of daily runs
# --------------------------------------------------------------------------------------------

FIRST_RUN = dt.date(2022, 2, 14)
LAST_RUN = dt.date(2022, 4, 19)
OUTAGE = (dt.date(2022, 3, 16), dt.date(2022, 3, 22))      # no runs at all
WEEKENDS_SKIPPED_UNTIL = dt.date(2022, 3, 6)               # weekend runs only after this
# New York wall-clock hours, cycled: before, at and after the 16:00 close, and around midnight.
HOURS = [(10, 0), (15, 59), (16, 1), (23, 30), (0, 30), (16, 0)]
TICKERS = ["AAPL", "TSLA"]
NO_STATE_FIRST = "[]"   # the platform's empty state on the first run


def schedule() -> list:
    runs, index, day = [], 0, FIRST_RUN
    while day <= LAST_RUN:
        skipped = (OUTAGE[0] <= day <= OUTAGE[1]) or (day <= WEEKENDS_SKIPPED_UNTIL and day.weekday() >= 5)
        if not skipped:
            hour, minute = HOURS[index % len(HOURS)]
            index += 1
            runs.append(ny(day, hour, minute))
            if day.weekday() == 4 and (hour, minute) < (23, 45):
                runs.append(ny(day, 23, 45))   # a second run the same day
        day += dt.timedelta(days=1)
    return runs


@slow_under_wrapper   # about 60 runs per time zone
@pytest.mark.parametrize("tz", ["America/Los_Angeles", "Asia/Tokyo"])
def test_daily_schedule_emits_every_trading_day_exactly_once(connector, tz):
    config = connector.config(stock_ticker=",".join(TICKERS), start_date="2022-02-01")
    state, emitted, data = None, [], {}
    runs = schedule()
    for now in runs:
        result = connector.read(config, state=state if state is not None else NO_STATE_FIRST,
                                now=now, tz=tz).assert_complete()
        assert result.states, result.describe()
        for record in result.data:
            key = (record["stock_ticker"], record["date"])
            emitted.append(key)
            data[key] = record
        state = platform_state(state, result)
    truth = {ticker: connector.server.published(ticker, "2022-02-01", iso(LAST_RUN)) for ticker in TICKERS}
    expected = [(ticker, bar["date"]) for ticker in TICKERS for bar in truth[ticker]]
    assert duplicates(emitted) == [], "days sent twice"
    assert sorted(set(expected) - set(emitted)) == [], "days lost"
    assert sorted(set(emitted) - set(expected)) == [], "days that were never published"
    for ticker in TICKERS:
        for bar in truth[ticker]:
            assert documented(data[(ticker, bar["date"])]) == expected_record(ticker, bar)
    # The schedule really covered the calendar's traps.
    dates = {d for _, d in expected}
    assert {"2022-02-18", "2022-02-22", "2022-03-11", "2022-03-14", "2022-04-14", "2022-04-18"} <= dates
    assert not {"2022-02-21", "2022-04-15"} & dates
    assert len(runs) > 50


# --------------------------------------------------------------------------------------------
# years of history, many pages
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("start", ["2015-01-01", "2010-06-01"], ids=["one-window", "two-windows"])
def test_years_of_history_across_many_pages(paged_connector, start):
    server = paged_connector.server
    result = paged_connector.read(paged_connector.config(start_date=start), now=AFTER_CLOSE).assert_complete()
    truth = server.published("TSLA", start, "2022-03-11")
    assert len(truth) > 1500
    assert result.dates() == [bar["date"] for bar in truth], "every trading day exactly once, in order"
    assert [documented(d) for d in result.data] == [expected_record("TSLA", bar) for bar in truth]
    requests = server.log()
    assert len(requests) >= math.ceil(len(truth) / PAGE_SIZE), "pages were skipped"
    assert sum("cursor=" in e["query"] for e in requests) >= math.ceil(len(truth) / PAGE_SIZE) - 2
    assert all(e["status"] == 200 for e in requests)
    assert len(result.states) >= math.ceil(len(truth) / PAGE_SIZE) - 1, "a checkpoint per page"
    assert result.last_stream_state["date"] == "2022-03-11"


# --------------------------------------------------------------------------------------------
# a run that dies half way
# --------------------------------------------------------------------------------------------

def emitted_cursor(state: list | None, ticker: str):
    if not state:
        return None
    stream_state = state[-1]["stream"]["stream_state"]
    return stream_state.get("tickers", {}).get(ticker, {}).get("date", stream_state.get("date"))


@pytest.mark.parametrize("pages", [1, 4])
def test_interrupted_run_then_resume_loses_and_repeats_nothing(paged_connector, pages):
    server = paged_connector.server
    config = paged_connector.config(start_date="2020-01-01", retry_max_seconds=2)
    server.faults(fail_after=pages, status=500)
    broken = paged_connector.read(config, state="[]", now=AFTER_CLOSE)
    assert broken.returncode != 0, broken.describe()
    assert [e["failure_type"] for e in broken.errors] == ["transient_error"], broken.describe()
    assert broken.statuses[-1] == "INCOMPLETE"
    assert len(broken.records) == pages * PAGE_SIZE, "every page served before the failure is emitted"
    state = platform_state(None, broken)
    checkpoint = emitted_cursor(state, "TSLA")
    assert checkpoint is not None, broken.describe()
    assert checkpoint <= max(broken.dates()), "the last STATE claims more than was emitted"
    assert checkpoint == max(broken.dates()), "the last STATE should cover every record emitted"
    assert broken.last_stream_state.get("date", checkpoint) <= checkpoint

    server.reset()
    resumed = paged_connector.read(config, state=state, now=AFTER_CLOSE).assert_complete()
    truth = [bar["date"] for bar in server.published("TSLA", "2020-01-01", "2022-03-11")]
    together = broken.dates() + resumed.dates()
    assert sorted(set(together)) == truth, "days lost"
    repeated = duplicates(together)
    assert [d for d in repeated if d <= checkpoint] == [], "days before the checkpoint sent twice"
    assert resumed.dates()[0] > checkpoint


def test_interrupted_multi_ticker_run_keeps_per_ticker_cursors(paged_connector):
    """AAPL finishes, MSFT dies half way: the top-level date is the smaller cursor, and the next
    run continues each ticker from its own cursor."""
    server = paged_connector.server
    config = paged_connector.config(stock_ticker="AAPL,MSFT", start_date="2021-06-01", retry_max_seconds=1,
                                    concurrency=1)  # AAPL must finish before MSFT starts
    aapl_pages = math.ceil(len(server.published("AAPL", "2021-06-01", "2022-03-11")) / PAGE_SIZE)
    server.faults(fail_after=aapl_pages + 1, status=503)
    broken = paged_connector.read(config, now=AFTER_CLOSE)
    assert broken.returncode != 0, broken.describe()
    stream_state = broken.last_stream_state
    msft = stream_state["tickers"]["MSFT"]["date"]
    assert stream_state["tickers"]["AAPL"]["date"] == "2022-03-11"
    assert msft == max(broken.dates("MSFT")) < "2022-03-11"
    # MSFT's position is open at its last day (another record of it could have come next): the
    # top-level date, what every ticker is complete up to, is the day before.
    assert stream_state["tickers"]["MSFT"]["emitted_at_cursor"] == [["MSFT", msft]]
    day_before = (dt.date.fromisoformat(msft) - dt.timedelta(days=1)).isoformat()
    assert stream_state["date"] == day_before, "the top-level date is the minimum over tickers"

    server.reset()
    resumed = paged_connector.read(config, state=platform_state(None, broken), now=AFTER_CLOSE).assert_complete()
    assert resumed.dates("AAPL") == []
    truth = [bar["date"] for bar in server.published("MSFT", "2021-06-01", "2022-03-11")]
    assert broken.dates("MSFT") + resumed.dates("MSFT") == truth
    assert resumed.last_stream_state["date"] == "2022-03-11"


# --------------------------------------------------------------------------------------------
# several tickers
# --------------------------------------------------------------------------------------------

def test_several_tickers_have_their_own_cursors(connector):
    config = connector.config(stock_ticker="AAPL,MSFT")
    result = connector.read(config, now=ny("2022-03-07", 17, 0)).assert_complete()
    for ticker in ("AAPL", "MSFT"):
        assert [documented(d) for d in result.data if d["stock_ticker"] == ticker] == \
            connector.server.expected(ticker, "2022-03-01", "2022-03-07")
    stream_state = result.last_stream_state
    assert stream_state["tickers"] == {"AAPL": {"date": "2022-03-07"}, "MSFT": {"date": "2022-03-07"}}
    assert stream_state["date"] == "2022-03-07"


def test_top_level_date_is_the_minimum_cursor(connector):
    state = [stream_state_message({"date": "2022-03-04", "tickers": {"AAPL": {"date": "2022-03-11"},
                                                                      "MSFT": {"date": "2022-03-04"}}})]
    config = connector.config(stock_ticker="AAPL,MSFT")
    # Thursday 17:00: MSFT catches up to 2022-03-10, AAPL is already further.
    result = connector.read(config, state=state, now=ny("2022-03-10", 17, 0)).assert_complete()
    assert result.dates("AAPL") == []
    assert result.dates("MSFT") == ["2022-03-07", "2022-03-08", "2022-03-09", "2022-03-10"]
    stream_state = result.last_stream_state
    assert stream_state["tickers"] == {"AAPL": {"date": "2022-03-11"}, "MSFT": {"date": "2022-03-10"}}
    assert stream_state["date"] == "2022-03-10"


def test_tickers_are_normalised(connector):
    result = connector.read(connector.config(stock_ticker=" aapl , Msft"), now=AFTER_CLOSE).assert_complete()
    assert {d["stock_ticker"] for d in result.data} == {"AAPL", "MSFT"}
    assert set(result.last_stream_state["tickers"]) == {"AAPL", "MSFT"}


def test_added_ticker_is_backfilled_while_others_continue(connector):
    first = connector.read(connector.config(stock_ticker="AAPL"), now=ny("2022-03-07", 17, 0)).assert_complete()
    assert first.dates("AAPL")[-1] == "2022-03-07"
    state = platform_state(None, first)
    second = connector.read(connector.config(stock_ticker="AAPL,MSFT"), state=state, now=AFTER_CLOSE).assert_complete()
    assert second.dates("AAPL") == ["2022-03-08", "2022-03-09", "2022-03-10", "2022-03-11"]
    assert [documented(d) for d in second.data if d["stock_ticker"] == "MSFT"] == \
        connector.server.expected("MSFT", "2022-03-01", "2022-03-11")
    assert second.last_stream_state["tickers"] == {"AAPL": {"date": "2022-03-11"}, "MSFT": {"date": "2022-03-11"}}
    assert duplicates(first.keys + second.keys) == []


def test_removed_tickers_cursor_is_dropped(connector):
    first = connector.read(connector.config(stock_ticker="AAPL,MSFT"), now=ny("2022-03-07", 17, 0)).assert_complete()
    state = platform_state(None, first)
    second = connector.read(connector.config(stock_ticker="AAPL"), state=state, now=AFTER_CLOSE).assert_complete()
    assert second.dates("MSFT") == []
    assert second.dates("AAPL") == ["2022-03-08", "2022-03-09", "2022-03-10", "2022-03-11"]
    assert set(second.last_stream_state["tickers"]) == {"AAPL"}
    assert second.states[-1]["data"][STREAM] == second.last_stream_state


def test_legacy_single_date_applies_to_every_ticker(connector):
    config = connector.config(stock_ticker="AAPL,MSFT")
    result = connector.read(config, state={STREAM: {"date": "2022-03-08"}}, now=AFTER_CLOSE).assert_complete()
    for ticker in ("AAPL", "MSFT"):
        assert result.dates(ticker) == ["2022-03-09", "2022-03-10", "2022-03-11"], ticker
    assert result.last_stream_state["tickers"] == {"AAPL": {"date": "2022-03-11"}, "MSFT": {"date": "2022-03-11"}}


# --------------------------------------------------------------------------------------------
# lookback
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("cursor,start,first", [
    ("2022-03-09", "2022-03-01", "2022-03-07"),   # re-reads 03-07, 03-08, 03-09
    ("2022-03-07", "2022-03-01", "2022-03-05"),   # a Monday: the weekend has no rows, Friday is older
    ("2022-03-09", "2022-03-08", "2022-03-08"),   # never before start_date
])
def test_lookback_days_resends_the_last_days_only(connector, cursor, start, first):
    config = connector.config(lookback_days=3, start_date=start)
    result = connector.read(config, state=[stream_state_message({"date": cursor})], now=AFTER_CLOSE)
    result.assert_complete()
    expected = connector.server.expected("TSLA", first, "2022-03-11")
    assert [documented(d) for d in result.data] == expected, "lookback re-sends exactly [cursor - 2, cursor]"
    assert result.last_stream_state["date"] == "2022-03-11"


def test_lookback_zero_resends_nothing(connector):
    config = connector.config(lookback_days=0)
    result = connector.read(config, state=[stream_state_message({"date": "2022-03-09"})], now=AFTER_CLOSE)
    assert result.assert_complete().dates() == ["2022-03-10", "2022-03-11"]
