"""The bench's scale scenario: its page server answers as Polygon would, its reader counts what a
whole read would, and a tiny run (200 tickers) gives the figures and targets of the real one."""
import datetime
import json
import os
import random
import threading
import zlib

import pytest

import bench
import scale

polygon_server = scale.polygon_server

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BINARY = os.path.abspath(os.environ.get("SOURCE_LUA_BINARY") or os.path.join(ROOT, "build", "source-lua"))
TINY = 200


# --- the reader --------------------------------------------------------------------------------

def whole(data):
    """What OutputScan must find, from the whole stream at once."""
    lines = data.split(b"\n")
    states = [line + b"\n" for line in lines[:-1] if line.startswith(scale.STATE_START)]
    if lines[-1].startswith(scale.STATE_START):
        states.append(lines[-1])
    return {"size": len(data), "records": data.count(scale.RECORD_START), "states": len(states),
            "state_bytes": sum(map(len, states)), "largest_state": max(map(len, states), default=0),
            "last_state": states[-1] if states else b""}


def scanned(scan):
    return {name: getattr(scan, name) for name in ("size", "records", "states", "state_bytes", "largest_state",
                                                   "last_state")}


LINES = [b'{"type":"RECORD","record":{"data":{"a":"{\\"type\\":\\"STATE\\"}"}}}\n', b'{"type":"LOG","log":{}}\n',
         b'{"type":"STATE","state":{"x":1}}\n',
         b'{"type":"STATE","state":{"tickers":{' + b'"T":1,' * 300 + b'"U":2}}}\n',
         b'{"type":"RECORD"}\n', b"\n"]


@pytest.mark.parametrize("seed", range(60))
def test_scan_counts_what_a_whole_read_would(seed):
    rng = random.Random(seed)
    data = b"".join(rng.choice(LINES) for _ in range(rng.randint(0, 200)))
    if rng.random() < 0.3:
        data = data.rstrip(b"\n")  # a stream that ends without its newline
    scan = scale.OutputScan()
    i = 0
    while i < len(data):
        k = rng.choice([1, 2, 3, 7, 15, 16, 17, 40, 500, 5000])
        # Pieces in a reused buffer longer than the piece, as drain_scan reads them.
        buf = bytearray(data[i:i + k]) + b"garbage"
        scan.feed(buf, min(k, len(data) - i))
        i += k
    assert scanned(scan.finish()) == whole(data)


def test_drain_scan_reads_a_pipe_to_its_end():
    data = b"".join(LINES * 2000)
    read_end, write_end = os.pipe()

    def write():
        with os.fdopen(write_end, "wb") as f:
            f.write(data)
    writer = threading.Thread(target=write)
    writer.start()
    try:
        scan = scale.drain_scan(read_end)
    finally:
        writer.join()
        os.close(read_end)
    assert scanned(scan) == whole(data)


# --- the server's pages ---------------------------------------------------------------------------

NOW = scale.NOW
SERVER_URL = "http://127.0.0.1:1"


def page(target, ticker="T00042"):
    splicer = scale.PageSplicer(SERVER_URL, NOW)
    return splicer(target.replace("{t}", ticker))


def polygon(target, ticker):
    """The test server's answer to target for ticker, as a dict."""
    path, _, query = target.replace("{t}", ticker).partition("?")
    options = dict(p.split("=", 1) for p in query.split("&") if p)
    _, body = polygon_server.answer_aggregates(path, options, NOW, base_url=SERVER_URL)
    body["request_id"] = "bench"
    return body


YEAR = "/v2/aggs/ticker/{t}/range/1/day/2024-06-05/2025-06-05?adjusted=true&sort=asc&limit=50000"


def test_a_page_is_its_variants_with_the_tickers_name():
    body = json.loads(page(YEAR))
    variant = "V%02d" % (zlib.crc32(b"T00042") % scale.VARIANTS)
    expected = polygon(YEAR, variant)
    assert body == dict(expected, ticker="T00042")
    assert list(body) == list(expected)  # the API's order of members
    assert body["resultsCount"] == 251 and "next_url" not in body


def test_pages_that_page_on_or_have_no_data_are_rendered_whole():
    paged = YEAR.replace("limit=50000", "limit=120")
    assert json.loads(page(paged)) == polygon(paged, "T00042")
    assert "/ticker/T00042/" in json.loads(page(paged))["next_url"]
    assert json.loads(page(YEAR, "NODATA")) == polygon(YEAR, "NODATA")
    assert "results" not in json.loads(page(YEAR, "NODATA"))


def test_what_the_api_rejects_or_does_not_serve_is_a_404():
    assert page(YEAR.replace("2024-06-05", "2026-01-01")) is None  # to before from: a 400
    assert page("/v3/reference/tickers") is None


def test_the_page_follows_the_clock():
    splicer = scale.PageSplicer(SERVER_URL, NOW)
    before = json.loads(splicer(YEAR.replace("{t}", "T00001")))
    splicer.now = scale.resume_instant(NOW)
    after = json.loads(splicer(YEAR.replace("{t}", "T00001").replace("2025-06-05?", "2025-06-06?")))
    assert after["resultsCount"] == before["resultsCount"] + 1


def test_dates():
    assert scale.one_year_before(datetime.date(2024, 2, 29)) == datetime.date(2023, 2, 28)
    # Thursday 17:30 New York, then Friday; Friday's next trading day is Monday.
    assert scale.resume_instant(NOW) == NOW + datetime.timedelta(days=1)
    friday = NOW + datetime.timedelta(days=1)
    assert scale.resume_instant(friday) == friday + datetime.timedelta(days=3)
    assert polygon_server.to_new_york(NOW).hour == 17  # after the close


# --- the targets -----------------------------------------------------------------------------------

def a_read(**fields):
    base = dict(what="initial", now=NOW, wall=1.0, rss=20.0, cpu=1.0, size=1_000_000, records=10, expected=10,
                states=3, state_bytes=50_000, largest_state=1_000, last_state=b"", reader_cpu=0.1, server_cpu=0.1,
                answers=10, tickers=10)
    base.update(fields)
    return scale.Read(**base)


def test_targets():
    # 2 x 1,000 + 5% of 1,000,000 = 52,000 bytes; 64 MB.
    assert scale.state_limit(a_read()) == 52_000
    assert scale.targets_met(a_read(state_bytes=52_000, rss=64.0)) == {"state": True, "rss": True}
    assert scale.targets_met(a_read(state_bytes=52_001, rss=64.1)) == {"state": False, "rss": False}


# --- a tiny run ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny():
    if not os.path.exists(BINARY):
        pytest.fail(f"{BINARY} is missing: run `make all` first")
    return scale.run(BINARY, TINY)


def test_tiny_run_reads_every_bar_once_then_the_new_one(tiny):
    (initial, initial_floor), (resume, resume_floor) = tiny
    days = len(polygon_server.trading_days(datetime.date(2024, 6, 5), datetime.date(2025, 6, 5)))
    assert initial.records == initial.expected == TINY * days
    assert resume.records == resume.expected == TINY
    # One request a ticker in each read, and the floor asked the same ones.
    assert initial.answers == resume.answers == initial_floor.answers == resume_floor.answers == TINY
    for r in (initial, resume):
        assert r.wall > 0 and r.cpu > 0 and r.rss > 1 and r.server_cpu > 0
        assert r.size > r.state_bytes >= r.largest_state > 0 and r.states >= 1


def test_tiny_run_resumes_from_the_initial_reads_last_state(tiny):
    (initial, _), (resume, _) = tiny
    first = json.loads(initial.last_state)["state"]["stream"]["stream_state"]
    last = json.loads(resume.last_state)["state"]["stream"]["stream_state"]
    assert first["tickers"] == {name: {"date": "2025-06-05"} for name in scale.ticker_names(TINY)}
    assert last["tickers"] == {name: {"date": "2025-06-06"} for name in scale.ticker_names(TINY)}
    # The resume's STATE is a full one, the size of the initial read's last.
    assert abs(resume.largest_state - len(initial.last_state)) < 100


def test_tiny_run_prints_each_reads_figures_and_verdicts(tiny):
    printed = scale.lines(tiny, 8)
    assert printed[0].startswith(f"scale: {TINY} tickers x 1 year")
    for (r, _), line in zip(tiny, printed[1::2]):
        met = scale.targets_met(r)
        assert f"{r.records:,} records in" in line and "NOT the" not in line
        assert f"STATE: {r.states:,} messages, {r.state_bytes / 1e6:,.2f} MB" in line
        assert f"the largest {r.largest_state / 1e6:,.3f} MB" in line
        assert f"[{scale.verdict(met['state'])}: STATE bytes <= 2 largest + 5% of output = " \
               f"{scale.state_limit(r) / 1e6:,.2f} MB]" in line
        assert f"peak RSS {r.rss:.1f} MB  [{scale.verdict(met['rss'])}: <= 64 MB]" in line
    for (r, fl), line in zip(tiny, printed[2::2]):
        assert f"{r.answers:,} answers" in line and f"the same {fl.answers:,} requests" in line


def test_the_bench_prints_the_scenario(capsys):
    bench.run_scale(BINARY, 40)
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith("scale: 40 tickers x 1 year") and len(printed) == 5
    assert sum(line.count("target: ") for line in printed) == 4  # two targets in each read


def test_a_read_that_fails_is_reported_not_raised(capsys, tmp_path):
    failing = tmp_path / "failing"
    failing.write_text("#!/bin/sh\necho nope >&2\nexit 3\n")
    failing.chmod(0o755)
    bench.run_scale(str(failing), 3)
    assert capsys.readouterr().out.startswith("scale: not measured: ")
