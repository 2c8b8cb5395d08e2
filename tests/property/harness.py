"""The exactly-once property, checked run by run and checkpoint by checkpoint.

For a scenario (scenario.py) served by server.py:

1. one uninterrupted read, the reference: it must emit exactly the records in [start, end] (each
   once) and end with a STATE;
2. a chain of interrupted reads: each run fails at a random request (a status that is not retried,
   or a retryable fault that outlasts retry_max_seconds), some runs meet retryable faults that
   recover, and some runs are cut at a random STATE as if the process had been killed right
   after printing it (the records after that STATE never reach the platform). Each run resumes
   from the last STATE the platform kept. The chain ends with a run that completes;
3. one more read from the chain's final state: it must emit nothing.

Checked on every run: every stdout line is JSON, and every message but RECORDs (all of them with
PROPERTY_VALIDATE_ALL=1) is a valid AirbyteMessage of tests/airbyte_protocol.yaml; no record
outside [start, end] or not in the data; each STATE's sourceStats.recordCount counts the records
since the previous STATE; no record after a run's last STATE; a failed run exits 1 with one TRACE
error of the failure type its fault calls for; no sanitizer report on stderr.

Checked at every STATE (the invariant that makes the chain exactly-once): the records the state
says were emitted (state.c's positions, modelled by scenario.Position) are exactly the records the
platform has received so far. With a primary key: equal sets, and no record received twice.
Without one: the state never claims a record not received, and the received records it does not
claim lie at the partition's open cursor value (ascending: the only ones a resumed read may send
again), or past its cursor (descending/unsorted: the unfinished window, which has no keys to
remember).

At the end: with a primary key, the records of all the chain's runs are the reference's, each
once; without one, the same set, a record repeated only as often as runs stopped without their
state covering it. The chain's final state is the reference's.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import json
import os
import random
import shlex
import subprocess
import time
from pathlib import Path

import jsonschema
import yaml

from . import scenario as sc
from .server import Dataset, PropertyServer

REPO = Path(__file__).resolve().parents[2]
BINARY = Path(os.environ.get("SOURCE_LUA_BINARY") or REPO / "build" / "source-lua").absolute()
PROTOCOL = REPO / "tests" / "airbyte_protocol.yaml"
WRAPPER = shlex.split(os.environ.get("SOURCE_LUA_WRAPPER", ""))
TIME_SCALE = 10 if WRAPPER else 1
VALIDATE_ALL = os.environ.get("PROPERTY_VALIDATE_ALL") == "1"
SANITIZER_REPORTS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                     "WARNING: AddressSanitizer", "ERROR: UndefinedBehaviorSanitizer")
STREAM = "items"
MAX_RUNS = 8           # runs of a chain; the last has no fault that ends it
CRASH_CHANCE = 0.2     # a run cut at a random STATE, as if killed right after printing it
# A retryable fault answered with Retry-After: 0 is retried at once; one without waits at least
# 500 ms by the runtime's backoff, past this budget, so the run gives up (transient_error).
RETRY_MAX_SECONDS = 0.49

TERMINAL = (("status", 400), ("status", 404), ("status", 403), ("status", 422), ("giveup", 503),
            ("giveup", 500), ("truncate", 200))
RECOVERABLE = (("retry", 500), ("retry", 502), ("retry", 503), ("retry", 408), ("retry", 429), ("garbage", 200))
EXPECTED_FAILURE = {"status": "config_error", "giveup": "transient_error", "truncate": "transient_error"}


class PropertyFailure(AssertionError):
    pass


@functools.lru_cache(maxsize=None)
def validator() -> jsonschema.Draft7Validator:
    with open(PROTOCOL, encoding="utf-8") as f:
        doc = yaml.safe_load(f)
    schema = {"$schema": "http://json-schema.org/draft-07/schema#", "definitions": doc["definitions"],
              "$ref": "#/definitions/AirbyteMessage"}
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


@dataclasses.dataclass
class Run:
    label: str
    faults: dict
    returncode: int
    stdout: str
    stderr: str
    elapsed: float
    requests: list
    messages: list = dataclasses.field(default_factory=list)
    state_in: list | None = None
    kept_until: int | None = None   # index of the message a crash cut the run after, else None
    fired: tuple | None = None      # the fault that ended the run

    @property
    def records(self) -> list:
        return [m["record"]["data"] for m in self.messages if m["type"] == "RECORD"]

    @property
    def states(self) -> list:
        return [m["state"] for m in self.messages if m["type"] == "STATE"]

    @property
    def errors(self) -> list:
        return [m["trace"]["error"] for m in self.messages
                if m["type"] == "TRACE" and m["trace"]["type"] == "ERROR"]

    def kept(self) -> list:
        return self.messages if self.kept_until is None else self.messages[:self.kept_until + 1]


class Env:
    """The server, a directory for one scenario's files, and the runs made so far (for reports)."""

    def __init__(self, server: PropertyServer, directory: Path, scn: sc.Scenario):
        self.server = server
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.scn = scn
        self.sid = f"s{scn.seed}-{id(self)}"
        self.data = Dataset(scn.kind, scn.fmt, scn.parts, scn.page_size, scn.sloppy, scn.timezone)
        self.base_url = server.register(self.sid, self.data)
        self.runs: list = []
        self.script = self.dir / "connector.lua"
        self.script.write_text(scn.script(), encoding="utf-8")
        stream = {"name": STREAM, "json_schema": {"type": "object", "properties": {}},
                  "supported_sync_modes": ["full_refresh", "incremental"], "source_defined_cursor": True,
                  "default_cursor_field": [scn.cursor_field]}
        configured = {"stream": stream, "sync_mode": "incremental", "cursor_field": [scn.cursor_field],
                      "destination_sync_mode": "append_dedup" if scn.has_pk else "append"}
        if scn.has_pk:
            configured["primary_key"] = [[scn.pk]] if scn.pk == "id" else [["part"], ["n"]]
        self.catalog = self._write("catalog.json", {"streams": [configured]})
        (self.dir / "data.json").write_text(json.dumps(scn.parts, indent=1), encoding="utf-8")

    def close(self) -> None:
        self.server.unregister(self.sid)

    def _write(self, name: str, content) -> Path:
        path = self.dir / name
        path.write_text(json.dumps(content, indent=1), encoding="utf-8")
        return path

    def read(self, label: str, state: list | None, faults: dict) -> Run:
        token = f"r{len(self.runs) + 1}"
        config = {"base_url": f"{self.base_url}/{token}", "concurrency": self.scn.concurrency,
                  "retry_max_seconds": RETRY_MAX_SECONDS, "rate_limit_wait_seconds": 0}
        args = [*WRAPPER, str(BINARY), "--script", str(self.script), "read", "--config",
                str(self._write(f"config-{len(self.runs)}.json", config)), "--catalog", str(self.catalog)]
        if state is not None:
            args += ["--state", str(self._write(f"state-{len(self.runs)}.json", state))]
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "TZ": self.scn.host_tz,
               "SOURCE_LUA_MAP_THREADS": str(self.scn.map_threads)}
        for name in ("ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS"):
            if name in os.environ:
                env[name] = os.environ[name]
        self.data.arm(faults, token)
        started = time.monotonic()
        try:
            proc = subprocess.run(args, env=env, cwd=self.dir, stdin=subprocess.DEVNULL, capture_output=True,
                                  text=True, errors="replace", timeout=60 * TIME_SCALE)
        except subprocess.TimeoutExpired as err:
            raise PropertyFailure(self.report(f"{label}: the run did not end within {60 * TIME_SCALE} s\n"
                                              f"{(err.stdout or b'')[-2000:]!r}"))
        run = Run(label, dict(faults), proc.returncode, proc.stdout, proc.stderr, time.monotonic() - started,
                  list(self.data.log), state_in=state)
        fired = [e["fault"] for e in run.requests if "fault" in e and e["fault"][0] in EXPECTED_FAILURE]
        run.fired = tuple(fired[0]) if fired else None
        self.runs.append(run)
        self._inspect(run)
        return run

    # ---- what every run must satisfy ----

    def fail(self, why: str) -> None:
        raise PropertyFailure(self.report(why))

    def _inspect(self, run: Run) -> None:
        for report in SANITIZER_REPORTS:
            if report in run.stderr:
                self.fail(f"{run.label}: sanitizer report ({report!r}):\n{run.stderr[-20000:]}")
        if run.returncode < 0:
            self.fail(f"{run.label}: killed by signal {-run.returncode}\n{run.stderr[-3000:]}")
        if run.stdout and not run.stdout.endswith("\n"):
            self.fail(f"{run.label}: stdout does not end with a newline")
        check = validator()
        records_seen = False
        for number, line in enumerate(run.stdout.splitlines(), 1):
            try:
                message = json.loads(line)
            except ValueError as err:
                self.fail(f"{run.label}: stdout line {number} is not JSON ({err}): {line[:300]!r}")
            if not isinstance(message, dict) or "type" not in message:
                self.fail(f"{run.label}: stdout line {number} is not a message: {line[:300]!r}")
            if VALIDATE_ALL or message["type"] != "RECORD" or not records_seen:
                records_seen |= message["type"] == "RECORD"
                problems = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in check.iter_errors(message)]
                if problems:
                    self.fail(f"{run.label}: stdout line {number} is not a valid AirbyteMessage: {problems[:5]}\n"
                              f"{line[:500]}")
            run.messages.append(message)
        errors = run.errors
        if run.fired:
            expected = EXPECTED_FAILURE[run.fired[0]]
            if run.returncode != 1 or len(errors) != 1 or errors[0].get("failure_type") != expected:
                self.fail(f"{run.label}: fault {run.fired} should end the run with exit 1 and one {expected} "
                          f"TRACE; got exit {run.returncode}, errors {errors}\n--- stderr\n{run.stderr[-2000:]}")
            if run.messages[-1]["type"] != "TRACE":
                self.fail(f"{run.label}: a failed run's last message is not its TRACE error")
        elif run.returncode != 0 or errors:
            self.fail(f"{run.label}: exit {run.returncode} with errors {errors} (no fault ended this run)\n"
                      f"--- stderr\n{run.stderr[-2000:]}")
        # Each STATE counts the records since the previous one; none comes after the last.
        since = 0
        for m in run.messages:
            if m["type"] == "RECORD":
                since += 1
                if m["record"].get("stream") != STREAM:
                    self.fail(f"{run.label}: a record of stream {m['record'].get('stream')!r}")
            elif m["type"] == "STATE":
                state = m["state"]
                if state.get("type") != "STREAM" or state["stream"]["stream_descriptor"]["name"] != STREAM:
                    self.fail(f"{run.label}: unexpected STATE {state}")
                count = state.get("sourceStats", {}).get("recordCount")
                if count != since:
                    self.fail(f"{run.label}: a STATE's sourceStats.recordCount is {count}; {since} records since "
                              f"the previous STATE")
                since = 0
        if since:
            self.fail(f"{run.label}: {since} records after the run's last STATE (the platform would send them "
                      f"again, or lose them)")
        if not run.states and run.returncode == 0:
            self.fail(f"{run.label}: a stream with a cursor ended without a STATE")

    # ---- reports ----

    def report(self, why: str) -> str:
        scn = self.scn
        lines = [f"PROPERTY FAILURE: {why}", "", f"scenario {scn.title()}",
                 json.dumps(scn.summary(), default=str), f"files: {self.dir}",
                 "data (serving order, id@value, x: outside [start, end]):", scn.data_listing(), ""]
        for run in self.runs:
            lines.append(f"--- {run.label}: exit {run.returncode}, faults {run.faults}, fired {run.fired}, "
                         f"{len(run.records)} records, {len(run.states)} STATEs, {len(run.requests)} requests"
                         + (f", cut after message {run.kept_until}" if run.kept_until is not None else ""))
            if run.state_in is not None:
                lines.append("    state in: " + json.dumps(run.state_in[0]["stream"]["stream_state"]
                                                       if run.state_in else None))
            for e in run.requests:
                lines.append("    request " + json.dumps(e))
            for m in run.kept():
                if m["type"] == "RECORD":
                    d = m["record"]["data"]
                    lines.append(f"    RECORD {d['id']} {d.get(scn.cursor_field)}")
                elif m["type"] == "STATE":
                    lines.append("    STATE " + json.dumps(m["state"]["stream"]["stream_state"]))
                elif m["type"] == "LOG" and m["log"]["level"] != "INFO":
                    lines.append(f"    LOG {m['log']['level']} {m['log']['message'][:300]}")
                elif m["type"] == "TRACE" and m["trace"]["type"] == "ERROR":
                    lines.append("    ERROR " + m["trace"]["error"].get("failure_type", "") + ": "
                                 + m["trace"]["error"].get("message", ""))
            if run.kept_until is not None:
                lines.append(f"    (cut here: {len(run.messages) - run.kept_until - 1} messages not kept)")
        text = "\n".join(lines)
        (self.dir / "report.txt").write_text(text, encoding="utf-8")
        return text if len(text) < 60000 else text[:20000] + "\n...\n" + text[-30000:]


# --------------------------------------------------------------------------------------------
# the property
# --------------------------------------------------------------------------------------------

class Ledger:
    """What the platform has received: records (with how often each), and the state it keeps."""

    def __init__(self, env: Env):
        self.env = env
        self.scn = env.scn
        self.items = self.scn.by_id()
        self.truth = set(self.scn.truth())
        self.received: collections.Counter = collections.Counter()
        self.allowance: collections.Counter = collections.Counter()  # repeats allowed (no primary key)
        self.state: list | None = None

    def take(self, run: Run) -> None:
        """The run's kept messages, checked one by one."""
        scn = self.scn
        for index, m in enumerate(run.kept()):
            if m["type"] == "RECORD":
                data = m["record"]["data"]
                rid = data.get("id")
                if rid not in self.items:
                    self.env.fail(f"{run.label}: a record not in the data: {data}")
                part, item = self.items[rid]
                if data != scn.record_of(item):
                    self.env.fail(f"{run.label}: record {rid} is {data}, the data has {scn.record_of(item)}")
                if rid not in self.truth:
                    self.env.fail(f"{run.label}: record {rid} at {scn.describe_value(item['_k'])} is outside "
                                  f"[start, end] = [{scn.describe_value(scn.start) if scn.start is not None else '-'}, "
                                  f"{scn.describe_value(scn.end) if scn.end is not None else '-'}]")
                if scn.has_pk and self.received[rid]:
                    self.env.fail(f"{run.label}: record {rid} at {scn.describe_value(item['_k'])} (partition {part}) "
                                  f"emitted again: it has a primary key and was received before")
                self.received[rid] += 1
            elif m["type"] == "STATE":
                self.check_state(run, index, m["state"]["stream"]["stream_state"])

    def check_state(self, run: Run, index: int, stream_state: dict) -> None:
        scn = self.scn
        try:
            positions = scn.positions(stream_state)
            self.check_shape(stream_state, positions)
        except AssertionError as err:
            self.env.fail(f"{run.label}: STATE (message {index}) is malformed: {err}\n{json.dumps(stream_state)}")
        covered = set()
        for rid in self.truth:
            part, item = self.items[rid]
            if positions[part].covers(item["_k"], scn.pk_text(item) if scn.has_pk else None):
                covered.add(rid)
        received = set(self.received)
        claimed = covered - received
        if claimed:
            self.env.fail(f"{run.label}: STATE (message {index}) says records were emitted that the platform never "
                          f"received (a resumed read would lose them): {self.describe(claimed)}\n"
                          f"state: {json.dumps(stream_state)}")
        unclaimed = received - covered
        if scn.has_pk and unclaimed:
            self.env.fail(f"{run.label}: STATE (message {index}) does not cover records the platform received (a "
                          f"resumed read would send them again): {self.describe(unclaimed)}\n"
                          f"state: {json.dumps(stream_state)}")
        for rid in unclaimed:
            part, item = self.items[rid]
            pos = positions[part]
            k = item["_k"]
            ok = (pos.cursor is not None and k == pos.cursor and pos.open) if scn.order == "ascending" \
                else (pos.cursor is None or k > pos.cursor)
            if not ok:
                self.env.fail(f"{run.label}: STATE (message {index}) leaves received record {rid} "
                              f"({scn.describe_value(k)}) uncovered, which is neither at the partition's open cursor "
                              f"nor in its unfinished window: {json.dumps(stream_state)}")

    def check_shape(self, stream_state: dict, positions: dict) -> None:
        scn = self.scn
        assert isinstance(stream_state, dict), "the stream state is not an object"
        if scn.partitions is None:
            return
        key = scn.partition_state_key or "partitions"
        extra = set(stream_state) - {key, scn.cursor_field}
        assert not extra, f"unexpected members {sorted(extra)}"
        table = stream_state.get(key)
        assert isinstance(table, dict), f"no partition map under {key!r}"
        assert set(table) <= set(scn.partitions), f"unknown partitions {sorted(set(table) - set(scn.partitions))}"
        # The top-level value (the tutorial's form), when written, is one every partition is
        # complete up to: a reader of the old form applies it to all of them.
        top = stream_state.get(scn.cursor_field)
        if top is None:
            return
        got = sc.state_text_to_key(scn.kind, top)
        for part, pos in positions.items():
            assert pos.cursor is not None, f"top-level {scn.cursor_field} {top!r}, but partition {part} has no cursor"
            complete = pos.cursor - 1 if pos.open else pos.cursor  # open: only what is before the value
            assert got <= complete, (f"top-level {scn.cursor_field} {top!r} is past what partition {part} is complete "
                                     f"up to ({json.dumps(table.get(part))})")

    def carry(self, run: Run) -> None:
        """The platform keeps the run's last kept STATE (or the one it had); records it received but
        that state does not cover may come again (no primary key): count the allowance."""
        states = [m["state"] for m in run.kept() if m["type"] == "STATE"]
        if states:
            self.state = [states[-1]]
        stream_state = self.state[0]["stream"]["stream_state"] if self.state else {}
        positions = self.scn.positions(stream_state)
        for rid in self.received:
            part, item = self.items[rid]
            if not positions[part].covers(item["_k"], self.scn.pk_text(item) if self.scn.has_pk else None):
                self.allowance[rid] += 1

    def describe(self, ids) -> str:
        shown = []
        for rid in sorted(ids, key=lambda r: (self.items[r][0], self.items[r][1]["_k"], r))[:40]:
            part, item = self.items[rid]
            shown.append(f"{rid}@{self.scn.describe_value(item['_k'])}")
        return f"{len(ids)}: " + " ".join(shown)


def normalized(state):
    """A stream state with its lists of primary keys sorted: their order says nothing."""
    if isinstance(state, dict):
        return {k: sorted(v, key=json.dumps) if k in ("emitted_at_cursor", "emitted_after_cursor")
                else normalized(v) for k, v in state.items()}
    return state


def plan_faults(rng: random.Random, requests: dict, terminal: bool) -> dict:
    """{(partition, n): fault}: at most one fault that ends the run, at a random request of a
    partition (up to as many as the uninterrupted read made for it: it may fall past the run's
    last request, and the run completes), and a few that recover."""
    faults = {}
    parts = sorted(requests)

    def anywhere():
        part = rng.choice(parts)
        return part, rng.randint(1, max(1, requests[part]))

    if terminal:
        faults[anywhere()] = rng.choice(TERMINAL)
    for _ in range(rng.choice((0, 0, 0, 1, 2))):
        faults.setdefault(anywhere(), rng.choice(RECOVERABLE))
    return faults


@dataclasses.dataclass
class Outcome:
    runs: int
    failed_runs: int
    crashes: int
    records: int
    repeats: int
    requests: int


# What the session did, for its summary line (conftest.py).
TOTALS: collections.Counter = collections.Counter()


def check_scenario(server: PropertyServer, directory: Path, scn: sc.Scenario) -> Outcome:
    env = Env(server, directory, scn)
    try:
        return _check(env)
    finally:
        env.close()


def _check(env: Env) -> Outcome:
    scn = env.scn
    rng = random.Random(f"faults-{scn.seed}")
    truth = scn.truth()

    # 1. The reference: one uninterrupted read.
    reference = env.read("reference run", None, {})
    ref = Ledger(env)
    ref.take(reference)
    if sorted(ref.received.elements()) != truth:
        missing = set(truth) - set(ref.received)
        env.fail(f"the uninterrupted read did not emit the records in [start, end] once each: missing "
                 f"{ref.describe(missing) if missing else 'none'}; repeated "
                 f"{sorted(r for r, n in ref.received.items() if n > 1)}")
    ref_state = reference.states[-1]["stream"]["stream_state"]
    requests = collections.Counter(e["part"] for e in reference.requests)
    for part in scn.parts:
        requests.setdefault(part, 1)

    # 2. The interrupted chain.
    ledger = Ledger(env)
    failed = crashes = 0
    for attempt in range(MAX_RUNS):
        last = attempt == MAX_RUNS - 1
        faults = plan_faults(rng, requests, terminal=not last)
        run = env.read(f"run {attempt + 1}", ledger.state, faults)
        failed += run.returncode != 0
        state_indexes = [i for i, m in enumerate(run.messages) if m["type"] == "STATE"]
        if not last and state_indexes and rng.random() < CRASH_CHANCE:
            run.kept_until = rng.choice(state_indexes)
            crashes += 1
        ledger.take(run)
        ledger.carry(run)
        if run.returncode == 0 and (run.kept_until is None or run.kept_until == len(run.messages) - 1):
            break
    else:
        env.fail("the chain's last run did not complete")

    # 3. All the runs together.
    counts = ledger.received
    missing = set(truth) - set(counts)
    if missing:
        env.fail(f"records of the uninterrupted read missing from the interrupted runs: {ledger.describe(missing)}")
    if scn.has_pk:
        repeated = {r for r, n in counts.items() if n > 1}
        if repeated:
            env.fail(f"records repeated although the stream has a primary key: {ledger.describe(repeated)}")
    else:
        over = {r for r, n in counts.items() if n - 1 > ledger.allowance[r]}
        if over:
            env.fail(f"records repeated more often than runs stopped without covering them: {ledger.describe(over)}")
    final = ledger.state[0]["stream"]["stream_state"]
    if normalized(final) != normalized(ref_state):
        env.fail(f"the chain's final state differs from the uninterrupted read's:\n  chain:     "
                 f"{json.dumps(final)}\n  reference: {json.dumps(ref_state)}")

    # 4. Nothing more to read.
    again = env.read("read after the end", ledger.state, {})
    if again.records:
        env.fail(f"a read from the final state emitted {len(again.records)} records: "
                 f"{[r['id'] for r in again.records][:20]}")
    if again.states and normalized(again.states[-1]["stream"]["stream_state"]) != normalized(final):
        env.fail(f"a read from the final state moved it: {json.dumps(again.states[-1]['stream']['stream_state'])}")
    outcome = Outcome(runs=len(env.runs), failed_runs=failed, crashes=crashes, records=len(truth),
                      repeats=sum(counts.values()) - len(truth), requests=sum(len(r.requests) for r in env.runs))
    TOTALS.update(scenarios=1, **dataclasses.asdict(outcome))
    return outcome
