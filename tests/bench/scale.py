#!/usr/bin/env python3
"""The scale scenario of `make bench`: 10,000 tickers x one year of daily bars, an initial read and
a resume a trading day later.

The connector's clock is fixed with libfaketime (as tests/e2e does), the page server's is set to
the same instant: the initial read runs at NOW (after the 16:00 close in New York) from
start_date one year before, without state; the resume from the initial read's last STATE (as
the platform passes it: a JSON list of the state messages' `state`), a trading day later, so
that each ticker has one new bar. For each read: wall time, peak RSS of the connector (GNU
time), its CPU, output bytes, records, and the STATE messages: their count, total bytes (each
line with its newline) and the largest ("full") one. Targets, in both reads: STATE bytes at most
two full STATEs plus 5% of the output bytes; peak RSS at most 64 MB.

The pages: a year of one ticker is one page (Polygon's limit is 50000 bars). Rendering a page
with the test server's code takes ~7 ms, 70 s for 10,000 tickers, so the server renders a page
for each (range, options, clock) once for each of VARIANTS made-up tickers and answers a ticker
with one of them, its own name spliced in (a page is the same bytes as Polygon's answer for the
variant, the ticker's name aside); pages that page on (next_url) or tickers without data are
rendered whole. Nothing is kept per ticker. The server runs in a process of its own (this file
with --serve), so that it neither shares the GIL with the reader of the connector's output nor
hides its CPU in the bench's: its CPU during each read is printed, and the floor (curl fetching
the read's very requests, --parallel-max the read's concurrency) shows what the server and the
loopback can do without the connector. Before the timed reads, the same two reads of one ticker
of each variant, untimed, have the server render the pages it splices.

`make bench` runs it after the targets' figures (`bench.py --scale-tickers 0` leaves it out);
alone: `/usr/bin/python3 tests/bench/scale.py [--binary B] [--tickers N]`.
"""
import argparse
import collections
import datetime
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
import urllib.parse
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
PYTHON = "/usr/bin/python3"
sys.path.insert(0, os.path.join(ROOT, "tests", "server"))
sys.path.insert(0, HERE)
import polygon_server  # noqa: E402
from page_server import PageServer  # noqa: E402

TICKERS = 10000
# Thursday 2025-06-05, 17:30 in New York: after the close, so that the day's bar is published.
NOW = datetime.datetime(2025, 6, 5, 21, 30, tzinfo=datetime.timezone.utc)
KEY = "sl-bench-key"
FAKETIME_LIB = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"
CATALOG = os.path.join(ROOT, "catalogs", "incremental_configured_catalog.json")
RSS_TARGET_MB = 64
STATE_FULL_STATES = 2
STATE_OUTPUT_SHARE = 0.05
VARIANTS = 32
RECORD_START = b'{"type":"RECORD"'
STATE_START = b'{"type":"STATE"'
# libcurl would take a proxy from these (bench.PROXY_VARIABLES)
PROXY_VARIABLES = {"http_proxy", "https_proxy", "all_proxy", "no_proxy"}
AGGREGATES = re.compile(r"^/v2/aggs/ticker/([^/?]+)/range/1/day/([^/?]+)/([^/?]+)(?:\?(.*))?$")
PLACEHOLDER = "@TICKER@"


class ScaleFailed(Exception):
    """A read or the server failed: the scenario has no figures."""


def ticker_names(count):
    return ["T%05d" % i for i in range(count)]


def one_year_before(day):
    try:
        return day.replace(year=day.year - 1)
    except ValueError:  # 29 February
        return day.replace(year=day.year - 1, day=28)


def next_trading_day(day):
    day += datetime.timedelta(days=1)
    while not polygon_server.is_trading_day(day):
        day += datetime.timedelta(days=1)
    return day


def resume_instant(now):
    """The same New York wall-clock time as now, a trading day later."""
    local = polygon_server.to_new_york(now)
    return polygon_server.ny_to_utc(datetime.datetime.combine(next_trading_day(local.date()), local.time()))


def new_york(now):
    return polygon_server.to_new_york(now).strftime("%Y-%m-%d %H:%M")


# ---------------------------------------------------------------------------------------------
# The server (a process of its own)
# ---------------------------------------------------------------------------------------------

class PageSplicer:
    """render(target) for PageServer(keep=False): the body answered to an aggregates request
    target, or None for a 404 (another path, or a request the API rejects). The page of a
    (range, options, clock) is rendered once for each of VARIANTS made-up tickers; a ticker is
    answered with its variant's page, its own name spliced in. Safe to call from several threads:
    two threads may render one shared page at once, and both get the same bytes."""

    def __init__(self, base_url, now):
        self.base_url = base_url
        self.now = now
        self._shared = {}

    def __call__(self, target):
        match = AGGREGATES.match(target)
        if not match:
            return None
        ticker = urllib.parse.unquote(match.group(1))
        if not polygon_server.TICKER_RE.match(ticker) or ticker == polygon_server.NO_DATA_TICKER:
            return whole_page(self._body(ticker, match))  # as the API answers it
        variant = zlib.crc32(ticker.encode()) % VARIANTS
        key = (variant, match.group(2), match.group(3), match.group(4), self.now)
        parts = self._shared.get(key)
        if parts is None:
            parts = self._shared[key] = self._split(self._body("V%02d" % variant, match))
        if parts is NOT_FOUND:
            return None
        if parts is WHOLE:  # a page with a next_url, which names the ticker
            return whole_page(self._body(ticker, match))
        head, tail = parts
        return b"".join((head, json.dumps(ticker).encode(), tail))

    def _body(self, ticker, match):
        """The API's answer to match's request for ticker, as a dict; None for an error."""
        path = "/v2/aggs/ticker/%s/range/1/day/%s/%s" % (urllib.parse.quote(ticker), match.group(2), match.group(3))
        options = {name: value for name, value in urllib.parse.parse_qsl(match.group(4) or "") if name != "apiKey"}
        try:
            _, body = polygon_server.answer_aggregates(path, options, self.now, base_url=self.base_url)
        except polygon_server.ApiError:
            return None
        body["request_id"] = "bench"
        return body

    @staticmethod
    def _split(body):
        """(head, tail) of body's text around the ticker's name; NOT_FOUND for an error, WHOLE
        for a page to render whole for each ticker."""
        if body is None:
            return NOT_FOUND
        if "next_url" in body:
            return WHOLE
        body["ticker"] = PLACEHOLDER
        head, tail = polygon_server.to_json(body).encode().split(json.dumps(PLACEHOLDER).encode())
        return head, tail


NOT_FOUND = "not found"
WHOLE = "rendered whole"


def whole_page(body):
    return None if body is None else polygon_server.to_json(body).encode()


def serve_main():
    """The server process: prints {"port": N}, then answers one JSON line per command line on
    stdin: `clock EPOCH` (the instant pages are rendered at), `stats` (its CPU seconds so far and
    the answers sent, once no connection is open), `targets` (the request targets answered 200
    since the last `targets`, each once). Ends at the end of stdin."""
    splicer = PageSplicer("", NOW)
    server = PageServer({}, lambda target: target, splicer, keep=False)
    splicer.base_url = f"http://127.0.0.1:{server.port}"
    print(json.dumps({"port": server.port}), flush=True)
    for line in sys.stdin:
        command, _, argument = line.strip().partition(" ")
        if command == "clock":
            splicer.now = datetime.datetime.fromtimestamp(float(argument), datetime.timezone.utc)
            reply = {}
        elif command == "stats":
            idle = server.wait_idle(10)
            reply = {"cpu": time.process_time(), "answers": len(server.served), "idle": idle}
        elif command == "targets":
            reply = {"targets": server.take_targets()}
        else:
            reply = {"error": f"unknown command {command!r}"}
        print(json.dumps(reply), flush=True)
    server.shutdown()


class ScaleServer:
    """The server process, seen from the bench."""

    def __init__(self):
        self._proc = subprocess.Popen([PYTHON, os.path.abspath(__file__), "--serve"], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, text=True, bufsize=1)
        self.port = self._reply()["port"]
        self.base_url = f"http://127.0.0.1:{self.port}"

    def _reply(self):
        line = self._proc.stdout.readline()
        if not line:
            raise ScaleFailed(f"the page server exited ({self._proc.poll()})")
        return json.loads(line)

    def ask(self, command):
        self._proc.stdin.write(command + "\n")
        self._proc.stdin.flush()
        return self._reply()

    def set_clock(self, now):
        self.ask(f"clock {now.timestamp()}")

    def stats(self):
        return self.ask("stats")

    def take_targets(self):
        return self.ask("targets")["targets"]

    def close(self):
        try:
            self._proc.stdin.close()
            self._proc.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            self._proc.kill()
            self._proc.wait()


# ---------------------------------------------------------------------------------------------
# The connector's output
# ---------------------------------------------------------------------------------------------

class OutputScan:
    """What a connector's stdout holds, read piece by piece without keeping it: its bytes, its
    RECORD messages, and its STATE messages (count, total bytes of their lines with the newline,
    the largest line, and the last line's text). A message type's marker is counted wherever it
    is: a string inside a message has its quotes escaped, so cannot hold one."""

    KEEP = max(len(RECORD_START), len(STATE_START)) - 1

    def __init__(self):
        self.size = self.records = self.states = self.state_bytes = self.largest_state = 0
        self.last_state = b""
        self._tail = b""   # the stream's last bytes before this piece, where a marker may have begun
        self._state = None  # the STATE line being read, while its newline is still to come

    def feed(self, buf, n=None):
        """Scans buf[:n] (bytes or bytearray), the next piece of the stream."""
        n = len(buf) if n is None else n
        if not n:
            return
        self.size += n
        across = self._tail + bytes(buf[:min(n, self.KEEP)])
        self.records += (self._straddling(across, RECORD_START) >= 0) + buf.count(RECORD_START, 0, n)
        pos = 0
        if self._state is None:
            at = self._straddling(across, STATE_START)
            if at >= 0:
                self._state = bytearray(self._tail[at:])
        while True:
            if self._state is not None:
                end = buf.find(b"\n", pos, n)
                if end < 0:
                    self._state += buf[pos:n]
                    break
                self._state += buf[pos:end + 1]
                self._end_state()
                pos = end + 1
            at = buf.find(STATE_START, pos, n)
            if at < 0:
                break
            self._state = bytearray()
            pos = at
        self._tail = bytes(buf[n - self.KEEP:n]) if n >= self.KEEP else (self._tail + bytes(buf[:n]))[-self.KEEP:]

    def _straddling(self, across, marker):
        """Where in the tail a marker begins that ends in this piece (across: the tail, then the
        piece's first bytes), or -1. There is at most one: no marker overlaps itself."""
        tail = len(self._tail)
        return across.find(marker, max(0, tail - len(marker) + 1), tail + len(marker) - 1)

    def finish(self):
        """The stream ended: a STATE without its newline counts too."""
        if self._state is not None:
            self._end_state()
        return self

    def _end_state(self):
        line, self._state = self._state, None
        self.states += 1
        self.state_bytes += len(line)
        self.largest_state = max(self.largest_state, len(line))
        self.last_state = bytes(line)


def drain_scan(fd):
    """Reads fd to its end in 1 MB reads (as bench.drain does) into an OutputScan."""
    buf = bytearray(1 << 20)
    view = memoryview(buf)
    scan = OutputScan()
    while True:
        n = os.readv(fd, [view])
        if not n:
            return scan.finish()
        scan.feed(buf, n)


# ---------------------------------------------------------------------------------------------
# The reads
# ---------------------------------------------------------------------------------------------

Read = collections.namedtuple("Read", "what now wall rss cpu size records expected states state_bytes largest_state "
                                      "last_state reader_cpu server_cpu answers tickers")
Floor = collections.namedtuple("Floor", "wall cpu server_cpu answers")


def connector_env(now):
    """No proxy variable (the server is local); the clock at now, ticking (libfaketime)."""
    if not os.path.exists(FAKETIME_LIB):
        raise ScaleFailed(f"libfaketime is missing ({FAKETIME_LIB}): run `make deps` (package libfaketime)")
    env = {name: value for name, value in os.environ.items() if name.lower() not in PROXY_VARIABLES}
    env.update(LD_PRELOAD=FAKETIME_LIB, FAKETIME_FMT="%s", FAKETIME="@%d" % int(now.timestamp()),
               FAKETIME_DONT_FAKE_MONOTONIC="1", FAKETIME_NO_CACHE="1",
               # a sanitizer build (make SANITIZE=1 test) wants its runtime first; faketime comes first
               ASAN_OPTIONS="verify_asan_link_order=0:detect_leaks=1")
    return env


def expected_records(tickers, first, now, stream_state=None):
    """Bars published by now for every ticker, from first or the day after its cursor in
    stream_state (the state's per-ticker cursors, {"tickers": {name: {"date": day}}})."""
    cursors = collections.Counter()
    for name in tickers:
        cursor = ((stream_state or {}).get("tickers") or {}).get(name, {}).get("date")
        cursors[cursor] += 1
    last = polygon_server.to_new_york(now).date()
    total = 0
    for cursor, count in cursors.items():
        start = first
        if cursor is not None:
            start = max(first, datetime.date.fromisoformat(cursor) + datetime.timedelta(days=1))
        total += count * len(polygon_server.published_days("V00", start, last, now))
    return total


def measure(argv, env, server):
    """Runs argv (a connector read) with its stdout piped to an OutputScan. Returns (wall, peak RSS
    MB, CPU s, scan, reader CPU s, server CPU s, server answers): the reader is this process,
    which does nothing else meanwhile; the server's figures are its own process's."""
    server_before = server.stats()
    with tempfile.NamedTemporaryFile("r") as rss_file, tempfile.TemporaryFile() as err:
        reader_before = resource.getrusage(resource.RUSAGE_SELF)
        start = time.perf_counter()
        proc = subprocess.Popen(["/usr/bin/time", "-f", "%M", "-o", rss_file.name, *argv], stdout=subprocess.PIPE,
                                stderr=err, env=env)
        scan = drain_scan(proc.stdout.fileno())
        proc.stdout.close()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        reader_after = resource.getrusage(resource.RUSAGE_SELF)
        code = os.waitstatus_to_exitcode(status)
        if code != 0:
            err.seek(0)
            raise ScaleFailed(f"{' '.join(argv[:2])} failed ({code}): {err.read().decode(errors='replace')[-2000:]}")
        rss = int(rss_file.read().split()[-1]) / 1024.0
    server_after = server.stats()
    reader_cpu = (reader_after.ru_utime + reader_after.ru_stime) - (reader_before.ru_utime + reader_before.ru_stime)
    return (wall, rss, usage.ru_utime + usage.ru_stime, scan, reader_cpu, server_after["cpu"] - server_before["cpu"],
            server_after["answers"] - server_before["answers"])


def read(binary, server, work, what, tickers, first, now, concurrency, state=None):
    """One read of tickers from first at now (from state, the text of a STATE message, when
    given). Returns a Read."""
    server.set_clock(now)
    stem = os.path.join(work, what.replace(" ", "_"))
    with open(stem + "_config.json", "w") as f:
        json.dump({"api_key": KEY, "stock_ticker": ",".join(tickers), "start_date": first.isoformat(),
                   "base_url": server.base_url, "concurrency": concurrency}, f)
    argv = [binary, "read", "--config", stem + "_config.json", "--catalog", CATALOG]
    stream_state = None
    if state is not None:
        message = json.loads(state)["state"]
        with open(stem + "_state.json", "w") as f:
            json.dump([message], f)  # as the platform passes it
        argv += ["--state", stem + "_state.json"]
        stream_state = message["stream"]["stream_state"]
    wall, rss, cpu, scan, reader_cpu, server_cpu, answers = measure(argv, connector_env(now), server)
    return Read(what, now, wall, rss, cpu, scan.size, scan.records, expected_records(tickers, first, now, stream_state),
                scan.states, scan.state_bytes, scan.largest_state, scan.last_state, reader_cpu, server_cpu, answers,
                len(tickers))


def floor(server, targets, concurrency, work):
    """curl fetching targets (a read's requests) to /dev/null, --parallel-max concurrency: the
    server and the loopback without the connector. Returns a Floor."""
    config = os.path.join(work, "floor.curlrc")
    with open(config, "w") as f:
        f.write(f'header = "Authorization: Bearer {KEY}"\n')
        for target in targets:
            f.write(f'url = "{server.base_url}{target}"\noutput = "/dev/null"\n')
    argv = ["curl", "-s", "--fail", "--parallel", "--parallel-max", str(concurrency), "-K", config]
    env = {name: value for name, value in os.environ.items() if name.lower() not in PROXY_VARIABLES}
    before = server.stats()
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    error = proc.stderr.read().decode(errors="replace")
    proc.stderr.close()
    if os.waitstatus_to_exitcode(status) != 0:
        raise ScaleFailed(f"curl failed ({os.waitstatus_to_exitcode(status)}): {error[-2000:]}")
    after = server.stats()
    return Floor(wall, usage.ru_utime + usage.ru_stime, after["cpu"] - before["cpu"],
                 after["answers"] - before["answers"])


def warm_up_tickers(names):
    """One ticker of names for each variant the server answers them with (in names' order)."""
    chosen = {}
    for name in names:
        chosen.setdefault(zlib.crc32(name.encode()) % VARIANTS, name)
    return sorted(chosen.values(), key=names.index)


def reads(binary, server, work, names, first, now, concurrency, floors, what_prefix=""):
    """The initial read and the resume of names; [(Read, Floor or None)] for each."""
    results = []
    state = None
    for what, at in (("initial", now), ("resume", resume_instant(now))):
        done = read(binary, server, work, what_prefix + what, names, first, at, concurrency, state)
        targets = server.take_targets()
        if not done.last_state:
            raise ScaleFailed(f"the {what} read printed no STATE")
        if floors:
            results.append((done, floor(server, targets, concurrency, work)))
            server.take_targets()  # the floor's, which are the read's
        else:
            results.append((done, None))
        state = done.last_state
    return results


def run(binary, tickers=TICKERS, now=NOW, concurrency=8, floors=True):
    """The initial read and the resume of tickers, each followed by its floor (floors=False:
    none), after the same two reads of a ticker of each variant, untimed, so that the server has
    rendered the pages it splices. Returns [(Read, Floor or None), (Read, Floor or None)]."""
    names = ticker_names(tickers)
    first = one_year_before(polygon_server.to_new_york(now).date())
    server = ScaleServer()
    try:
        with tempfile.TemporaryDirectory() as work:
            reads(binary, server, work, warm_up_tickers(names), first, now, concurrency, False, "warm-up ")
            return reads(binary, server, work, names, first, now, concurrency, floors)
    finally:
        server.close()


# ---------------------------------------------------------------------------------------------
# The figures
# ---------------------------------------------------------------------------------------------

def state_limit(r):
    """The STATE bytes a read may write: two full STATEs and 5% of its output."""
    return STATE_FULL_STATES * r.largest_state + STATE_OUTPUT_SHARE * r.size


def targets_met(r):
    """{target: met} for a Read."""
    return {"state": r.state_bytes <= state_limit(r), "rss": r.rss <= RSS_TARGET_MB}


def verdict(ok):
    return "meets target" if ok else "MISSES target"


def lines(results, concurrency):
    """The printed figures of run()'s results."""
    (initial, _), _ = results
    first = one_year_before(polygon_server.to_new_york(initial.now).date())
    out = [f"scale: {initial.tickers:,} tickers x 1 year of daily bars (from {first}), concurrency {concurrency}, "
           f"the connector's clock fixed with libfaketime, its stdout a pipe:"]
    for r, fl in results:
        met = targets_met(r)
        source = "no state" if r.what == "initial" else "the initial read's last STATE"
        records = f"{r.records:,} records" + ("" if r.records == r.expected else f" (NOT the {r.expected:,} expected)")
        out.append(
            f"  {r.what} read ({source}; now {new_york(r.now)} New York): {records} in {r.wall:.2f} s "
            f"({r.wall / r.tickers * 1e3:.3f} ms a ticker, {r.records / r.wall:,.0f} records/s), CPU {r.cpu:.2f} s, "
            f"output {r.size / 1e6:,.1f} MB; STATE: {r.states:,} messages, {r.state_bytes / 1e6:,.2f} MB, the largest "
            f"{r.largest_state / 1e6:,.3f} MB  [{verdict(met['state'])}: STATE bytes <= {STATE_FULL_STATES} largest "
            f"+ {STATE_OUTPUT_SHARE:.0%} of output = {state_limit(r) / 1e6:,.2f} MB]; peak RSS {r.rss:.1f} MB  "
            f"[{verdict(met['rss'])}: <= {RSS_TARGET_MB} MB]")
        server = (f"  {r.what} read's server: {r.answers:,} answers, {r.server_cpu:.2f} s of its CPU "
                  f"({r.server_cpu / max(r.answers, 1) * 1e6:.0f} us an answer, {r.server_cpu / r.wall:.0%} of the "
                  f"read's wall); the reader of the pipe {r.reader_cpu:.2f} s")
        if fl is not None:
            server += (f"; floor: curl, the same {fl.answers:,} requests, --parallel-max {concurrency}, to /dev/null: "
                       f"{fl.wall:.2f} s (curl's CPU {fl.cpu:.2f} s, the server's {fl.server_cpu:.2f} s); "
                       f"read/floor {r.wall / fl.wall:.2f}x")
        out.append(server + "  [for comparison]")
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--serve", action="store_true", help="be the page server (the bench starts it)")
    parser.add_argument("--binary", default=os.path.join(ROOT, "build", "source-lua"))
    parser.add_argument("--tickers", type=int, default=TICKERS)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    if args.serve:
        serve_main()
        return
    try:
        results = run(os.path.abspath(args.binary), args.tickers, concurrency=args.concurrency)
    except ScaleFailed as failure:
        print(f"scale: not measured: {failure}")
        return
    print("\n".join(lines(results, args.concurrency)))


if __name__ == "__main__":
    main()
