#!/usr/bin/env python3
"""`make bench`: figures for source-lua, printed, never asserted.

1. `spec` wall time: median of many runs.
2. A full-refresh sync of 40 tickers x 10 years of daily bars against a local server that serves
   pre-rendered pages from memory (so that the server is not the bottleneck): wall time,
   records/s, MB/s of protocol output, peak RSS.
3. The transfer floor: the same pages fetched by curl with the same concurrency into /dev/null,
   and the ratio of the sync to it. Syncs and floor alternate, round by round; best and median
   of the rounds are printed, the verdict is on the median of each round's sync over the same
   round's floor.
4. The emission rate in isolation: a page already in memory decoded, mapped by the script and
   written as RECORD messages, on one core; and the same for a declared mapper with dotted paths
   on a page of HubSpot-like contacts (tests/bench/contacts.lua).
5. The scale scenario (tests/bench/scale.py): 10,000 tickers x one year of daily bars, an initial
   read and a resume a trading day later, with the connector's clock fixed: wall, peak RSS,
   output, records and the STATE messages of each read, and the server's CPU and a curl floor
   beside them.
6. Side by side with the tutorial's Python source (tests/bench/tutorial/source.py), given the
   same inputs against the same local server: spec, check, discover, the tutorial's 7-day read
   of one ticker, and the 40 tickers from a state 160 days back (the same records on both
   sides) and ten years back, one process a ticker for the tutorial. Wall, CPU and records.
7. A parent stream (tests/bench/parent_bench.py): 1,000 children of a 10-page parent list, wall
   against a curl floor (the parent pages in turn, then the children); target <= 1.5x.
Targets (issue 7): spec < 5 ms; sync <= 1.5x the floor; emission >= 1,000,000 records/s, and as
many from the nested-path page; peak RSS <= 24 MB. The scale scenario's, in both reads: STATE
bytes <= two full (the largest)
STATEs + 5% of the output bytes; peak RSS <= 64 MB.

`--compare OTHER` prints none of that: it tells two builds apart, with the /dev/null syncs of
--binary and OTHER run in turn, each pair in the opposite order to the last, against the same
server. A difference of a millisecond needs a few hundred pairs on a shared VM.
"""
import argparse
import collections
import concurrent.futures
import datetime
import json
import os
from pathlib import Path
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PYTHON = "/usr/bin/python3"
sys.path.insert(0, os.path.join(ROOT, "tests", "server"))
sys.path.insert(0, os.path.join(ROOT, "tests"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import polygon_server  # noqa: E402
import parent_bench  # noqa: E402
from page_server import PageServer  # noqa: E402
from lua_loop import lua_loop_script  # noqa: E402
import scale  # noqa: E402

TICKERS = ["T%02d" % i for i in range(40)]
YEARS = 10
CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY", "8"))
KEY = "sl-bench-key"
PAGE_PATH = re.compile(r"^/v2/aggs/ticker/[^/]+/range/1/day/[^/]+/[^/]+$")
# The script's window_days: a sync reads a ticker's range in windows of this many days, one
# request each. The bench's ten years are this many days through today, so that each ticker is
# one request at any hour: from 16:00 in New York the sync's range ends today, before then
# yesterday, and one day more would take every ticker a second request for today's bar alone.
WINDOW_DAYS = 3650
# One run of a measured command: wall and CPU seconds, peak RSS in MB, and when piped, the bytes
# and RECORD messages it wrote.
Run = collections.namedtuple("Run", "wall rss cpu size records")
RECORD_START = b'{"type":"RECORD"'


def drain(fd, count_records):
    """Reads fd to its end in 1 MB reads into one reused buffer; returns the bytes read and, when
    count_records, the RECORD messages among them (else 0). The timed runs do not count: scanning
    25 MB for the marker is the reader's work, done on the cores the sync runs on, as keeping
    the output was (25 MB of fresh memory, a page fault per 4 KB, then joined: ~4 ms of CPU)."""
    buf = bytearray(1 << 20)
    view = memoryview(buf)
    size = records = 0
    keep = len(RECORD_START) - 1
    carry = b""  # the stream's last bytes before this read, where a marker may have begun
    while True:
        n = os.readv(fd, [view])
        if not n:
            return size, records
        size += n
        if count_records:
            # Markers across the boundary, then those inside this read.
            records += (carry + bytes(view[:min(n, keep)])).count(RECORD_START) + buf.count(RECORD_START, 0, n)
            carry = (carry + bytes(view[:n]))[-keep:] if n < keep else bytes(view[n - keep:n])


def first_day(now):
    """The first day of the bench's ten years (see WINDOW_DAYS)."""
    return (now.date() - datetime.timedelta(days=WINDOW_DAYS - 1)).isoformat()


def serve(now):
    """The page server on a free port. It answers an aggregates request as the test server
    (and Polygon) would, for the ticker, the days and the options (limit, sort, a next_url's
    cursor) the request asks (Polygon's limit of 50000 fits ten years, ~2510 bars, in one page;
    the tutorial's 120 gives a page and a next_url), rendering each page at its first request
    and sending it from memory after. The key, in the header or in apiKey, is not checked."""
    def page_key(target):
        url = urllib.parse.urlsplit(target)
        if not PAGE_PATH.match(url.path):
            return None
        options = tuple(sorted((name, value) for name, value in urllib.parse.parse_qsl(url.query)
                               if name != "apiKey"))
        return url.path, options

    def render(key):
        path, options = key
        try:
            _, body = polygon_server.answer_aggregates(path, dict(options), now,
                                                       base_url=f"http://127.0.0.1:{server.port}")
        except polygon_server.ApiError:
            return None
        body["request_id"] = "bench"
        return polygon_server.to_json(body).encode()
    server = PageServer({}, page_key, render)
    return server


def run_measured(argv, to_pipe, count_records=False):
    """Runs argv; returns a Run. The peak RSS comes from GNU time, whose child is forked from a
    small process: a child forked from Python inherits Python's high-water mark. The CPU time is
    what wait4 reports for GNU time and the process it waited for. to_pipe: stdout is a pipe read
    here in 1 MB reads (as a platform reads a connector, without parsing; count_records: its
    RECORD messages are counted too); else /dev/null, as curl writes the floor's pages."""
    with tempfile.NamedTemporaryFile("r") as rss_file, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(["/usr/bin/time", "-f", "%M", "-o", rss_file.name, *argv],
                                stdout=subprocess.PIPE if to_pipe else subprocess.DEVNULL, stderr=err)
        size = records = 0
        if to_pipe:
            size, records = drain(proc.stdout.fileno(), count_records)
            proc.stdout.close()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            err.seek(0)
            raise SystemExit(f"{argv[0]} failed ({proc.returncode}): {err.read().decode()[-2000:]}")
        return Run(wall, int(rss_file.read().split()[-1]) / 1024.0, usage.ru_utime + usage.ru_stime, size,
                   records)


def median_ms(argv, runs):
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(argv, stdout=subprocess.DEVNULL, check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def bench_spec(binary, runs):
    """Median wall time of `spec`, and of /bin/true: what starting any process costs from here."""
    return median_ms([binary, "spec"], runs), median_ms(["/bin/true"], runs)


def sync_argv(binary, port, first, work):
    config = os.path.join(work, "config.json")
    with open(config, "w") as f:
        json.dump({"api_key": KEY, "stock_ticker": ",".join(TICKERS), "start_date": first,
                   "base_url": f"http://127.0.0.1:{port}", "concurrency": CONCURRENCY}, f)
    catalog = os.path.join(ROOT, "catalogs", "fullrefresh_configured_catalog.json")
    return [binary, "read", "--config", config, "--catalog", catalog]


def floor_argv(port, targets):
    """curl fetching targets, the requests the sync made (so the very pages it read)."""
    urls = [f"http://127.0.0.1:{port}{target}" for target in targets]
    argv = ["curl", "-s", "--fail", "--parallel", "--parallel-max", str(CONCURRENCY),
            "-H", f"Authorization: Bearer {KEY}"]
    for url in urls:
        argv += ["-o", "/dev/null", url]
    return argv


def first_sync(server, sync):
    """An untimed piped sync whose RECORD messages are counted; the server renders its pages
    meanwhile, and the floor then asks for what it asked."""
    counted = run_measured(sync, True, count_records=True)
    if len(server.targets) != len(TICKERS):
        raise SystemExit(f"the sync made {len(server.targets)} requests for {len(TICKERS)} tickers: "
                         f"{server.targets[:3]}...")
    return counted


def bench_transfers(server, sync, rounds):
    """The sync through a pipe, the sync to /dev/null and the floor, one after another in each
    round, so that all three see the machine alike (a shared VM drifts by 2x within minutes).
    Returns {name: [Run, ...]}."""
    floor = floor_argv(server.port, server.targets)
    runs = {"pipe": [], "null": [], "floor": []}
    for _ in range(rounds):
        runs["pipe"].append(run_measured(sync, True))
        runs["null"].append(run_measured(sync, False))
        runs["floor"].append(run_measured(floor, False))
    return runs


def bench_emit(emit_bench, script, page, seconds):
    """records/s of emit_bench on one core; its messages go to /dev/null, its figure to stderr."""
    err = subprocess.run(["taskset", "-c", "0", emit_bench, script, page, str(seconds)], stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, check=True).stderr.decode()
    return float(re.search(r"records_per_second (\d+)", err).group(1))


CONTACTS_SCRIPT = os.path.join(ROOT, "tests", "bench", "contacts.lua")
CONTACTS = 1000


def write_contacts_page(path):
    """A page of CONTACTS HubSpot-like contacts (crm/v3/objects/contacts: most fields under
    "properties", instants as ISO texts with milliseconds, updatedAt ascending), ~314 bytes each."""
    first, last = ["Ann", "Bob", "Chlo\u00e9", "Dmitri", "Eve", "Farah"], ["Lee", "Martin", "Okafor", "Nguyen"]
    start = datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc)

    def iso(t):
        return t.strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (t.microsecond // 1000)
    items = []
    for i in range(CONTACTS):
        created = start + datetime.timedelta(minutes=37 * i, milliseconds=(i * 331) % 1000)
        updated = start + datetime.timedelta(days=60, minutes=41 * i, milliseconds=(i * 667) % 1000)
        given, family = first[i % len(first)], last[i % len(last)]
        items.append({"id": str(1000 + i), "properties": {
            "company": ["Acme", "Globex", "Initech", None][i % 4], "createdate": iso(created),
            "email": f"{given.lower()}.{family.lower()}{i}@example.com", "firstname": given,
            "hs_object_id": str(1000 + i), "lastmodifieddate": iso(updated), "lastname": family},
            "createdAt": iso(created), "updatedAt": iso(updated), "archived": False})
    page = {"results": items, "paging": {"next": {"after": str(1000 + CONTACTS),
                                                  "link": "https://api.hubapi.com/crm/v3/objects/contacts?after=2000"}}}
    with open(path, "w", encoding="utf-8") as f:
        f.write(json.dumps(page, separators=(",", ":"), ensure_ascii=False))


def bench_nested_emit(emit_bench, work, seconds):
    """records/s of the contacts page mapped by the declared mapper and by the same mapping as a
    Lua loop."""
    page = os.path.join(work, "contacts.json")
    write_contacts_page(page)
    loop = os.path.join(work, "contacts_loop.lua")
    with open(CONTACTS_SCRIPT, encoding="utf-8") as f:
        text = f.read()
    assert text.count('local PARSE = "declared"') == 1
    with open(loop, "w", encoding="utf-8") as f:
        f.write(text.replace('local PARSE = "declared"', 'local PARSE = "loop"'))
    return bench_emit(emit_bench, CONTACTS_SCRIPT, page, seconds), bench_emit(emit_bench, loop, page, seconds)


def mean_and_error(values):
    """Mean and standard error of the mean."""
    return statistics.mean(values), statistics.stdev(values) / len(values) ** 0.5


def compare(sync_a, sync_b, pairs):
    """Paired /dev/null syncs of two builds; returns (runs of a, runs of b)."""
    runs = ([], [])
    for i in range(pairs):
        for which in ((0, 1) if i % 2 else (1, 0)):
            runs[which].append(run_measured((sync_a, sync_b)[which], False))
    return runs


def print_comparison(names, runs):
    for name, r in zip(names, runs):
        print(f"{name}: CPU median {statistics.median(run.cpu for run in r) * 1000:.1f} ms, wall best "
              f"{min(run.wall for run in r) * 1000:.1f} ms, median {statistics.median(run.wall for run in r) * 1000:.1f} ms")
    for what in ("cpu", "wall"):
        diffs = [(getattr(b, what) - getattr(a, what)) * 1000 for a, b in zip(*runs)]
        mean, error = mean_and_error(diffs)
        print(f"second - first, {what}: mean {mean:+.2f} +- {error:.2f} ms (standard error), median "
              f"{statistics.median(diffs):+.2f} ms, over {len(diffs)} pairs")


def print_timeline(server, sync, floor, rounds):
    """For the fastest of rounds runs of each: when each request reached the server and how long
    its answer took to write, in ms from the process's start. Shows whether the server or the
    client sets the pace (an answer written in 0.2 ms went whole into the socket's buffer)."""
    for name, argv in (("sync", sync), ("floor", floor)):
        best = None
        for _ in range(rounds):
            server.served.clear()
            start = time.perf_counter()
            subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
            wall = time.perf_counter() - start
            server.wait_served(len(TICKERS), timeout=1)  # the last answers' notes may lag the exit
            if best is None or wall < best[0]:
                best = (wall, sorted((s - start, e - s) for s, e in server.served))
        wall, served = best
        print(f"{name}: {wall * 1000:.1f} ms; requests at (ms): " + " ".join(f"{s * 1000:.0f}" for s, _ in served))
        print(f"{name}: answers written in (ms): " + " ".join(f"{d * 1000:.1f}" for _, d in served))


# The tutorial's connector (tests/bench/tutorial/source.py), run as its users run it.
TUTORIAL = os.path.join(os.path.dirname(os.path.abspath(__file__)), "tutorial", "source.py")
TUTORIAL_PAGE = 120  # the tutorial asks for limit=120 and never follows next_url
# Days back of the state for the read that both sides can do whole: fewer trading days than one
# of the tutorial's pages holds (~110 of them).
SAME_WORK_DAYS = 160
SIDE_BY_SIDE_TIMEOUT = 120
# Both sides talk to the local server directly: libcurl and requests would both take a proxy
# from these.
PROXY_VARIABLES = {"http_proxy", "https_proxy", "all_proxy", "no_proxy"}
Timed = collections.namedtuple("Timed", "wall cpu messages")


def count_messages(output):
    """The messages of a connector's stdout by type, whatever its JSON spacing; a CONNECTION_STATUS
    is counted under its status too ("CONNECTION_STATUS SUCCEEDED")."""
    counts = collections.Counter()
    for line in output.splitlines():
        if line.strip():
            message = json.loads(line)
            counts[message.get("type")] += 1
            if message.get("type") == "CONNECTION_STATUS":
                counts["CONNECTION_STATUS " + message["connectionStatus"]["status"]] += 1
    return counts


def side_by_side_env(base_url):
    """The environment of both sides: the tutorial's API address, and no proxy variable."""
    env = {name: value for name, value in os.environ.items() if name.lower() not in PROXY_VARIABLES}
    env["TUTORIAL_API_URL"] = base_url
    return env


class SideBySideFailed(Exception):
    """A run of the side-by-side failed, hung or did not do the work the others did."""


def run_to_file(argv, env, out, err):
    """Runs argv with stdout into the file out: a sink that costs both sides the same, where a
    pipe would make the bench's reader part of what is timed. The tutorial's requests have no
    timeout of their own, so a timer kills a run that hangs; subprocess's own timeout would not
    do: it polls with sleeps of up to 50 ms, which added 1-4 ms to a 4 ms spec."""
    proc = subprocess.Popen(argv, stdout=out, stderr=err, env=env)
    killed = []
    timer = threading.Timer(SIDE_BY_SIDE_TIMEOUT, lambda: killed.append(proc.kill()))
    timer.start()
    try:
        returncode = proc.wait()
    finally:
        timer.cancel()
    if killed:
        raise SideBySideFailed(f"{argv[:3]} still ran after {SIDE_BY_SIDE_TIMEOUT} s")
    if returncode != 0:
        err.seek(0)
        raise SideBySideFailed(f"{argv[:3]} failed ({returncode}): {err.read().decode()[-2000:]}")


def timed_batch(argvs, env, concurrency):
    """Runs argvs, concurrency at a time; the wall and CPU (user + sys of all of them) of the whole
    batch and the messages of all of them (counted once the clock has stopped)."""
    files = [(tempfile.TemporaryFile(), tempfile.TemporaryFile()) for _ in argvs]
    try:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        if len(argvs) == 1:  # no pool to start
            run_to_file(argvs[0], env, *files[0])
        else:
            with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
                list(pool.map(lambda job: run_to_file(job[0], env, *job[1]), zip(argvs, files)))
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
        messages = collections.Counter()
        for out, _ in files:
            out.seek(0)
            messages += count_messages(out.read())
        return Timed(wall, cpu, messages)
    finally:
        for pair in files:
            for f in pair:
                f.close()


class SideBySide:
    """The tutorial's source and source-lua given the same inputs against the same local server:
    the Airbyte commands a user runs, and reads of the bench's 40 tickers. The tutorial reads one ticker per process (its config holds one), so the 40 run as 40
    processes, as many at once as source-lua's concurrency."""

    def __init__(self, binary, port, first, work):
        self.binary = binary
        self.base_url = f"http://127.0.0.1:{port}"
        self.env = side_by_side_env(self.base_url)
        self.work = work
        self.first = first
        self.files = 0
        self.catalogs = {mode: os.path.join(ROOT, "catalogs", f"{mode}_configured_catalog.json")
                         for mode in ("fullrefresh", "incremental")}

    def write_json(self, value):
        self.files += 1
        path = os.path.join(self.work, f"side_by_side_{self.files}.json")
        with open(path, "w") as f:
            json.dump(value, f)
        return path

    def commands(self, command, tickers, since=None):
        """{"source-lua": [argv], "tutorial": [argv, ...]} for one Airbyte command; a read is
        incremental from since (a day: the state's cursor is the day before, in the tutorial's
        own form, which source-lua reads too), else a full refresh. Each config is the
        tutorial's (api_key, stock_ticker), source-lua's with its local server and, for the
        incremental read, since as start_date: source-lua starts at the later of start_date and
        the day after the state's cursor (its default start_date is 7 days back, as the
        tutorial's window); the tutorial ignores start_date."""
        common = {"api_key": KEY} if since is None else {"api_key": KEY, "start_date": since}
        state = None
        if since is not None:
            cursor = datetime.date.fromisoformat(since) - datetime.timedelta(days=1)
            state = self.write_json({"stock_prices": {"date": cursor.isoformat()}})

        def args(config):
            if command == "spec":
                return []
            extra = ["--config", self.write_json(config)]
            if command == "read":
                mode = "fullrefresh" if state is None else "incremental"
                extra += ["--catalog", self.catalogs[mode]] + ([] if state is None else ["--state", state])
            return extra
        ours = dict(common, stock_ticker=",".join(tickers), base_url=self.base_url, concurrency=CONCURRENCY)
        return {"source-lua": [[self.binary, command, *args(ours)]],
                "tutorial": [[PYTHON, TUTORIAL, command, *args(dict(common, stock_ticker=t))] for t in tickers]}

    def measure(self, commands, runs):
        """Median wall and CPU of each side over runs, and its messages, which every run must
        repeat (a run that read nothing or failed quietly would time no work). The sides take
        turns by blocks, not run by run: a Python process just before would leave the caches
        cold for source-lua's few milliseconds, which is no platform's case, and the VM's drift
        moves a ratio of 10x or more by little."""
        timed = {}
        for side, argvs in commands.items():
            runs_of_side = [timed_batch(argvs, self.env, CONCURRENCY) for _ in range(runs)]
            for run in runs_of_side[1:]:
                if run.messages != runs_of_side[0].messages:
                    raise SideBySideFailed(f"{side}'s runs differ: {dict(runs_of_side[0].messages)} then "
                                           f"{dict(run.messages)}")
            timed[side] = Timed(statistics.median(t.wall for t in runs_of_side),
                                statistics.median(t.cpu for t in runs_of_side), runs_of_side[0].messages)
        return timed


def bench_side_by_side(binary, port, first, work, runs, tickers=TICKERS):
    """[(what, runs, {side: Timed})] for the commands of the tutorial's own use, a read both
    sides do whole, and the bench's sync (of tickers from first), which the tutorial cannot."""
    sides = SideBySide(binary, port, first, work)
    one = tickers[:1]
    recent = (datetime.date.fromisoformat(first) + datetime.timedelta(days=WINDOW_DAYS - SAME_WORK_DAYS)).isoformat()
    history = max(1, runs // 3)  # the tutorial's 40 processes take seconds a run
    # (what, commands, runs, the message each process must print: a failed check, say, would
    # time an error; a read's records are compared when printed)
    cases = [("spec", sides.commands("spec", one), runs, "SPEC"),
             ("check (one request)", sides.commands("check", one), runs, "CONNECTION_STATUS SUCCEEDED"),
             ("discover", sides.commands("discover", one), runs, "CATALOG"),
             ("read, one ticker, the tutorial's default (the last 7 days, full refresh)",
              sides.commands("read", one), runs, None),
             (f"read, {len(tickers)} tickers from a state {SAME_WORK_DAYS} days back (incremental: every bar fits "
              f"the tutorial's one page)", sides.commands("read", tickers, recent), history, None),
             (f"read, {len(tickers)} tickers from a state {YEARS} years back (incremental)",
              sides.commands("read", tickers, first), history, None)]
    results = []
    for what, commands, n, expected in cases:
        # Untimed, so that the server renders the pages the timed runs ask for, and, taken in
        # the opposite order to the timed blocks, so that source-lua's runs follow a run of its
        # own rather than a Python process or the 40 tickers' output.
        for side, timed in sides.measure(dict(reversed(commands.items())), 1).items():
            if expected and timed.messages[expected] != len(commands[side]):
                raise SideBySideFailed(f"{what}: {side} did not print {expected}: {dict(timed.messages)}")
        results.append((what, n, sides.measure(commands, n)))
    return results


def side_by_side_line(what, runs, timed):
    """One case's figures. Walls are compared as a speed only where both sides did the same
    work (the same RECORD messages); else records/s are."""
    tutorial, ours = timed["tutorial"], timed["source-lua"]
    theirs, mine = tutorial.messages["RECORD"], ours.messages["RECORD"]
    line = (f"  {what}: tutorial {tutorial.wall * 1000:,.1f} ms, source-lua {ours.wall * 1000:,.1f} ms; CPU: "
            f"tutorial {tutorial.cpu * 1000:,.1f} ms, source-lua {ours.cpu * 1000:,.1f} ms")
    if theirs or mine:
        line += f"; records: tutorial {theirs:,}, source-lua {mine:,}"
    if theirs == mine:
        line += f"; {tutorial.wall / ours.wall:,.0f}x faster"
    elif theirs:
        line += (f"; records/s: tutorial {theirs / tutorial.wall:,.0f}, source-lua {mine / ours.wall:,.0f} "
                 f"({mine / ours.wall / (theirs / tutorial.wall):,.0f}x)")
    return line + f" (median of {runs})  [for comparison]"


def print_side_by_side(results):
    version = subprocess.run([PYTHON, "-c", "import requests; print(requests.__version__)"], capture_output=True,
                             text=True).stdout.strip()
    print(f"side by side with the tutorial's Python source ({os.path.relpath(TUTORIAL, ROOT)}, {PYTHON}, requests "
          f"{version}), the same inputs against the same local server (the tutorial reads at most "
          f"{TUTORIAL_PAGE} bars a ticker: it does not follow next_url):")
    for what, runs, timed in results:
        print(side_by_side_line(what, runs, timed))


def paired_ratio(runs, floors):
    """The median and the quartiles of each round's wall over the same round's floor, a second
    apart: the VM's speed drifts by 30% within minutes, and a best of each can pair a lucky sync
    with an unlucky floor (or the reverse)."""
    ratios = [r.wall / f.wall for r, f in zip(runs, floors)]
    quartiles = statistics.quantiles(ratios, n=4)
    return statistics.median(ratios), (quartiles[0], quartiles[2])


def verdict(ok):
    return "meets target" if ok else "MISSES target"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--binary", default=os.path.join(ROOT, "build", "source-lua"))
    parser.add_argument("--emit-bench", default=os.path.join(ROOT, "build", "emit-bench"))
    parser.add_argument("--spec-runs", type=int, default=200)
    parser.add_argument("--emit-seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=15, help="rounds of (piped sync, sync, floor)")
    parser.add_argument("--compare", metavar="OTHER", help="only compare the sync of --binary with OTHER's")
    parser.add_argument("--pairs", type=int, default=300, help="pairs of syncs for --compare")
    parser.add_argument("--tutorial-runs", type=int, default=15,
                        help="runs of each command side by side with the tutorial's source (0: none)")
    parser.add_argument("--scale-tickers", type=int, default=scale.TICKERS,
                        help="tickers of the scale scenario's reads (0: no scale scenario)")
    parser.add_argument("--timeline", action="store_true",
                        help="only print when each request of the fastest sync and floor reached the server")
    args = parser.parse_args()
    binary = os.path.abspath(args.binary)

    now = datetime.datetime.now(datetime.timezone.utc)
    server = serve(now)
    with tempfile.TemporaryDirectory() as work:
        sync = sync_argv(binary, server.port, first_day(now), work)
        counted = first_sync(server, sync)
        pages = [server.body(target) for target in server.targets]
        if args.timeline:
            print_timeline(server, sync, floor_argv(server.port, server.targets), args.rounds)
            server.shutdown()
            return
        if args.compare:
            other = [os.path.abspath(args.compare), *sync[1:]]
            print_comparison((binary, other[0]), compare(sync, other, args.pairs))
            server.shutdown()
            return
        spec_ms, spawn_ms = bench_spec(binary, args.spec_runs)
        runs = bench_transfers(server, sync, args.rounds)
        page = os.path.join(work, "page.json")
        with open(page, "wb") as f:
            f.write(pages[0])
        emit_bench = os.path.abspath(args.emit_bench)
        emit = bench_emit(emit_bench, os.path.join(ROOT, "scripts", "stock_prices.lua"), page, args.emit_seconds)
        loop = bench_emit(emit_bench, str(lua_loop_script(Path(work) / "lua_loop.lua")), page, args.emit_seconds)
        nested, nested_loop = bench_nested_emit(emit_bench, work, args.emit_seconds)
    server.shutdown()

    page_mb = sum(len(p) for p in pages) / 1e6
    print(f"spec: median {spec_ms:.2f} ms over {args.spec_runs} runs, of which {spawn_ms:.2f} ms is starting any "
          f"process from Python here (/bin/true)  [{verdict(spec_ms < 5)}: < 5 ms]")
    records, size = counted.records, counted.size
    best = {name: min(run.wall for run in r) for name, r in runs.items()}
    median = {name: statistics.median(run.wall for run in r) for name, r in runs.items()}
    cpu = {name: statistics.median(run.cpu for run in r) for name, r in runs.items()}
    rss = max(run.rss for run in runs["pipe"])
    null_rss = max(run.rss for run in runs["null"])
    wall = best["pipe"]
    print(f"sync: {len(TICKERS)} tickers x {YEARS} years, concurrency {CONCURRENCY}, through a pipe: {records} "
          f"records in {wall:.3f} s (best of {args.rounds}; median {median['pipe']:.3f} s) = {records / wall:,.0f} "
          f"records/s, {size / 1e6 / wall:.1f} MB/s of messages ({page_mb:.1f} MB of pages), peak RSS "
          f"{rss:.1f} MB  [{verdict(rss <= 24)}: <= 24 MB]")
    print(f"sync, the same to /dev/null: {best['null']:.3f} s (median {median['null']:.3f} s), peak RSS "
          f"{null_rss:.1f} MB")
    ratio, quartiles = paired_ratio(runs["null"], runs["floor"])
    piped, _ = paired_ratio(runs["pipe"], runs["floor"])
    print(f"transfer floor: curl, same {len(TICKERS)} pages, --parallel-max {CONCURRENCY}, to /dev/null: "
          f"{best['floor']:.3f} s (median {median['floor']:.3f} s); sync/floor = {ratio:.2f}x to /dev/null "
          f"(median of the {args.rounds} rounds' ratios, quartiles {quartiles[0]:.2f}-{quartiles[1]:.2f}x; "
          f"bests: {best['null'] / best['floor']:.2f}x), {piped:.2f}x through a pipe  "
          f"[{verdict(ratio <= 1.5)}: <= 1.5x]")
    # Why the ratio is what it is: the CPU each run needs against the cores it may use.
    cores = len(os.sched_getaffinity(0))
    print(f"CPU time (user + sys, median of the rounds): sync to /dev/null {cpu['null'] * 1000:.1f} ms, floor "
          f"{cpu['floor'] * 1000:.1f} ms; on {cores} cores a sync using the median CPU needs at least "
          f"{cpu['null'] / cores * 1000:.1f} ms of wall, every core busy all along  [for comparison]")
    print(f"emission: {emit:,.0f} records/s on one core (the script's parse(): declared records mapped from the "
          f"page's text, written as RECORD messages)  [{verdict(emit >= 1e6)}: >= 1,000,000]")
    print(f"emission, same mapping as a Lua loop over response.body (Lua tables): {loop:,.0f} records/s "
          f"on one core  [for comparison]")
    print(f"declared mapper on a nested-path page: {nested:,.0f} records/s on one core ({CONTACTS:,} HubSpot-like "
          f"contacts, 9 fields, 5 of them by dotted path into properties, 3 datetimes checked, written as RECORD "
          f"messages)  [{verdict(nested >= 1e6)}: >= 1,000,000]")
    print(f"nested-path page, same mapping as a Lua loop over response.body: {nested_loop:,.0f} records/s on one "
          f"core  [for comparison]")
    sys.stdout.flush()
    if args.scale_tickers:
        run_scale(binary, args.scale_tickers)
    print("\n".join(parent_bench.run(binary, CONCURRENCY)))
    sys.stdout.flush()
    if args.tutorial_runs:
        run_side_by_side(binary, now, args.tutorial_runs)


def run_scale(binary, tickers):
    """After the targets' figures, so that a failure here cannot take them away."""
    try:
        results = scale.run(binary, tickers, concurrency=CONCURRENCY)
    except scale.ScaleFailed as failure:
        print(f"scale: not measured: {failure}")
    else:
        print("\n".join(scale.lines(results, CONCURRENCY)))
    sys.stdout.flush()


def run_side_by_side(binary, now, runs):
    """After the targets' figures, so that a failure here cannot take them away. A server of its
    own: the floor's requests are the ones the first sync made."""
    server = serve(now)
    try:
        with tempfile.TemporaryDirectory() as work:
            print_side_by_side(bench_side_by_side(binary, server.port, first_day(now), work, runs))
    except SideBySideFailed as failure:
        print(f"side by side with the tutorial's Python source: not measured: {failure}")
    finally:
        server.shutdown()


if __name__ == "__main__":
    main()
