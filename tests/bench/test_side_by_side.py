"""The bench's side-by-side runs the tutorial's source as its users run it, against a server that
pages like Polygon, and gives it and source-lua the same inputs."""
import datetime
import json
import os
import subprocess
import urllib.request

import pytest

import bench

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BINARY = os.path.abspath(os.environ.get("SOURCE_LUA_BINARY") or os.path.join(ROOT, "build", "source-lua"))


@pytest.fixture(scope="module")
def now():
    return datetime.datetime.now(datetime.timezone.utc)


@pytest.fixture(scope="module")
def server(now):
    s = bench.serve(now)
    yield s
    s.shutdown()


def get(url):
    with urllib.request.urlopen(url, timeout=10) as answer:
        return json.loads(answer.read())


def aggregates(server, now, ticker, query):
    today = now.date().isoformat()
    return get(f"http://127.0.0.1:{server.port}/v2/aggs/ticker/{ticker}/range/1/day/{bench.first_day(now)}/{today}"
               f"?{query}")


def test_server_pages_like_polygon(server, now):
    whole = aggregates(server, now, "T00", "adjusted=true&sort=asc&limit=50000")
    assert whole["resultsCount"] > 2400 and "next_url" not in whole
    first = aggregates(server, now, "T00", f"sort=asc&limit=120&apiKey={bench.KEY}")
    assert first["resultsCount"] == 120 and first["results"] == whole["results"][:120]
    # As the real API: the next page's address is the server's, without the key.
    assert first["next_url"].startswith(f"http://127.0.0.1:{server.port}/v2/aggs/ticker/T00/")
    assert "apiKey" not in first["next_url"] and bench.KEY not in first["next_url"]
    second = get(first["next_url"])
    assert second["results"] == whole["results"][120:240]


def run_tutorial(server, work, *args):
    env = bench.side_by_side_env(f"http://127.0.0.1:{server.port}")
    proc = subprocess.run([bench.PYTHON, bench.TUTORIAL, *args], capture_output=True, text=True, env=env, cwd=work,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    return [json.loads(line) for line in proc.stdout.splitlines()]


def test_tutorial_reads_one_page_with_the_key_in_the_url(server, now, tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"api_key": bench.KEY, "stock_ticker": "T01"}))
    day_before = datetime.date.fromisoformat(bench.first_day(now)) - datetime.timedelta(days=1)
    (tmp_path / "state.json").write_text(json.dumps({"stock_prices": {"date": day_before.isoformat()}}))
    catalog = os.path.join(ROOT, "catalogs", "incremental_configured_catalog.json")
    messages = run_tutorial(server, tmp_path, "read", "--config", "config.json", "--catalog", catalog,
                            "--state", "state.json")
    records = [m["record"]["data"] for m in messages if m["type"] == "RECORD"]
    bars = aggregates(server, now, "T01", "limit=50000")["results"][:120]
    assert [r["price"] for r in records] == [bar["c"] for bar in bars]
    assert messages[-1] == {"type": "STATE", "state": {"data": {"stock_prices": {"date": records[-1]["date"]}}}}
    asked = [t for t in server.targets if "/T01/" in t and "limit=120" in t]
    assert len(asked) == 1 and f"apiKey={bench.KEY}" in asked[0]


def test_tutorial_spec_and_check(server, tmp_path):
    spec = run_tutorial(server, tmp_path, "spec")
    assert spec[0]["type"] == "SPEC"
    assert spec[0]["spec"]["connectionSpecification"]["properties"]["api_key"]["airbyte_secret"] is True
    (tmp_path / "config.json").write_text(json.dumps({"api_key": bench.KEY, "stock_ticker": "T00"}))
    status = run_tutorial(server, tmp_path, "check", "--config", "config.json")
    assert status == [{"type": "CONNECTION_STATUS", "connectionStatus": {"status": "SUCCEEDED"}}]


def test_side_by_side_gives_both_sides_the_same_work(server, now, tmp_path):
    tickers = ["T02", "T03", "T04"]
    results = bench.bench_side_by_side(BINARY, server.port, bench.first_day(now), str(tmp_path), 1, tickers)
    by_case = {what: timed for what, _, timed in results}
    assert by_case["spec"]["tutorial"].messages["SPEC"] == by_case["spec"]["source-lua"].messages["SPEC"] == 1
    for side in ("tutorial", "source-lua"):
        assert by_case["check (one request)"][side].messages["CONNECTION_STATUS SUCCEEDED"] == 1
        assert by_case["discover"][side].messages["CATALOG"] == 1
    week = by_case["read, one ticker, the tutorial's default (the last 7 days, full refresh)"]
    # A week holds 3 to 5 trading days; the tutorial's week ends on the host's date, source-lua's
    # on New York's, which may be a day apart.
    assert all(2 <= week[side].messages["RECORD"] <= 6 for side in week)
    recent = by_case[f"read, 3 tickers from a state {bench.SAME_WORK_DAYS} days back (incremental: every bar fits "
                     f"the tutorial's one page)"]
    assert 3 * 90 < recent["tutorial"].messages["RECORD"] == recent["source-lua"].messages["RECORD"] < 3 * 120
    history = by_case[f"read, 3 tickers from a state {bench.YEARS} years back (incremental)"]
    assert history["tutorial"].messages["RECORD"] == 3 * bench.TUTORIAL_PAGE
    bars = sum(aggregates(server, now, t, "limit=50000")["resultsCount"] for t in tickers)
    assert history["source-lua"].messages["RECORD"] == bars


def burner(seconds):
    """A process that spends seconds of CPU and prints one RECORD message."""
    return [bench.PYTHON, "-c", "import time\nend = time.process_time() + %r\nwhile time.process_time() < end: pass\n"
            "print('{\"type\": \"RECORD\"}')" % seconds]


def test_timed_batch_counts_the_batch_wall_and_every_process_cpu():
    """Lower bounds only, which the burners guarantee however busy the machine is: every
    process's CPU is counted, and two at a time take at least two burns of wall."""
    timed = bench.timed_batch([burner(0.15)] * 4, None, 2)
    assert timed.messages["RECORD"] == 4
    assert timed.cpu >= 4 * 0.15
    assert timed.wall >= 2 * 0.15


def test_a_run_that_fails_or_does_other_work_stops_the_side_by_side(server, now, tmp_path):
    sides = bench.SideBySide(BINARY, server.port, bench.first_day(now), str(tmp_path))
    with pytest.raises(bench.SideBySideFailed, match="failed"):
        sides.measure({"tutorial": [[bench.PYTHON, "-c", "raise SystemExit(3)"]]}, 1)
    flip = tmp_path / "flip"
    # Prints a RECORD on its first run only.
    quietly_less = [bench.PYTHON, "-c", f"import os\nif not os.path.exists({str(flip)!r}):\n"
                    f"    open({str(flip)!r}, 'w').close(); print('{{\"type\": \"RECORD\"}}')"]
    with pytest.raises(bench.SideBySideFailed, match="runs differ"):
        sides.measure({"tutorial": [quietly_less]}, 2)


def test_a_side_that_prints_nothing_stops_the_side_by_side(server, now, tmp_path):
    # /bin/true as the connector: it exits 0 and prints no SPEC.
    with pytest.raises(bench.SideBySideFailed, match="spec: source-lua did not print SPEC"):
        bench.bench_side_by_side("/bin/true", server.port, bench.first_day(now), str(tmp_path), 1, ["T05"])


def test_a_run_that_hangs_is_killed(monkeypatch):
    monkeypatch.setattr(bench, "SIDE_BY_SIDE_TIMEOUT", 0.3)
    with pytest.raises(bench.SideBySideFailed, match="still ran after"):
        bench.timed_batch([[bench.PYTHON, "-c", "import time; time.sleep(30)"]], None, 1)


def timed(wall, records):
    return bench.Timed(wall, wall, {"RECORD": records})


def test_lines_compare_walls_only_for_the_same_work():
    same = bench.side_by_side_line("read", 5, {"tutorial": timed(2.0, 100), "source-lua": timed(0.02, 100)})
    assert "100x faster" in same and "records/s" not in same and "(median of 5)" in same
    other = bench.side_by_side_line("read", 5, {"tutorial": timed(4.0, 4000), "source-lua": timed(0.05, 100000)})
    assert "faster" not in other
    assert "records/s: tutorial 1,000, source-lua 2,000,000 (2,000x)" in other
    spec = bench.side_by_side_line("spec", 15, {"tutorial": timed(0.2, 0), "source-lua": timed(0.004, 0)})
    assert "50x faster" in spec and "records" not in spec
