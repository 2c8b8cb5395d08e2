"""End-to-end fixtures: the source-lua binary against the local Polygon-compatible server.

Run from the repo root:

    /usr/bin/python3 -m pytest -v -p no:cacheprovider tests/e2e

The binary is $SOURCE_LUA_BINARY (default build/source-lua). Both clocks are controlled: the
server's through POST /_control/clock, the connector's with libfaketime (the runtime reads
clock_gettime(CLOCK_REALTIME)), set to the same instant. FAKETIME is given as epoch seconds
(FAKETIME_FMT=%s), so the instant does not depend on the host TZ a test picks; the monotonic
clock is left alone so that libcurl's timeouts keep working.

Every stdout line of a protocol command must be one JSON object that is a valid AirbyteMessage
of the official schema (tests/airbyte_protocol.yaml); run() fails the test otherwise.

Secrets: the configs use the canary key (CANARY, valid on the server) by default, and every run
made through these helpers fails the test when the canary (or another registered secret) shows
up in stdout or stderr, in any of its printed forms (raw, URL-encoded, JSON-escaped).

$SOURCE_LUA_WRAPPER, e.g. "valgrind --leak-check=full --error-exitcode=99 -q", is put in front of
every connector run (split with shlex). A wrapped run that exits with the wrapper's error exit
code (99 unless --error-exitcode says otherwise) fails the test with the wrapper's output;
timeouts are multiplied by TIME_SCALE, and tests marked `timing` (durations, signals) or
`slow_under_wrapper` are skipped. Sanitizer reports (ASan, LSan, UBSan) on stderr fail any run.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import functools
import hashlib
import json
import os
import queue
import re
import shlex
import subprocess
import sys
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "server"))

import launch  # noqa: E402
import polygon_server  # noqa: E402  (calendar and New York time helpers, no sockets)

PYTHON = "/usr/bin/python3"
# A relative $SOURCE_LUA_BINARY is relative to where pytest was started (runs happen in tmp_path).
BINARY = Path(os.environ.get("SOURCE_LUA_BINARY") or REPO / "build" / "source-lua").absolute()
SCRIPT = REPO / "scripts" / "stock_prices.lua"
CATALOGS = REPO / "catalogs"
PROTOCOL = REPO / "tests" / "airbyte_protocol.yaml"
FAKETIME_LIB = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1")

KEY = "sl-test-key-0001"
CANARY = "sl-secret-d3adb33f-canary"
FORBIDDEN = "sl-forbidden-0001"
UNKNOWN_KEY = "sl-unknown-key-0000"
STREAM = "stock_prices"
PAGE_SIZE = 50

# The command prefix of every connector run (valgrind, ...), its error exit code, and how much
# slower a wrapped run is allowed to be.
WRAPPER = shlex.split(os.environ.get("SOURCE_LUA_WRAPPER", ""))
WRAPPED = bool(WRAPPER)
WRAPPER_ERROR_EXIT = next((int(a.split("=", 1)[1]) for a in WRAPPER if a.startswith("--error-exitcode=")),
                          99)
TIME_SCALE = 10 if WRAPPED else 1
RUN_TIMEOUT = 120   # seconds, for an unwrapped run: every timeout is multiplied by TIME_SCALE

timing = pytest.mark.skipif(
    WRAPPED, reason="depends on precise timing or on signals, which SOURCE_LUA_WRAPPER (valgrind) distorts")
slow_under_wrapper = pytest.mark.skipif(
    WRAPPED, reason="too many connector runs for the SOURCE_LUA_WRAPPER (valgrind) time budget")



def sample_under_wrapper(values, keep) -> list:
    """Parameters for pytest.mark.parametrize: all of values, but under SOURCE_LUA_WRAPPER only
    those in keep (a representative sample of cases that share their code path) run."""
    missing = set(keep) - set(values)
    assert not missing, f"not among the values: {missing}"
    return [v if v in keep else pytest.param(v, marks=slow_under_wrapper) for v in values]


# Text that means a sanitizer build found a bug, whatever the exit status.
SANITIZER_REPORTS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                     "WARNING: AddressSanitizer", "ERROR: UndefinedBehaviorSanitizer")

# A config field set to DROP is left out of the config file.
DROP = object()
# state=NO_STATE: no --state argument at all.
NO_STATE = object()

# The record fields documented by the tutorial and the README, from the bar's fields.
BAR_FIELDS = {"price": "c", "open": "o", "high": "h", "low": "l", "volume": "v", "vwap": "vw",
              "transactions": "n"}


# --------------------------------------------------------------------------------------------
# time
# --------------------------------------------------------------------------------------------

def utc(year, month, day, hour=0, minute=0, second=0) -> dt.datetime:
    return dt.datetime(year, month, day, hour, minute, second, tzinfo=dt.timezone.utc)


def ny(day: dt.date | str, hour: int, minute: int = 0) -> dt.datetime:
    """The UTC instant of a New York wall-clock time."""
    if isinstance(day, str):
        day = dt.date.fromisoformat(day)
    return polygon_server.ny_to_utc(dt.datetime.combine(day, dt.time(hour, minute)))


def ms(instant: dt.datetime) -> int:
    return int(instant.timestamp() * 1000)


def iso(value: dt.date) -> str:
    return value.isoformat()


# --------------------------------------------------------------------------------------------
# protocol
# --------------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def message_validator() -> jsonschema.Draft7Validator:
    with open(PROTOCOL, encoding="utf-8") as f:
        doc = yaml.safe_load(f)
    schema = {"$schema": "http://json-schema.org/draft-07/schema#",
              "definitions": doc["definitions"], "$ref": "#/definitions/AirbyteMessage"}
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


@dataclasses.dataclass(repr=False)
class Result:
    args: list
    returncode: int
    stdout: str
    stderr: str
    elapsed: float
    messages: list = dataclasses.field(default_factory=list)

    def describe(self, limit: int = 3000) -> str:
        out = self.stdout
        if len(out) > limit:
            out = out[:limit // 2] + "\n...\n" + out[-limit // 2:]
        command = " ".join(map(str, self.args))
        return f"$ {command}\nexit {self.returncode}\n--- stdout\n{out}\n--- stderr\n{self.stderr[-limit:]}"

    def __repr__(self) -> str:
        return f"<Result exit {self.returncode}, {len(self.messages)} messages>"

    def of(self, type_: str) -> list:
        return [m for m in self.messages if m["type"] == type_]

    @property
    def records(self) -> list:
        return [m["record"] for m in self.of("RECORD")]

    @property
    def data(self) -> list:
        return [r["data"] for r in self.records]

    @property
    def keys(self) -> list:
        """(ticker, date) of every record, in order."""
        return [(d["stock_ticker"], d["date"]) for d in self.data]

    def dates(self, ticker: str | None = None) -> list:
        return [d["date"] for d in self.data if ticker is None or d["stock_ticker"] == ticker]

    @property
    def states(self) -> list:
        return [m["state"] for m in self.of("STATE")]

    @property
    def last_stream_state(self) -> dict:
        assert self.states, "no STATE message\n" + self.describe()
        return self.states[-1]["stream"]["stream_state"]

    def traces(self, type_: str) -> list:
        return [m["trace"] for m in self.of("TRACE") if m["trace"]["type"] == type_]

    def log_messages(self, level: str | None = None) -> list:
        return [m["log"]["message"] for m in self.of("LOG") if level in (None, m["log"]["level"])]

    @property
    def errors(self) -> list:
        return [t["error"] for t in self.traces("ERROR")]

    @property
    def statuses(self) -> list:
        return [t["stream_status"]["status"] for t in self.traces("STREAM_STATUS")]

    @property
    def connection_status(self) -> dict:
        found = self.of("CONNECTION_STATUS")
        assert len(found) == 1, "expected one CONNECTION_STATUS\n" + self.describe()
        return found[0]["connectionStatus"]

    def assert_ok(self) -> "Result":
        assert self.returncode == 0, self.describe()
        assert not self.errors, self.describe()
        return self

    def assert_complete(self) -> "Result":
        self.assert_ok()
        assert self.statuses and self.statuses[-1] == "COMPLETE", self.describe()
        return self


def parse_protocol(result: Result) -> None:
    """Every stdout line: one JSON object, a valid AirbyteMessage."""
    if result.stdout:
        assert result.stdout.endswith("\n"), "stdout does not end with a newline\n" + result.describe()
    validator = message_validator()
    # Lines end at "\n" only, as the platform reads them: splitlines() would also break at the
    # U+2028, U+2029 and U+0085 that JSON strings may hold raw.
    for number, line in enumerate(result.stdout[:-1].split("\n") if result.stdout else [], start=1):
        try:
            message = json.loads(line)
        except ValueError as err:
            pytest.fail(f"stdout line {number} is not JSON ({err}): {line[:300]!r}\n{result.describe()}")
        assert isinstance(message, dict), f"stdout line {number} is not an object: {line[:300]!r}"
        problems = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(message)]
        assert not problems, f"stdout line {number} is not a valid AirbyteMessage: {problems[:5]}\n{line[:500]}"
        result.messages.append(message)


def platform_state(previous: list | None, result: Result) -> list:
    """What the platform passes to the next run: the last STATE of each stream (kept when a run
    emitted none for it), as a list of AirbyteStateMessage objects."""
    by_stream = collections.OrderedDict()
    for state in previous or []:
        by_stream[state["stream"]["stream_descriptor"]["name"]] = state
    for state in result.states:
        assert state["type"] == "STREAM", state
        by_stream[state["stream"]["stream_descriptor"]["name"]] = state
    return list(by_stream.values())


def stream_state_message(stream_state: dict, name: str = STREAM) -> dict:
    return {"type": "STREAM", "stream": {"stream_descriptor": {"name": name}, "stream_state": stream_state}}


def duplicates(keys) -> list:
    return sorted(k for k, n in collections.Counter(keys).items() if n > 1)


# --------------------------------------------------------------------------------------------
# secrets
# --------------------------------------------------------------------------------------------

def secret_forms(secret: str) -> set:
    """The ways a secret can be printed: as is, URL-encoded (either way), JSON-escaped."""
    forms = {secret, urllib.parse.quote(secret, safe=""), urllib.parse.quote_plus(secret, safe=""),
             urllib.parse.quote(secret), json.dumps(secret)[1:-1], json.dumps(secret, ensure_ascii=False)[1:-1]}
    forms |= {f.replace("%", "%25") for f in set(forms) if "%" in f}   # encoded twice
    forms |= {re.sub(r"%[0-9A-F]{2}", lambda m: m.group().lower(), f) for f in set(forms)}  # lower-case hex
    return {f for f in forms if f}


def assert_no_secret(stdout: str, stderr: str, secrets=(CANARY,), what: str = "") -> None:
    """Fails when any form of any secret appears in stdout or stderr."""
    for secret in secrets:
        for form in sorted(secret_forms(secret)):
            for name, text in (("stdout", stdout), ("stderr", stderr)):
                at = text.find(form)
                if at >= 0:
                    end = text.find("\n", at)
                    line = text[text.rfind("\n", 0, at) + 1:end if end >= 0 else len(text)][:500]
                    raise AssertionError(f"a secret ({form!r}) was printed on {name}{what}: {line!r}")


def without_config_updates(stdout: str) -> str:
    """stdout without the CONTROL connectorConfig messages: the one message meant to carry the
    config's secrets (a rotated OAuth2 refresh token goes back to the platform in the config)."""
    return "\n".join(line for line in stdout.split("\n") if not line.startswith('{"type":"CONTROL",'))


def strings_in(value) -> list:
    """Every string inside a decoded JSON value (keys too)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in [k, *strings_in(v)]]
    if isinstance(value, list):
        return [s for v in value for s in strings_in(v)]
    return []


# --------------------------------------------------------------------------------------------
# the server
# --------------------------------------------------------------------------------------------

class PolygonServer(launch.PolygonServer):
    def __init__(self, workdir: Path, *args: str):
        super().__init__(workdir, *args, python=PYTHON)

    def expected(self, ticker: str, first, last) -> list:
        """The records a sync must emit for ticker over [first, last], documented fields only."""
        return [expected_record(ticker, bar) for bar in self.published(ticker, first, last)]


def expected_record(ticker: str, bar: dict) -> dict:
    record = {"date": bar["date"], "stock_ticker": ticker}
    for field, key in BAR_FIELDS.items():
        record[field] = bar[key]
    return record


def documented(data: dict) -> dict:
    """A record's documented fields (extra fields, like close, are allowed)."""
    return {k: data.get(k, "<missing>") for k in ["date", "stock_ticker", *BAR_FIELDS]}


def key_fingerprint(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:8]


# --------------------------------------------------------------------------------------------
# the connector
# --------------------------------------------------------------------------------------------

_PASSED_THROUGH = ("PATH", "HOME", "LANG", "LC_ALL", "SYSTEMROOT")


class Connector:
    """Writes config/catalog/state files into tmp_path and runs the binary."""

    def __init__(self, tmp_path: Path, server: PolygonServer):
        self.tmp_path = tmp_path
        self.server = server
        self.files = 0
        # Never printed by any run; a test may add the secrets it puts into a config.
        self.secrets = [CANARY]

    def config(self, **fields) -> dict:
        config = {"api_key": CANARY, "stock_ticker": "TSLA", "base_url": self.server.base_url,
                  "start_date": "2022-03-01"}
        config.update(fields)
        return {k: v for k, v in config.items() if v is not DROP}

    def file(self, stem: str, content: Any) -> Path:
        """content: text written as is, anything else as JSON (None -> null)."""
        self.files += 1
        path = self.tmp_path / f"{self.files:03d}-{stem}"
        path.write_text(content if isinstance(content, str) else json.dumps(content), encoding="utf-8")
        return path

    def env(self, now: dt.datetime | None, tz: str, extra: dict | None, script_env: bool) -> dict:
        env = {k: os.environ[k] for k in _PASSED_THROUGH if k in os.environ}
        env["TZ"] = tz
        if WRAPPED:
            # valgrind runs code ~50x slower: the CPU watchdog must not mistake that for a stuck call.
            env["SOURCE_LUA_CPU_SECONDS"] = "120"
        if script_env:
            env["SOURCE_LUA_SCRIPT"] = str(SCRIPT)
        if now is not None:
            if not FAKETIME_LIB.exists():
                pytest.fail(f"libfaketime is missing ({FAKETIME_LIB}): run `make deps` (package libfaketime)")
            env.update(LD_PRELOAD=str(FAKETIME_LIB), FAKETIME_FMT="%s", FAKETIME="@%d" % int(now.timestamp()),
                       FAKETIME_DONT_FAKE_MONOTONIC="1", FAKETIME_NO_CACHE="1",
                       # a sanitizer build wants its runtime first; faketime is preloaded before it
                       ASAN_OPTIONS="verify_asan_link_order=0:detect_leaks=1")
        env.update(extra or {})
        return {k: v for k, v in env.items() if v is not None}

    def argv(self, args) -> list:
        return [*WRAPPER, str(BINARY), *map(str, args)]

    def run(self, *args, now: dt.datetime | None = None, server_now: dt.datetime | None = None, tz: str = "UTC",
            env: dict | None = None, protocol: bool = True, script_env: bool = True,
            timeout: float = RUN_TIMEOUT) -> Result:
        """Runs the binary. now fixes its clock (and the server's, unless server_now is given).
        timeout is for an unwrapped run; it is multiplied by TIME_SCALE."""
        if now is not None or server_now is not None:
            self.server.set_clock(server_now or now)
        argv = self.argv(args)
        started = time.monotonic()
        try:
            proc = subprocess.run(argv, cwd=self.tmp_path, env=self.env(now, tz, env, script_env),
                                  stdin=subprocess.DEVNULL, capture_output=True, text=True, errors="replace",
                                  timeout=timeout * TIME_SCALE)
        except subprocess.TimeoutExpired as err:
            out = err.stdout.decode(errors="replace") if isinstance(err.stdout, bytes) else (err.stdout or "")
            pytest.fail(f"the run did not end within {timeout * TIME_SCALE} s (a hang)\n$ {' '.join(argv)}\n"
                        f"--- stdout (end)\n{out[-3000:]}")
        result = Result(argv, proc.returncode, proc.stdout, proc.stderr, time.monotonic() - started)
        self.inspect(result, protocol)
        return result

    def inspect(self, result: Result, protocol: bool) -> None:
        """What every run must satisfy, whatever the test: no wrapper or sanitizer report, no death
        by a signal, no secret printed, and (protocol=True) every stdout line a valid message."""
        if WRAPPED and result.returncode == WRAPPER_ERROR_EXIT:
            pytest.fail(f"{WRAPPER[0]} reported errors (exit {WRAPPER_ERROR_EXIT})\n" + result.describe(limit=20000))
        for report in SANITIZER_REPORTS:
            if report in result.stderr:
                pytest.fail(f"sanitizer report ({report!r})\n" + result.describe(limit=20000))
        assert result.returncode >= 0, f"killed by signal {-result.returncode}\n" + result.describe()
        what = f" by {' '.join(map(str, result.args[-6:]))}"
        assert_no_secret(without_config_updates(result.stdout), result.stderr, self.secrets, what)
        if protocol:
            parse_protocol(result)
            # Decoded, so that a secret escaped once more by the JSON writer is found too.
            printed = [m for m in result.messages if m.get("type") != "CONTROL"]
            assert_no_secret("\n".join(strings_in(printed)), "", self.secrets, what + " (decoded stdout)")

    def start(self, *args, now: dt.datetime | None = None, tz: str = "UTC", env: dict | None = None,
              read_stdout: bool = True) -> "Running":
        """Starts the binary without waiting: for signals, closed pipes and faults changed mid-run."""
        if now is not None:
            self.server.set_clock(now)
        return Running(self, self.argv(args), self.env(now, tz, env, True), read_stdout)

    # flags: arguments put before the command, e.g. ("--script", path)
    def spec(self, flags=(), **kw) -> Result:
        return self.run(*flags, "spec", **kw)

    def check(self, config: dict | str, flags=(), **kw) -> Result:
        return self.run(*flags, "check", "--config", self.file("config.json", config), **kw)

    def discover(self, config: dict | str, flags=(), **kw) -> Result:
        return self.run(*flags, "discover", "--config", self.file("config.json", config), **kw)

    def read_args(self, config: dict | str, catalog: str | dict = "incremental", state: Any = NO_STATE,
                  flags=()) -> list:
        if catalog == "incremental":
            catalog_path = CATALOGS / "incremental_configured_catalog.json"
        elif catalog == "full_refresh":
            catalog_path = CATALOGS / "fullrefresh_configured_catalog.json"
        else:
            catalog_path = self.file("catalog.json", catalog)
        args = [*flags, "read", "--config", self.file("config.json", config), "--catalog", catalog_path]
        if state is not NO_STATE:
            args += ["--state", state if isinstance(state, Path) else self.file("state.json", state)]
        return args

    def read(self, config: dict | str, catalog: str | dict = "incremental", state: Any = NO_STATE,
             flags=(), **kw) -> Result:
        return self.run(*self.read_args(config, catalog, state, flags), **kw)

    def start_read(self, config: dict | str, catalog: str | dict = "incremental", state: Any = NO_STATE,
                   flags=(), **kw) -> "Running":
        return self.start(*self.read_args(config, catalog, state, flags), **kw)


# Runs started by start(): any still running when its test ends is killed (a failed assertion
# between start() and finish() must not leave a connector waiting out a 429 in the background).
_STARTED: list = []


class Running:
    """A connector run in progress. Its stdout lines are read by a thread and handed out as
    messages by wait_for(); finish() waits for the exit and returns the checked Result. With
    read_stdout=False the test reads (and may close) proc.stdout itself."""

    def __init__(self, connector: Connector, argv: list, env: dict, read_stdout: bool):
        self.connector = connector
        self.argv = argv
        self.started = time.monotonic()
        self.proc = subprocess.Popen(argv, cwd=connector.tmp_path, env=env, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        _STARTED.append(self)
        self.stdout_lines: list = []
        self.stderr_chunks: list = []
        self.lines: queue.Queue = queue.Queue()
        self.threads = [threading.Thread(target=self._read_stderr, daemon=True)]
        if read_stdout:
            self.threads.append(threading.Thread(target=self._read_stdout, daemon=True))
        for thread in self.threads:
            thread.start()

    def _read_stdout(self) -> None:
        for raw in self.proc.stdout:
            line = raw.decode("utf-8", errors="replace")
            self.stdout_lines.append(line)
            self.lines.put(line)
        self.lines.put(None)

    def _read_stderr(self) -> None:
        for raw in self.proc.stderr:
            self.stderr_chunks.append(raw.decode("utf-8", errors="replace"))

    def wait_for(self, predicate, timeout: float = 30) -> dict:
        """The first message (parsed stdout line) from now on for which predicate is true."""
        deadline = time.monotonic() + timeout * TIME_SCALE
        while True:
            left = deadline - time.monotonic()
            try:
                line = self.lines.get(timeout=max(left, 0.01))
            except queue.Empty:
                line = "TIMEOUT"
            if line is None or line == "TIMEOUT":
                self.kill()
                pytest.fail(f"no such message ({'exited' if line is None else 'timed out'}); stdout so far:\n"
                            + "".join(self.stdout_lines)[-3000:] + "\n--- stderr\n" + "".join(self.stderr_chunks))
            try:
                message = json.loads(line)
            except ValueError:
                continue   # finish() reports it
            if isinstance(message, dict) and predicate(message):
                return message

    def send_signal(self, sig: int) -> float:
        """Sends sig; returns the monotonic time it was sent."""
        self.proc.send_signal(sig)
        return time.monotonic()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def finish(self, timeout: float = 60, protocol: bool = True) -> Result:
        try:
            self.proc.wait(timeout=timeout * TIME_SCALE)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"the run did not end within {timeout * TIME_SCALE} s\n$ {' '.join(map(str, self.argv))}\n"
                        + "".join(self.stdout_lines)[-3000:])
        ended = time.monotonic()
        for thread in self.threads:
            thread.join(timeout=30)
        result = Result(self.argv, self.proc.returncode, "".join(self.stdout_lines), "".join(self.stderr_chunks),
                        ended - self.started)
        self.connector.inspect(result, protocol)
        return result


def script_copy(tmp_path: Path, *edits: tuple, name: str = "stock_prices_copy.lua") -> Path:
    """A copy of scripts/stock_prices.lua with each (old, new) text replaced; old must occur once."""
    text = SCRIPT.read_text(encoding="utf-8")
    for old, new in edits:
        assert text.count(old) == 1, f"{old!r} is not in {SCRIPT.name} exactly once"
        text = text.replace(old, new)
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def line_of(path: Path, needle: str) -> int:
    """The 1-based line number of the only line of path containing needle."""
    numbers = [n for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if needle in line]
    assert len(numbers) == 1, (needle, numbers)
    return numbers[0]


# --------------------------------------------------------------------------------------------
# fixtures
# --------------------------------------------------------------------------------------------

@pytest.fixture(scope="session", autouse=True)
def _binary_exists():
    if not BINARY.exists():
        pytest.fail(f"{BINARY} does not exist: run `make` (or set SOURCE_LUA_BINARY)")


@pytest.fixture(autouse=True)
def _no_run_outlives_its_test():
    yield
    while _STARTED:
        _STARTED.pop().kill()


@pytest.fixture(scope="session")
def _server_process(tmp_path_factory):
    server = PolygonServer(tmp_path_factory.mktemp("polygon"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def _paged_server_process(tmp_path_factory):
    server = PolygonServer(tmp_path_factory.mktemp("polygon-paged"), "--page-size", str(PAGE_SIZE))
    yield server
    server.stop()


@pytest.fixture
def server(_server_process) -> PolygonServer:
    """The shared server, reset (faults, counters, log) for this test."""
    _server_process.reset()
    return _server_process


@pytest.fixture
def paged_server(_paged_server_process) -> PolygonServer:
    """A server whose pages hold at most PAGE_SIZE bars, so next_url is followed."""
    _paged_server_process.reset()
    return _paged_server_process


@pytest.fixture
def connector(tmp_path, server) -> Connector:
    return Connector(tmp_path, server)


@pytest.fixture
def make_server(tmp_path):
    """Starts a dedicated server with these command-line arguments (stopped after the test): for
    options the shared ones lack, and for faults (delays) whose requests outlive the test."""
    started = []

    def start(*args: str) -> PolygonServer:
        server = PolygonServer(tmp_path / f"server-{len(started)}", *args)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def paged_connector(tmp_path, paged_server) -> Connector:
    return Connector(tmp_path, paged_server)
