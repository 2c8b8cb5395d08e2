"""The example connectors, scripts/examples/polygon_news.lua and polygon_tickers.lua, end to end
against the bundled Polygon-compatible server (tests/server/polygon_server.py).

The ground truth is the server's: GET /_control/news (the articles visible at its clock) and
GET /_control/tickers (the listing at its clock). Every run goes through the conftest's Connector,
so each stdout line is a valid AirbyteMessage and no form of the key is ever printed.

News reads use a server of their own whose pages hold NEWS_PAGE articles, so that runs of
articles sharing one published_utc second straddle page boundaries. The exactly-once tests make a
read fail at each request number in turn (a non-retryable 400 on /v2/reference/news), resume from
what the platform would pass (the last STATE of the stream), and check that the union of the
records of all runs is the uninterrupted read, with no id twice.
"""

from __future__ import annotations

import collections
import datetime as dt
import json
import re
import urllib.parse

import pytest

from .conftest import (
    CANARY, FORBIDDEN, KEY, NO_STATE, PAGE_SIZE, REPO, UNKNOWN_KEY, WRAPPED, Connector, PolygonServer,
    duplicates, message_validator, platform_state, sample_under_wrapper, slow_under_wrapper, utc)

NEWS_SCRIPT = REPO / "scripts" / "examples" / "polygon_news.lua"
TICKERS_SCRIPT = REPO / "scripts" / "examples" / "polygon_tickers.lua"
NEWS_FLAGS = ("--script", NEWS_SCRIPT)
TICKERS_FLAGS = ("--script", TICKERS_SCRIPT)
NEWS_PATH = "/v2/reference/news"
TICKERS_PATH = "/v3/reference/tickers"

# Articles per page of the news server: far smaller than the runs of equal seconds below.
NEWS_PAGE = 3

# The fields the tickers script declares, in its order.
TICKER_FIELDS = ("ticker", "name", "market", "locale", "primary_exchange", "type", "active", "currency_name",
                 "cik", "composite_figi", "share_class_figi", "last_updated_utc", "delisted_utc")

SUMMARY = re.compile(r"^news\[(?P<ticker>[^\]]+)\]: (?P<emitted>\d+) records emitted(?P<rest>.*)$")
SKIPPED_BY_SCRIPT = re.compile(r"; (\d+) skipped by the script")


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------

def instant(text: str) -> dt.datetime:
    """An RFC 3339 text (Z or an offset) as an aware UTC datetime."""
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(dt.timezone.utc)


def z(when: dt.datetime) -> str:
    """Polygon's published_utc form."""
    return when.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def news_config(server: PolygonServer, tickers, start_date="2022-03-01", **extra) -> dict:
    config = {"api_key": CANARY, "tickers": list(tickers), "base_url": server.base_url}
    if start_date is not None:
        config["start_date"] = start_date
    config.update(extra)
    return config


def tickers_config(server: PolygonServer, **extra) -> dict:
    return {"api_key": CANARY, "base_url": server.base_url, **extra}


def catalog(name: str, mode: str, cursor=None, primary_key=None) -> dict:
    """A configured catalog of one stream, as the platform writes it."""
    stream = {"name": name, "json_schema": {"type": "object"},
              "supported_sync_modes": ["full_refresh", "incremental"] if cursor else ["full_refresh"]}
    configured = {"stream": stream, "sync_mode": mode, "destination_sync_mode": "append"}
    if cursor:
        stream.update(source_defined_cursor=True, default_cursor_field=[cursor])
        configured["cursor_field"] = [cursor]
    if primary_key:
        stream["source_defined_primary_key"] = primary_key
        configured["primary_key"] = primary_key
    return {"streams": [configured]}


NEWS_INCREMENTAL = catalog("news", "incremental", "published_utc", [["id"]])
NEWS_FULL = catalog("news", "full_refresh", "published_utc", [["id"]])
TICKERS_FULL = catalog("tickers", "full_refresh", primary_key=[["ticker"]])


def read_news(connector: Connector, config: dict, now: dt.datetime, state=NO_STATE, catalog_=NEWS_INCREMENTAL, **kw):
    return connector.read(config, catalog=catalog_, state=state, flags=NEWS_FLAGS, now=now, **kw)


def news_truth(server: PolygonServer, tickers, start: str, now: dt.datetime) -> dict:
    """id -> article: the server's articles about any of tickers published in [start, now), at
    its current clock. A read whose clock is now asks for published_utc.lt=now."""
    found = {}
    for ticker in tickers:
        query = urllib.parse.urlencode({"ticker": ticker, "from": start})
        for article in server.call("GET", "/_control/news?" + query):
            if instant(article["published_utc"]) < now:
                found[article["id"]] = article
    return found


def owner(article: dict, tickers) -> str:
    """The partition that sends an article: the first configured ticker it lists."""
    return next(t for t in tickers if t in article["tickers"])


def ids_of(result) -> list:
    return [d["id"] for d in result.data]


def assert_records_are(result, truth: dict, what: str = "") -> None:
    """result's records are exactly truth's articles, each once and unchanged."""
    ids = ids_of(result)
    assert duplicates(ids) == [], f"articles sent twice{what}"
    assert sorted(set(truth) - set(ids)) == [], f"articles lost{what}"
    assert sorted(set(ids) - set(truth)) == [], f"articles that should not have been sent{what}"
    for data in result.data:
        assert data == truth[data["id"]], f"an article changed on its way{what}"
    assert {r["stream"] for r in result.records} <= {"news"}


def summaries(result) -> dict:
    """ticker -> (emitted, skipped by the script) from the partitions' summary LOG lines."""
    found = {}
    for message in result.of("LOG"):
        match = SUMMARY.match(message["log"]["message"])
        if match:
            skipped = SKIPPED_BY_SCRIPT.search(match.group("rest"))
            found[match.group("ticker")] = (int(match.group("emitted")), int(skipped.group(1)) if skipped else 0)
    return found


def partition_cursors(state_messages: list) -> dict:
    """ticker -> its stream state in the last STATE (platform form)."""
    assert len(state_messages) == 1, state_messages
    return state_messages[0]["stream"]["stream_state"]["tickers"]


def request_count(server: PolygonServer, path: str) -> int:
    return sum(1 for entry in server.log() if entry["path"] == path)


# --------------------------------------------------------------------------------------------
# fixtures
# --------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def _news_server_process(tmp_path_factory):
    server = PolygonServer(tmp_path_factory.mktemp("polygon-news"), "--page-size", str(NEWS_PAGE))
    yield server
    server.stop()


@pytest.fixture
def news_server(_news_server_process) -> PolygonServer:
    """A server whose pages hold NEWS_PAGE items, reset (corpus, faults, log) for this test."""
    _news_server_process.reset()
    return _news_server_process


@pytest.fixture
def news(tmp_path, news_server) -> Connector:
    return Connector(tmp_path, news_server)


# --------------------------------------------------------------------------------------------
# an installed corpus with runs of equal seconds across page boundaries
# --------------------------------------------------------------------------------------------

# Configured in this order: an article about several of them belongs to the first one listed here.
CORPUS_TICKERS = ["MSFT", "AAPL", "TSLA"]
CORPUS_START = "2022-03-02"
CORPUS_NOW = utc(2022, 3, 4, 23, 0)


def corpus() -> list:
    """About 60 articles, 2022-03-01 to 2022-03-05, for MSFT, AAPL, TSLA and tickers that are not
    configured: runs of 2 to 7 articles in one second (longer than a page, and across the partition
    boundaries of multi-ticker articles), ids that do not sort in publication order, articles before
    the start and after the clock, and text that must come through unchanged."""
    articles = []
    serial = [0]

    def add(when: str, tickers, **fields):
        serial[0] += 1
        # ids out of publication order: the server breaks ties by id, so a run's order is by id.
        aid = fields.pop("id", "art-%02d-%s" % ((serial[0] * 37) % 101, "".join(t[0] for t in tickers)))
        articles.append({"id": aid, "published_utc": when, "tickers": list(tickers), **fields})

    # before the start: never sent
    add("2022-03-01T12:00:00Z", ["AAPL"])
    add("2022-03-01T23:59:59Z", ["MSFT", "AAPL"])
    # at the very start
    add("2022-03-02T00:00:00Z", ["TSLA"])
    # a run of 7 AAPL articles in one second, two of them about MSFT too (sent by MSFT's partition)
    for i in range(7):
        add("2022-03-02T14:30:00Z", ["AAPL", "MSFT"] if i in (2, 5) else ["AAPL"])
    add("2022-03-02T14:30:01Z", ["AAPL"])
    # runs of 4 and 5 in MSFT, one of them listing all three
    for i in range(4):
        add("2022-03-02T15:00:00Z", ["MSFT"])
    for i in range(5):
        add("2022-03-02T16:45:10Z", ["MSFT", "TSLA", "AAPL"] if i == 3 else ["MSFT"])
    # articles of tickers that are not configured, alone and beside configured ones
    add("2022-03-02T17:00:00Z", ["NVDA"])
    add("2022-03-02T17:00:00Z", ["NVDA", "TSLA"])
    add("2022-03-02T17:00:00Z", ["GOOGL", "AAPL"])
    # TSLA: a run of 6 in one second, with text that must come through byte for byte
    for i in range(6):
        add("2022-03-03T09:15:42Z", ["TSLA"],
            title='Tesla "Gigafactory" \\ update %d: Zürich, 東京, emoji \U0001F680, tab\t' % i)
    add("2022-03-03T09:15:43Z", ["TSLA"], keywords=[], insights=[], extra={"nested": {"a": [1, "x", True]}})
    # a run shared by all three partitions: each lists a different first configured ticker
    for i, tickers in enumerate([["TSLA"], ["AAPL", "TSLA"], ["TSLA", "MSFT"], ["AAPL"], ["MSFT"],
                                 ["TSLA", "AAPL", "MSFT"], ["AAPL"]]):
        add("2022-03-03T20:00:00Z", tickers)
    # single articles, then pairs
    for hour in range(10, 22, 3):
        add("2022-03-04T%02d:05:00Z" % hour, ["MSFT"])
        add("2022-03-04T%02d:20:00Z" % hour, ["AAPL"])
        add("2022-03-04T%02d:20:00Z" % hour, ["AAPL", "TSLA"])
    # the last second before the clock, the clock itself, and later: only the first is sent
    add("2022-03-04T22:59:59Z", ["MSFT"])
    add("2022-03-04T22:59:59Z", ["MSFT"])
    add(z(CORPUS_NOW), ["AAPL"])
    add("2022-03-05T10:00:00Z", ["TSLA"])
    ids = [a["id"] for a in articles]
    assert len(set(ids)) == len(ids)
    return articles


def install(server: PolygonServer, articles: list) -> list:
    answer = server.call("POST", "/_control/news", {"articles": articles})
    assert answer["count"] == len(articles)
    return answer["articles"]


@pytest.fixture
def corpus_news(news) -> Connector:
    """The news connector, with corpus() installed on its server."""
    install(news.server, corpus())
    return news


def corpus_config(server: PolygonServer) -> dict:
    return news_config(server, CORPUS_TICKERS, start_date=CORPUS_START)


def corpus_truth(server: PolygonServer) -> dict:
    server.set_clock(CORPUS_NOW)
    return news_truth(server, CORPUS_TICKERS, CORPUS_START, CORPUS_NOW)


# --------------------------------------------------------------------------------------------
# spec, check, discover
# --------------------------------------------------------------------------------------------

def test_news_spec(connector):
    result = connector.spec(flags=NEWS_FLAGS).assert_ok()
    [message] = result.messages
    spec = message["spec"]["connectionSpecification"]
    assert set(spec["required"]) == {"api_key", "tickers"}
    assert spec["properties"]["api_key"]["airbyte_secret"] is True
    assert spec["properties"]["tickers"]["type"] == "array"
    pattern = re.compile(spec["properties"]["start_date"]["pattern"])
    for good in ("2024-01-01", "2024-01-01T00:00:00Z", "2024-01-01T09:30:00-05:00", "2024-01-01T00:00:00.5Z"):
        assert pattern.search(good), good
    for bad in ("2024-1-1", "yesterday", "2024-01-01T00:00:00"):
        assert not pattern.search(bad), bad


def test_tickers_spec(connector):
    result = connector.spec(flags=TICKERS_FLAGS).assert_ok()
    [message] = result.messages
    spec = message["spec"]["connectionSpecification"]
    assert spec["required"] == ["api_key"]
    assert spec["properties"]["api_key"]["airbyte_secret"] is True


@pytest.mark.parametrize("flags, config", [
    (NEWS_FLAGS, lambda s: news_config(s, ["AAPL", "MSFT"])),
    (TICKERS_FLAGS, tickers_config),
], ids=["news", "tickers"])
def test_check_with_a_valid_key(connector, flags, config):
    result = connector.check(config(connector.server), flags=flags).assert_ok()
    assert result.connection_status == {"status": "SUCCEEDED"}
    # check asks with the key in the header, never in the URL
    [entry] = connector.server.log()
    assert entry["authorization_scheme"] == "Bearer" and not entry["api_key_in_query"]
    assert entry["status"] == 200


@pytest.mark.parametrize("key, status, words", [
    (UNKNOWN_KEY, 401, ["401", "API key", "api_key"]),
    (FORBIDDEN, 403, ["403", "not entitled"]),
    (None, 401, ["401", "not provided"]),
], ids=["unknown-key-401", "forbidden-key-403", "empty-key-401"])
@pytest.mark.parametrize("script", ["news", "tickers"])
def test_check_with_a_rejected_key_fails_with_a_useful_message(connector, script, key, status, words):
    flags, make = (NEWS_FLAGS, lambda s: news_config(s, ["AAPL"])) if script == "news" else \
        (TICKERS_FLAGS, tickers_config)
    config = make(connector.server)
    config["api_key"] = key if key is not None else ""
    if key:
        connector.secrets.append(key)   # never printed, in any form
    result = connector.check(config, flags=flags)
    assert result.returncode == 0, result.describe()
    assert result.connection_status["status"] == "FAILED", result.describe()
    message = result.connection_status["message"]
    for word in words:
        assert word in message, result.describe()
    assert [e["status"] for e in connector.server.log()] == [status]


@pytest.mark.parametrize("script", ["news", "tickers"])
def test_check_that_cannot_reach_the_server_says_so(connector, script, tmp_path):
    flags = NEWS_FLAGS if script == "news" else TICKERS_FLAGS
    config = news_config(connector.server, ["AAPL"]) if script == "news" else tickers_config(connector.server)
    config["base_url"] = "http://127.0.0.1:9"   # discard port: refused
    result = connector.check(config, flags=flags, timeout=60)
    assert result.connection_status["status"] == "FAILED", result.describe()
    assert "Cannot reach Polygon at http://127.0.0.1:9" in result.connection_status["message"]


def test_news_discover(connector):
    result = connector.discover(news_config(connector.server, ["AAPL"]), flags=NEWS_FLAGS).assert_ok()
    [message] = result.of("CATALOG")
    [stream] = message["catalog"]["streams"]
    assert stream["name"] == "news"
    assert sorted(stream["supported_sync_modes"]) == ["full_refresh", "incremental"]
    assert stream["source_defined_cursor"] is True
    assert stream["default_cursor_field"] == ["published_utc"]
    assert stream["source_defined_primary_key"] == [["id"]]
    assert stream.get("is_resumable", True) is True
    assert stream["json_schema"]["properties"]["published_utc"] == {"type": "string", "format": "date-time"}
    assert connector.server.log() == []   # discover asks the API nothing


def test_tickers_discover(connector):
    result = connector.discover(tickers_config(connector.server), flags=TICKERS_FLAGS).assert_ok()
    [message] = result.of("CATALOG")
    stream, details = message["catalog"]["streams"]
    assert stream["name"] == "tickers" and details["name"] == "ticker_details"
    assert details["supported_sync_modes"] == ["full_refresh"]
    assert details["source_defined_primary_key"] == [["ticker"]]
    assert stream["supported_sync_modes"] == ["full_refresh"]
    assert stream["source_defined_primary_key"] == [["ticker"]]
    assert stream["is_resumable"] is False
    assert not stream.get("source_defined_cursor")
    assert not stream.get("default_cursor_field")


@pytest.mark.parametrize("config, field", [
    ({"tickers": "AAPL"}, "tickers"),
    ({"tickers": ["AAPL", "BAD TICKER"]}, "tickers"),
    ({"tickers": ["AAPL"], "start_date": "03/01/2022"}, "start_date"),
    ({"tickers": ["AAPL"], "base_url": "ftp://example.com"}, "base_url"),
], ids=["tickers-not-an-array", "bad-ticker", "bad-start-date", "bad-base-url"])
def test_news_config_errors_name_the_field(connector, config, field):
    base = {"api_key": CANARY, "base_url": connector.server.base_url}
    result = connector.read({**base, **config}, catalog=NEWS_INCREMENTAL, flags=NEWS_FLAGS)
    assert result.returncode == 1, result.describe()
    [error] = result.errors
    assert error["failure_type"] == "config_error"
    assert field in error["message"], result.describe()
    assert connector.server.log() == []


def test_news_with_no_tickers_is_a_config_error_naming_tickers(connector):
    """The spec says minItems 1: check and read both say that tickers is empty."""
    config = news_config(connector.server, [])
    check = connector.check(config, flags=NEWS_FLAGS)
    assert check.connection_status["status"] == "FAILED", check.describe()
    assert "tickers" in check.connection_status["message"], check.describe()
    result = connector.read(config, catalog=NEWS_INCREMENTAL, flags=NEWS_FLAGS)
    assert result.returncode == 1, result.describe()
    [error] = result.errors
    assert error["failure_type"] == "config_error"
    assert "tickers" in error["message"], result.describe()


# --------------------------------------------------------------------------------------------
# news: one read against the default corpus
# --------------------------------------------------------------------------------------------

NOW = utc(2022, 3, 8, 18, 30)   # Tuesday 2022-03-08, 13:30 New York


@pytest.mark.parametrize("tickers, start", [
    (["AAPL", "MSFT", "GOOGL"], "2022-03-01"),
    (["MSFT", "AAPL"], "2022-03-02T09:30:00-05:00"),
    (["TSLA", "AMZN", "NFLX"], "2022-03-03T14:12:30Z"),
], ids=["3-tickers-date", "2-tickers-offset-datetime", "3-tickers-utc-datetime"])
def test_news_incremental_read_sends_every_article_once(news, tickers, start):
    config = news_config(news.server, tickers, start_date=start)
    result = read_news(news, config, NOW).assert_complete()
    truth = news_truth(news.server, tickers, start, NOW)
    assert len(truth) > 15, "the default corpus should have plenty here"
    assert_records_are(result, truth)
    # nothing outside [start, now)
    for data in result.data:
        assert instant(start if "T" in start else start + "T00:00:00Z") <= instant(data["published_utc"]) < NOW
    # articles listing several configured tickers: sent by the first one's partition, counted as
    # skipped by the others'
    listing = {t: [a for a in truth.values() if t in a["tickers"]] for t in tickers}
    shared = [a for a in truth.values() if sum(t in a["tickers"] for t in tickers) > 1]
    assert shared, "the corpus should have articles about several of these tickers"
    found = summaries(result)
    for ticker in tickers:
        owned = sum(1 for a in listing[ticker] if owner(a, tickers) == ticker)
        skipped = len(listing[ticker]) - owned
        if skipped:
            assert found.get(ticker) == (owned, skipped), (ticker, result.describe())
    assert tickers[0] not in found or found[tickers[0]][1] == 0
    # each partition asked for its ticker over [start, now) in ascending order, then paged through
    # next_url (pages of NEWS_PAGE articles)
    requests = [e for e in news.server.log() if e["path"] == NEWS_PATH]
    assert all(e["status"] == 200 and e["authorization_scheme"] == "Bearer" for e in requests)
    assert len(requests) >= len(truth) / NEWS_PAGE
    firsts = [urllib.parse.parse_qs(e["query"]) for e in requests if "cursor=" not in e["query"]]
    assert sorted(q["ticker"][0] for q in firsts) == sorted(tickers)
    for query in firsts:
        assert query["order"] == ["asc"] and query["sort"] == ["published_utc"], query
        assert instant(query["published_utc.gte"][0]) == instant(start if "T" in start else start + "T00:00:00Z")
        assert instant(query["published_utc.lt"][0]) == NOW
    # the final state: each partition at its last article
    cursors = partition_cursors(platform_state(None, result))
    for ticker in tickers:
        mine = [a["published_utc"] for a in truth.values() if owner(a, tickers) == ticker]
        assert instant(cursors[ticker]["published_utc"]) == instant(max(mine)), (ticker, cursors)


def test_news_full_refresh_sends_every_article_and_ignores_state(news):
    tickers = ["NVDA", "META"]
    config = news_config(news.server, tickers, start_date="2022-03-03")
    first = read_news(news, config, NOW).assert_complete()
    result = read_news(news, config, NOW, state=platform_state(None, first), catalog_=NEWS_FULL).assert_complete()
    assert_records_are(result, news_truth(news.server, tickers, "2022-03-03", NOW))


def test_news_lower_case_and_repeated_tickers_are_one_partition_each(news):
    config = news_config(news.server, ["aapl", "AAPL", "msft"], start_date="2022-03-04")
    result = read_news(news, config, NOW).assert_complete()
    assert_records_are(result, news_truth(news.server, ["AAPL", "MSFT"], "2022-03-04", NOW))
    assert sorted(partition_cursors(platform_state(None, result))) == ["AAPL", "MSFT"]


def test_news_without_start_date_reads_the_last_30_days(news):
    config = news_config(news.server, ["KO"], start_date=None)
    result = read_news(news, config, NOW).assert_complete()
    start = z(NOW - dt.timedelta(days=30))
    assert_records_are(result, news_truth(news.server, ["KO"], start, NOW))


def test_news_read_with_a_rejected_key_is_a_config_error(news):
    news.secrets.append(UNKNOWN_KEY)
    config = news_config(news.server, ["AAPL", "MSFT"], api_key=UNKNOWN_KEY)
    result = read_news(news, config, NOW)
    assert result.returncode == 1, result.describe()
    assert result.records == []
    [error] = result.errors
    assert error["failure_type"] == "config_error"
    assert "401" in error["message"] and "api_key" in error["message"], error


# --------------------------------------------------------------------------------------------
# news: exactly once across failures
# --------------------------------------------------------------------------------------------

def uninterrupted(connector: Connector) -> tuple:
    """The corpus read in one go: (its records' data, how many news requests it made)."""
    config = corpus_config(connector.server)
    truth = corpus_truth(connector.server)
    before = request_count(connector.server, NEWS_PATH)
    result = read_news(connector, config, CORPUS_NOW).assert_complete()
    assert_records_are(result, truth, " (uninterrupted)")
    requests = request_count(connector.server, NEWS_PATH) - before
    return result.data, requests


def test_corpus_runs_straddle_pages(corpus_news):
    """The corpus does what the exactly-once tests need: runs of one second longer than a page,
    whose articles are sent by several partitions, and ids out of publication order."""
    truth = corpus_truth(corpus_news.server)
    seconds = collections.Counter(a["published_utc"] for a in truth.values())
    assert max(seconds.values()) > 2 * NEWS_PAGE
    for ticker in CORPUS_TICKERS:
        listed = [a for a in corpus_news.server.call("GET", "/_control/news?ticker=" + ticker)]
        runs = collections.Counter(a["published_utc"] for a in listed)
        assert max(runs.values()) > NEWS_PAGE, ticker
    owners = collections.Counter(owner(a, CORPUS_TICKERS) for a in truth.values()
                                 if a["published_utc"] == "2022-03-03T20:00:00Z")
    assert set(owners) == set(CORPUS_TICKERS)
    data, requests = uninterrupted(corpus_news)
    assert requests >= len(truth) / NEWS_PAGE


def resume_until_complete(connector: Connector, config: dict, state: list, runs: list, limit: int = 30) -> list:
    """Reads (without faults) from state until a read completes; appends each Result to runs and
    returns the platform state at the end."""
    for _ in range(limit):
        result = read_news(connector, config, CORPUS_NOW, state=state)
        runs.append(result)
        state = platform_state(state, result)
        if result.returncode == 0:
            result.assert_complete()
            return state
        assert_failed_cleanly(result)
    pytest.fail(f"no read completed in {limit} runs")


def assert_failed_cleanly(result, failure_type: str | None = None) -> None:
    assert result.returncode == 1, result.describe()
    assert len(result.errors) == 1, result.describe()
    if failure_type:
        assert result.errors[0]["failure_type"] == failure_type, result.describe()
    assert result.statuses[-1] == "INCOMPLETE", result.describe()
    # the state of what the run sent comes before its TRACE error, and nothing after the error
    kinds = [m["type"] if m["type"] != "TRACE" else m["trace"]["type"] for m in result.messages]
    error_at = kinds.index("ERROR")
    assert "STATE" not in kinds[error_at:] and "RECORD" not in kinds[error_at:], result.describe()


def union_is(runs: list, expected: list, what: str) -> None:
    ids = [d["id"] for r in runs for d in r.data]
    assert duplicates(ids) == [], f"articles sent twice {what}"
    by_id = {d["id"]: d for r in runs for d in r.data}
    want = {d["id"]: d for d in expected}
    assert sorted(set(want) - set(by_id)) == [], f"articles lost {what}"
    assert sorted(set(by_id) - set(want)) == [], f"articles never expected {what}"
    assert by_id == want, f"articles changed {what}"


@slow_under_wrapper   # two or three reads per request of the uninterrupted read
def test_a_failure_at_any_request_loses_and_repeats_nothing(corpus_news):
    server = corpus_news.server
    config = corpus_config(server)
    expected, requests = uninterrupted(corpus_news)
    failed_at, inside_runs = [], 0
    for k in range(1, requests + 2):
        server.reset()
        install(server, corpus())
        server.faults(path=NEWS_PATH, fail_at_request=k, status=400)
        runs = [read_news(corpus_news, config, CORPUS_NOW, state=[])]
        first = runs[0]
        if k <= requests:
            assert_failed_cleanly(first, "config_error")
            assert "400" in first.errors[0]["message"], first.describe()
            failed_at.append(k)
        else:
            first.assert_complete()   # the fault lay past the read's last request
        state = platform_state([], first)
        if state and any("emitted_at_cursor" in c for c in partition_cursors(state).values()):
            inside_runs += 1
        if first.returncode:
            state = resume_until_complete(corpus_news, config, state, runs)
        union_is(runs, expected, f"(400 at request {k})")
        # the state at the end says every partition is done: one more read sends nothing
        server.faults(path=NEWS_PATH, fail_at_request=10 ** 6)
        again = read_news(corpus_news, config, CORPUS_NOW, state=state).assert_complete()
        assert again.records == [], f"(400 at request {k}): a read after the last one sent more"
    assert failed_at == list(range(1, requests + 1))
    # many of those failures left a partition inside a run of equal seconds
    assert inside_runs >= requests // 3, inside_runs


@slow_under_wrapper
@pytest.mark.parametrize("every", [6, 9])
def test_a_failure_in_every_run_still_completes_exactly_once(corpus_news, every):
    """Each run fails at its every-th request; the platform keeps resuming from the last state.
    One partition at a time (concurrency 1), so that each run makes progress before its failure:
    a resumed partition asks again from the second of its cursor, so it needs as many pages as
    the longest run of one second (7 articles: 3 pages) plus one request for each partition
    before it that is done, before it sends anything new."""
    server = corpus_news.server
    config = dict(corpus_config(server), concurrency=1)
    expected, _ = uninterrupted(corpus_news)
    runs, state = [], []
    for _ in range(60):
        server.faults(path=NEWS_PATH, fail_at_request=every, status=400)
        result = read_news(corpus_news, config, CORPUS_NOW, state=state)
        runs.append(result)
        state = platform_state(state, result)
        if result.returncode == 0:
            break
        assert_failed_cleanly(result, "config_error")
        if result.records:
            assert result.states, "a failed run that had emitted records printed no STATE\n" + result.describe()
    else:
        pytest.fail("no read completed in 60 runs")
    assert len(runs) > 2
    union_is(runs, expected, f"(a 400 at every {every}th request)")


@slow_under_wrapper
@pytest.mark.parametrize("fault", [
    {"status": 500, "retry_after": 0},
    {"status": 503, "retry_after": 0, "body": "html"},
    {"status": 429, "retry_after": 0},
], ids=["500", "503-html", "429"])
def test_a_retryable_failure_at_any_request_is_recovered_by_the_same_run(corpus_news, fault):
    server = corpus_news.server
    config = corpus_config(server)
    expected, requests = uninterrupted(corpus_news)
    for k in range(1, requests + 1):
        server.reset()
        install(server, corpus())
        server.faults(path=NEWS_PATH, fail_at_request=k, **fault)
        result = read_news(corpus_news, config, CORPUS_NOW).assert_complete()
        union_is([result], expected, f"({fault['status']} at request {k})")
        statuses = [e["status"] for e in server.log() if e["path"] == NEWS_PATH]
        assert statuses.count(fault["status"]) == 1 and len(statuses) == requests + 1, statuses
        warnings = [m["log"]["message"] for m in result.of("LOG") if m["log"]["level"] == "WARN"]
        assert any("retry 1 in 0.0 s" in w for w in warnings), warnings


def test_a_retryable_failure_without_retry_after_is_waited_out(corpus_news):
    """A 500 with no Retry-After at the second page: backoff, then the same run completes."""
    server = corpus_news.server
    config = dict(corpus_config(server), concurrency=1)
    expected, _ = uninterrupted(corpus_news)
    server.reset()
    install(server, corpus())
    server.faults(path=NEWS_PATH, fail_at_request=2, status=500)
    result = read_news(corpus_news, config, CORPUS_NOW).assert_complete()
    union_is([result], expected, "(500 at request 2)")


@pytest.mark.parametrize("kind", sample_under_wrapper(["garbage", "cut", "close", "truncate"], ["cut"]))
def test_a_broken_page_is_asked_for_again(corpus_news, kind):
    server = corpus_news.server
    config = dict(corpus_config(server), concurrency=1)
    expected, _ = uninterrupted(corpus_news)
    server.reset()
    install(server, corpus())
    fault = {kind + "_next": 1}
    server.faults(path=NEWS_PATH, skip_next=2, **fault)   # the third page
    result = read_news(corpus_news, config, CORPUS_NOW, timeout=60).assert_complete()
    union_is([result], expected, f"({fault})")


def test_retries_given_up_leave_a_state_that_resumes_exactly_once(corpus_news):
    """A server that keeps answering 503 after some pages: the read gives up (retry_max_seconds),
    fails with a transient_error after the state of what it sent, and the next read completes."""
    server = corpus_news.server
    config = dict(corpus_config(server), retry_max_seconds=1)
    expected, _ = uninterrupted(corpus_news)
    server.reset()
    install(server, corpus())
    server.faults(path=NEWS_PATH, fail_after=7, status=503)
    first = read_news(corpus_news, config, CORPUS_NOW)
    assert_failed_cleanly(first, "transient_error")
    assert first.records and first.states
    server.faults(path=NEWS_PATH, fail_after=None)
    runs = [first]
    resume_until_complete(corpus_news, config, platform_state([], first), runs)
    union_is(runs, expected, "(503 from the 8th request on)")


START_FORMS = {
    "utc": ("2022-03-02T14:30:00Z", "2022-03-02T14:30:00Z"),
    "lower-case": ("2022-03-02t14:30:00z", "2022-03-02T14:30:00Z"),
    "space-offset": ("2022-03-02 09:30:00-05:00", "2022-03-02T14:30:00Z"),
    "fraction": ("2022-03-02T14:30:00.5Z", "2022-03-02T14:30:01Z"),
    "offset": ("2022-03-02T09:30:01-05:00", "2022-03-02T14:30:01Z"),
    "no-seconds": ("2022-03-02T14:30Z", "2022-03-02T14:30:00Z"),
    "date": ("2022-03-02", "2022-03-02T00:00:00Z"),
}


@pytest.mark.parametrize("form", sample_under_wrapper(list(START_FORMS), ["fraction", "offset"]))
def test_news_start_date_forms(corpus_news, form):
    """Every form the spec's pattern admits starts the read at that instant, to the second: the
    corpus has 7 articles at 14:30:00 and one at 14:30:01."""
    start, first_second = START_FORMS[form]
    config = dict(corpus_config(corpus_news.server), start_date=start)
    result = read_news(corpus_news, config, CORPUS_NOW).assert_complete()
    truth = news_truth(corpus_news.server, CORPUS_TICKERS, first_second, CORPUS_NOW)
    assert_records_are(result, truth, f" (start_date {start})")
    assert min(d["published_utc"] for d in result.data) == first_second


def test_text_with_line_separators_comes_through_unchanged(news):
    """U+2028 and U+2029 are legal unescaped in JSON strings; each message must still be one line
    of stdout (split on "\\n" only, as the platform reads it: str.splitlines would split there)."""
    title = "a\u2028b\u2029c \\u2028 \x7f \x85 \x1c\x1d\x1e \x0b\x0c \U0001F600 \"quoted\" back\\slash"
    served = install(news.server, [{"id": "sep-1", "published_utc": "2022-03-03T10:00:00Z", "tickers": ["AAPL"],
                                    "title": title}])
    config = news_config(news.server, ["AAPL"], start_date="2022-03-03")
    result = news.run(*news.read_args(config, catalog=NEWS_INCREMENTAL, flags=NEWS_FLAGS), now=CORPUS_NOW,
                      protocol=False)
    assert result.returncode == 0, result.describe()
    assert result.stdout.endswith("\n")
    validator = message_validator()
    messages = []
    for line in result.stdout[:-1].split("\n"):
        message = json.loads(line)
        assert not list(validator.iter_errors(message)), line
        messages.append(message)
    [record] = [m["record"]["data"] for m in messages if m["type"] == "RECORD"]
    assert record == served[0]
    assert record["title"] == title


# --------------------------------------------------------------------------------------------
# news: incremental over time
# --------------------------------------------------------------------------------------------

SCHEDULE = [
    utc(2022, 3, 7, 9, 0),      # Monday morning UTC: the weekend's news
    utc(2022, 3, 7, 16, 0),     # the same day, hours later: a second of three shared articles
    utc(2022, 3, 7, 16, 0),     # again at the same instant: nothing new
    utc(2022, 3, 7, 23, 45),    # the same day, evening
    utc(2022, 3, 8, 23, 45),    # a day later
    utc(2022, 3, 9, 17, 5, 16),  # exactly the second of three articles: they are not final yet
    utc(2022, 3, 10, 13, 5),    # the next day
]
LOG_RANGE = re.compile(r"^news\[(?P<ticker>[^\]]+)\]: incremental sync from (?P<start>\S+) to (?P<end>\S+) ")


def read_ends(result) -> dict:
    """ticker -> the end of the range its partition read (the run's clock), from the LOG lines."""
    found = {}
    for message in result.of("LOG"):
        match = LOG_RANGE.match(message["log"]["message"])
        if match:
            found[match.group("ticker")] = instant(match.group("end"))
    return found


def test_news_over_time_each_read_sends_what_was_published_since(news):
    tickers = ["AAPL", "MSFT", "NVDA"]
    start = "2022-03-05"
    config = news_config(news.server, tickers, start_date=start)
    state, previous, union, sizes = [], None, [], []
    for now in SCHEDULE:
        result = read_news(news, config, now, state=state).assert_complete()
        ends = read_ends(result)
        assert sorted(ends) == sorted(tickers), result.describe()
        [end] = set(ends.values())
        # the read's end is its clock (under a wrapper the clock may have ticked a second or two)
        assert now <= end <= now + dt.timedelta(seconds=0 if not WRAPPED else 30), (now, end)
        truth = news_truth(news.server, tickers, start if previous is None else z(previous), end)
        assert_records_are(result, truth, f" at {now}")
        sizes.append(len(truth))
        today = [a for a in truth.values() if instant(a["published_utc"]).date() == now.date()]
        if now.hour >= 12 and (previous is None or previous < now):
            assert today, f"today's articles should arrive in today's read at {now}"
        union.extend(result.data)
        state = platform_state(state, result)
        previous = end
    assert sizes[2] == 0 and all(n > 0 for i, n in enumerate(sizes) if i != 2), sizes
    ids = [d["id"] for d in union]
    assert duplicates(ids) == []
    assert set(ids) == set(news_truth(news.server, tickers, start, previous))


def test_an_article_indexed_late_in_the_last_second_is_sent_next_time(news):
    """An article published in the same second as the last one a read sent, but indexed after
    that read: the next read must send it (and only it)."""
    tickers = ["MSFT", "AAPL"]
    articles = [a for a in corpus() if set(a["tickers"]) & set(tickers)]
    install(news.server, articles)
    config = news_config(news.server, tickers, start_date=CORPUS_START)
    first_now = utc(2022, 3, 3, 21, 0)   # just after the 20:00:00 run of the 3rd
    first = read_news(news, config, first_now).assert_complete()
    state = platform_state([], first)
    cursors = partition_cursors(state)
    last = {t: max(d["published_utc"] for d in first.data if owner(d, tickers) == t) for t in tickers}
    # both partitions ended in the run of 2022-03-03T20:00:00Z, so late-both (MSFT's) is in the
    # second of MSFT's cursor too
    assert last == {"MSFT": "2022-03-03T20:00:00Z", "AAPL": "2022-03-03T20:00:00Z"}, last
    assert {t: instant(c["published_utc"]) for t, c in cursors.items()} == \
        {t: instant(v) for t, v in last.items()}
    # indexed later, in the last second each partition sent: one for each partition, and one
    # listing both (MSFT's)
    late = [
        {"id": "late-msft", "published_utc": last["MSFT"], "tickers": ["MSFT"]},
        {"id": "late-aapl", "published_utc": last["AAPL"], "tickers": ["AAPL"]},
        {"id": "late-both", "published_utc": last["AAPL"], "tickers": ["AAPL", "MSFT"]},
        {"id": "zz-late-aapl", "published_utc": last["AAPL"], "tickers": ["AAPL"]},
        {"id": "00-late-aapl", "published_utc": last["AAPL"], "tickers": ["AAPL"]},
    ]
    served = {a["id"]: a for a in install(news.server, articles + late)}
    second_now = utc(2022, 3, 3, 22, 0)
    second = read_news(news, config, second_now, state=state).assert_complete()
    truth = news_truth(news.server, tickers, z(first_now), second_now)
    assert truth == {}, "nothing new was published between the reads"
    assert sorted(ids_of(second)) == sorted(a["id"] for a in late), \
        "the late articles, and only they, should be sent\n" + second.describe()
    for data in second.data:
        assert data == served[data["id"]]
    # and they are not sent a third time
    third = read_news(news, config, second_now, state=platform_state(state, second)).assert_complete()
    assert third.records == []


def test_a_read_that_stopped_inside_a_run_resumes_inside_it(corpus_news):
    """The state a failure leaves inside a run of equal seconds names the ids sent at that second;
    the resumed read asks again from that second and skips only those."""
    server = corpus_news.server
    config = dict(corpus_config(server), tickers=["AAPL"], concurrency=1)
    server.faults(path=NEWS_PATH, fail_at_request=3, status=400)   # pages 1 and 2 only
    first = read_news(corpus_news, config, CORPUS_NOW)
    assert_failed_cleanly(first, "config_error")
    cursor = partition_cursors(platform_state([], first))["AAPL"]
    assert instant(cursor["published_utc"]) == instant("2022-03-02T14:30:00Z"), cursor
    sent_at_cursor = sorted(d["id"] for d in first.data if d["published_utc"] == "2022-03-02T14:30:00Z")
    assert sorted(k[0] for k in cursor["emitted_at_cursor"]) == sent_at_cursor
    second = read_news(corpus_news, config, CORPUS_NOW, state=platform_state([], first)).assert_complete()
    [request] = [e for e in server.log() if e["path"] == NEWS_PATH][3:4]
    query = urllib.parse.parse_qs(request["query"])
    assert instant(query["published_utc.gte"][0]) == instant("2022-03-02T14:30:00Z"), query
    union_is([first, second], list(news_truth(server, ["AAPL"], CORPUS_START, CORPUS_NOW).values()), "")


# --------------------------------------------------------------------------------------------
# tickers
# --------------------------------------------------------------------------------------------

TICKERS_NOW = utc(2022, 3, 8, 18, 30)


def active_stocks(server: PolygonServer) -> dict:
    """ticker -> the record the script should make of it: the listing filtered as the script asks
    (market=stocks, active=true), each item's declared fields."""
    return {t["ticker"]: {f: t[f] for f in TICKER_FIELDS if f in t}
            for t in server.call("GET", "/_control/tickers")
            if t["market"] == "stocks" and t["active"] is True}


def read_tickers(connector, now=TICKERS_NOW, catalog_=TICKERS_FULL, **kw):
    return connector.read(tickers_config(connector.server), catalog=catalog_, flags=TICKERS_FLAGS, now=now, **kw)


@pytest.mark.parametrize("now", [TICKERS_NOW, utc(2020, 6, 1, 12, 0), utc(2025, 7, 1, 12, 0)],
                         ids=["2022", "2020", "2025"])
def test_tickers_full_refresh_is_the_active_stocks(paged_connector, now):
    result = read_tickers(paged_connector, now=now).assert_complete()
    paged_connector.server.set_clock(now)
    expected = active_stocks(paged_connector.server)
    got = [d["ticker"] for d in result.data]
    assert duplicates(got) == []
    assert got == sorted(expected), "the active stocks, in ticker order"
    for data in result.data:
        assert data == expected[data["ticker"]]
    assert result.states == [], "a stream without a cursor has no state"
    requests = [e for e in paged_connector.server.log() if e["path"] == TICKERS_PATH]
    assert len(requests) == -(-len(expected) // PAGE_SIZE), "one request per page of next_url"
    first = urllib.parse.parse_qs(requests[0]["query"])
    assert first["market"] == ["stocks"] and first["active"] == ["true"]
    assert all(e["authorization_scheme"] == "Bearer" and not e["api_key_in_query"] for e in requests)


def test_tickers_of_an_installed_universe(connector):
    universe = [
        {"ticker": "AAA", "market": "stocks", "name": "Triple A"},
        {"ticker": "BRK.A", "market": "stocks", "name": "Berkshire \"A\" — Ünïcode"},
        {"ticker": "GONE", "market": "stocks", "active": False, "delisted_utc": "2021-01-04T00:00:00Z"},
        {"ticker": "LATER", "market": "stocks", "list_date": "2030-01-02"},
        {"ticker": "X:BTCUSD", "market": "crypto"},
        {"ticker": "OTCX", "market": "otc"},
    ]
    connector.server.call("POST", "/_control/tickers", {"tickers": universe})
    result = read_tickers(connector).assert_complete()
    connector.server.set_clock(TICKERS_NOW)
    expected = active_stocks(connector.server)
    assert sorted(expected) == ["AAA", "BRK.A"]
    assert {d["ticker"]: d for d in result.data} == expected


DETAILS_FULL = {"streams": TICKERS_FULL["streams"] + catalog("ticker_details", "full_refresh",
                                                          primary_key=[["ticker"]])["streams"]}
UNIVERSE = [
    {"ticker": "AAA", "market": "stocks", "name": "Triple A"},
    {"ticker": "BRK.A", "market": "stocks", "name": "Berkshire Hathaway"},
    {"ticker": "CCC", "market": "stocks", "name": "Triple C"},
    {"ticker": "GONE", "market": "stocks", "active": False, "delisted_utc": "2021-01-04T00:00:00Z"},
]


def test_ticker_details_are_read_for_each_ticker_of_the_parent_stream(connector):
    connector.server.call("POST", "/_control/tickers", {"tickers": UNIVERSE})
    result = read_tickers(connector, catalog_=DETAILS_FULL).assert_complete()
    by_stream = collections.defaultdict(dict)
    for m in result.of("RECORD"):
        by_stream[m["record"]["stream"]][m["record"]["data"]["ticker"]] = m["record"]["data"]
    assert sorted(by_stream["tickers"]) == sorted(by_stream["ticker_details"]) == ["AAA", "BRK.A", "CCC"]
    for ticker, data in by_stream["ticker_details"].items():
        assert data["name"] == by_stream["tickers"][ticker]["name"] and data["market"] == "stocks"
        assert {"list_date", "locale", "active", "currency_name"} <= set(data)
    paths = [e["path"] for e in connector.server.log()]
    assert sorted(p for p in paths if p.startswith(TICKERS_PATH + "/")) == [
        TICKERS_PATH + "/AAA", TICKERS_PATH + "/BRK.A", TICKERS_PATH + "/CCC"]
    # the parent read once for the tickers stream and once for the children's partitions
    assert paths.count(TICKERS_PATH) == 2
    assert any("3 partitions from 3 records of parent stream 'tickers'" in m for m in result.log_messages()), \
        result.describe()


def test_a_delisted_ticker_answering_404_is_skipped_with_a_warning(connector):
    connector.server.call("POST", "/_control/tickers", {"tickers": UNIVERSE})
    connector.server.faults(path=TICKERS_PATH + "/BRK.A", fail_next=1, status=404)
    result = read_tickers(connector, catalog_=DETAILS_FULL).assert_complete()
    details = sorted(m["record"]["data"]["ticker"] for m in result.of("RECORD")
                     if m["record"]["stream"] == "ticker_details")
    assert details == ["AAA", "CCC"]
    warnings = [m for m in result.log_messages("WARN") if "ignored" in m]
    assert len(warnings) == 1 and "ticker_details[BRK.A]: HTTP 404" in warnings[0], result.describe()


def test_tickers_incremental_is_a_config_error_saying_there_is_no_cursor(connector):
    incremental = catalog("tickers", "incremental", primary_key=[["ticker"]])
    incremental["streams"][0]["cursor_field"] = ["ticker"]
    result = read_tickers(connector, catalog_=incremental)
    assert result.returncode == 1, result.describe()
    [error] = result.errors
    assert error["failure_type"] == "config_error", error
    assert "cursor" in error["message"] and "tickers" in error["message"], error
    assert result.records == []
    assert connector.server.log() == []


@pytest.mark.parametrize("status", [400, 404])
def test_tickers_failure_between_pages_fails_the_read(paged_connector, status):
    server = paged_connector.server
    server.faults(path=TICKERS_PATH, fail_at_request=2, status=status)
    result = read_tickers(paged_connector)
    assert result.returncode == 1, result.describe()
    [error] = result.errors
    assert error["failure_type"] == "config_error", error
    assert str(status) in error["message"], error
    assert result.states == [], "no STATE for a stream without a cursor"
    assert result.statuses[-1] == "INCOMPLETE"
    assert len(result.records) == PAGE_SIZE, "the first page was sent before the failure"
    statuses = [e["status"] for e in server.log() if e["path"] == TICKERS_PATH]
    assert statuses == [200, status]


@pytest.mark.parametrize("fault", [{"status": 500, "retry_after": 0}, {"status": 429, "retry_after": 0}],
                         ids=["500", "429"])
def test_tickers_retryable_failure_between_pages_is_recovered(paged_connector, fault):
    server = paged_connector.server
    server.faults(path=TICKERS_PATH, fail_at_request=3, **fault)
    result = read_tickers(paged_connector).assert_complete()
    server.set_clock(TICKERS_NOW)
    expected = active_stocks(server)
    assert [d["ticker"] for d in result.data] == sorted(expected)
    assert result.states == []


def test_tickers_read_with_a_forbidden_key_is_a_config_error(connector):
    connector.secrets.append(FORBIDDEN)
    config = tickers_config(connector.server, api_key=FORBIDDEN)
    result = connector.read(config, catalog=TICKERS_FULL, flags=TICKERS_FLAGS, now=TICKERS_NOW)
    assert result.returncode == 1, result.describe()
    [error] = result.errors
    assert error["failure_type"] == "config_error"
    assert "403" in error["message"] and "tickers" in error["message"], error


# --------------------------------------------------------------------------------------------
# both: the key
# --------------------------------------------------------------------------------------------

def test_the_key_never_reaches_a_url_or_the_output(news):
    """Every request carries the key in the Authorization header only (next_url pages too), and
    the Connector's checks found no form of it in any output line."""
    config = news_config(news.server, ["AAPL", "MSFT"], start_date="2022-03-01", api_key=KEY)
    news.secrets.append(KEY)
    read_news(news, config, NOW).assert_complete()
    news.server.call("POST", "/_control/tickers", {"tickers": [
        {"ticker": "T%02d" % i, "market": "stocks"} for i in range(10)]})
    news.read(tickers_config(news.server, api_key=KEY), catalog=TICKERS_FULL, flags=TICKERS_FLAGS,
              now=NOW).assert_complete()
    log = news.server.log()
    assert len(log) > 10
    for entry in log:
        assert entry["authorization_scheme"] == "Bearer" and not entry["api_key_in_query"], entry
        assert entry["key_state"] == "valid", entry


def test_a_parent_without_records_gives_its_child_no_partitions(connector):
    connector.server.call("POST", "/_control/tickers", {"tickers": UNIVERSE[3:]})
    result = read_tickers(connector, catalog_=DETAILS_FULL).assert_complete()
    assert result.data == []
    assert [t["stream_status"]["status"] for t in result.traces("STREAM_STATUS")
            if t["stream_status"]["stream_descriptor"]["name"] == "ticker_details"] == ["STARTED", "COMPLETE"]


@pytest.mark.parametrize("edit,message", [
    ('parent = { stream = "tickers", field = "ticker" }', None),
    ('parent = { stream = "tickrs", field = "ticker" }', "no stream is called 'tickrs' (did you mean tickers?)"),
    ('parent = { stream = "ticker_details", field = "ticker" }', "is its own parent"),
    ('parent = { stream = "tickers", feld = "ticker" }', "unknown key 'feld' (did you mean field?)"),
    ('parent = { stream = "tickers" }', "needs stream (the parent stream's name) and field"),
    ('parent = { stream = "tickers", field = "ticker" }, partitions = function() return { "A" } end',
     "has both partitions and parent"),
])
def test_a_mistaken_parent_is_refused_when_the_script_loads(connector, tmp_path, edit, message):
    text = TICKERS_SCRIPT.read_text(encoding="utf-8")
    original = 'parent = { stream = "tickers", field = "ticker" }'
    assert original in text
    script = tmp_path / "tickers.lua"
    script.write_text(text.replace(original, edit), encoding="utf-8")
    result = connector.run("--script", script, "spec")
    if message is None:
        result.assert_ok()
    else:
        assert result.returncode != 0 and message in result.errors[-1]["message"], result.describe()
