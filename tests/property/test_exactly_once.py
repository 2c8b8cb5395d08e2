"""Property tests: checkpoints are exactly-once.

For random data and random failures, the records of all the runs of an interrupted read, each run
resumed from the last STATE the previous one printed (or, when a run is "killed", from a random
STATE it printed, the records after it lost), equal the records of one uninterrupted read: with a
primary key each record exactly once; without one the same set, a record repeated only where a
run stopped without its state covering it (ascending: the records at the open cursor value;
descending/unsorted: the unfinished window, since without keys nothing in it can be remembered).
What is checked, run by run and STATE by STATE, is described in harness.py.

    /usr/bin/python3 -m pytest -p no:cacheprovider tests/property
    SOURCE_LUA_BINARY=build/sanitize/source-lua /usr/bin/python3 -m pytest -p no:cacheprovider tests/property

The seeds are fixed: every matrix case draws PROPERTY_SEEDS scenarios (default 1) from seeds
PROPERTY_FIRST_SEED (default 0) on, and test_random_scenarios draws PROPERTY_RANDOM fully random
ones (default 8; `make test-property` draws 300). A seed fixes the data, the script, the faults (the n-th request of a partition)
and where runs are cut; only with several partitions read at once does how far the other
partitions got before a fault vary with scheduling. A longer session (`make test-property`):

    PROPERTY_SEEDS=4 PROPERTY_RANDOM=300 PROPERTY_FIRST_SEED=1000 /usr/bin/python3 -m pytest tests/property

A failure prints a reproduction (the scenario, its data in serving order, every run's faults,
requests, records and STATEs) and leaves it with the script, config, catalog and states in the
test's directory ($PROPERTY_ARTIFACTS/<test>/ when set).
"""

from __future__ import annotations

import collections
import json
import os
import zlib

import pytest

from . import harness
from . import scenario as sc

SEEDS = int(os.environ.get("PROPERTY_SEEDS", "1"))
FIRST_SEED = int(os.environ.get("PROPERTY_FIRST_SEED", "0"))
RANDOM = int(os.environ.get("PROPERTY_RANDOM", "8"))

# Each cursor kind x order x record path is read in four shapes, so that every cell has a stream
# with and without a primary key, with one partition and with several read at once, with and
# without windows, and with runs of equal values spread over pages.
PROFILES = {
    # one stream, a key, windows
    "key-windows": dict(pk="id", partitions=None, windowed=True),
    # several partitions read at once, no primary key
    "nokey-3parts": dict(pk=None, partitions=["A", "B", "C"], concurrency=3),
    # composite key, two partitions at once, 5 records per value over pages of 3, windows
    "ties-2parts": dict(pk=["part", "n"], partitions=["A", "B"], concurrency=2, ties=5, page_size=3,
                        windowed=True),
    # the protocol's form of a composite key, partitions() giving one partition, one window
    "pathkey-1part": dict(pk=[["part"], ["n"]], partitions=["A"], concurrency=1, windowed=False),
}

MATRIX = [(kind, order, path, profile) for kind in sc.KINDS for order in sc.ORDERS for path in sc.PATHS
          for profile in PROFILES]


def seeds(*name) -> list:
    """PROPERTY_SEEDS seeds for a case, different for every case, the same at every session."""
    base = zlib.crc32("/".join(map(str, name)).encode()) % 100_000 * 1000
    return [base + FIRST_SEED + i for i in range(SEEDS)]


def check(server, workdir, scn: sc.Scenario) -> harness.Outcome:
    return harness.check_scenario(server, workdir / f"seed-{scn.seed}", scn)


@pytest.mark.parametrize("kind,order,path,profile", MATRIX,
                         ids=["-".join(case) for case in MATRIX])
def test_matrix(server, workdir, kind, order, path, profile):
    for seed in seeds(kind, order, path, profile):
        check(server, workdir, sc.make(seed, kind=kind, order=order, path=path, **PROFILES[profile]))


@pytest.mark.parametrize("pk", ["key", "nokey"])
@pytest.mark.parametrize("path", sc.PATHS)
@pytest.mark.parametrize("kind", sc.KINDS)
def test_runs_of_equal_values_across_pages(server, workdir, kind, path, pk):
    """5 records per value, 3 per page, ascending: every checkpoint falls inside a run or at its
    end, and resumed reads start in the middle of one."""
    for seed in seeds("ties", kind, path, pk):
        check(server, workdir, sc.make(seed, kind=kind, order="ascending", path=path, ties=5, page_size=3,
                                       pk="id" if pk == "key" else None, distinct=8))


@pytest.mark.parametrize("index", range(RANDOM))
def test_random_scenarios(server, workdir, index):
    check(server, workdir, sc.make(10_000_000 + FIRST_SEED + index))


# --------------------------------------------------------------------------------------------
# reproductions: hand-written sequences of runs
# --------------------------------------------------------------------------------------------

def replay(server, workdir, scn: sc.Scenario, plan: list) -> tuple:
    """Runs the read once per fault plan, each from the last STATE of the one before; returns the
    environment and how often each record was emitted."""
    env = harness.Env(server, workdir, scn)
    try:
        state = None
        seen = collections.Counter()
        for number, faults in enumerate(plan, 1):
            run = env.read(f"run {number}", state, faults)
            seen.update(record["id"] for record in run.records)
            if run.states:
                state = [run.states[-1]]
        return env, seen
    finally:
        env.close()


@pytest.mark.parametrize("order", ["descending", "unsorted"])
def test_keys_sent_past_a_window_survive_the_windows_a_resume_reads_first(server, workdir, order):
    """A run that fails inside a window of a descending (or unsorted) stream leaves the keys it
    sent there in emitted_after_cursor. The next run starts right after the cursor, so its windows
    are shifted: when its first window ends, the position moves to that window's greatest value
    and emitted_after_cursor is dropped, although it still holds keys of records beyond that
    window. A checkpoint from then on (here: the run fails at the next window's first request)
    forgets them, and the third run sends them again.

        integer cursor, start 1, end 4, window 2, one record per page, primary key id
        data: b@4, x@3, a@1 (descending)
        run 1: [1,2] a; [3,4] b; page 2 fails -> {"updated": 1, "emitted_after_cursor": [["b"]]}
        run 2: [2,3] x; [4,4] fails           -> {"updated": 3}            (b forgotten)
        run 3: [4,4] b                        -> b emitted a second time
    """
    data = {sc.NO_PART: [("b", 4), ("x", 3), ("a", 1)] if order == "descending" else [("b", 4), ("a", 1), ("x", 3)]}
    scn = sc.explicit("integer", order, data, pk="id", start=1, end=4, window=2, page_size=1)
    env, seen = replay(server, workdir, scn, [{("-", 3): ("status", 404)}, {("-", 2): ("status", 404)}, {}])
    repeated = sorted(rid for rid, n in seen.items() if n > 1)
    assert not repeated, env.report(f"records emitted twice: {repeated}")
    assert sorted(seen) == ["a", "b", "x"], env.report(f"records: {dict(seen)}")


@pytest.mark.parametrize("first", [10 ** 18 + 7, 2 ** 62 + 5, -(2 ** 62) - 5, 9 * 10 ** 18 + 1],
                         ids=["1e18+7", "2^62+5", "-2^62-5", "9e18+1"])
def test_declared_integer_cursors_of_19_digits(server, workdir, first):
    """records.declare's as = "integer" must read every int64 exactly, as json.decode does for the
    same page built as Lua tables. Integers of 19 digits (|n| >= 10^18) go through a double: the
    cursor column is off by up to 1024, so an incremental read skips the records as outside the
    window asked for (nothing emitted at all), and the record's field is written rounded."""
    data = {sc.NO_PART: [("a", first), ("b", first + 1), ("c", first + 2)]}
    scn = sc.explicit("integer", "ascending", data, start=first, end=first + 2, path="batch", page_size=5)
    env = harness.Env(server, workdir, scn)
    try:
        run = env.read("one read", None, {})
        got = [(r["id"], r["updated"]) for r in run.records]
        assert got == [("a", first), ("b", first + 1), ("c", first + 2)], env.report(f"records: {got}")
    finally:
        env.close()


def test_a_resume_inside_19_digit_integers_loses_nothing(server, workdir):
    """The same rounding, across a failure: a at -4611686018427387999 is emitted as
    -4611686018427387904 (2^62 rounded), the state says so, and the resumed read asks from there,
    past b at -4611686018427387998, which is never emitted."""
    a, b = -4611686018427387999, -4611686018427387998
    scn = sc.explicit("integer", "ascending", {sc.NO_PART: [("a", a), ("b", b)]}, start=a - 1, end=a + 1000,
                      path="batch", page_size=1)
    env, seen = replay(server, workdir, scn, [{("-", 2): ("status", 404)}, {}])
    values = {r["id"]: r["updated"] for run in env.runs for r in run.records}
    assert sorted(seen.elements()) == ["a", "b"] and values == {"a": a, "b": b}, \
        env.report(f"records: {dict(seen)}, values {values}")


# --------------------------------------------------------------------------------------------
# the checker checks
# --------------------------------------------------------------------------------------------

def test_the_model_of_a_position():
    scn = sc.explicit("integer", "ascending", {sc.NO_PART: [("a", 1)]}, start=0, end=9)
    pos = sc.Position.of(scn, {"updated": 5, "emitted_at_cursor": [["k1"]], "emitted_after_cursor": [["k9"]]})
    assert pos.covers(4, '["zz"]') and not pos.covers(5, '["zz"]') and pos.covers(5, '["k1"]')
    assert pos.covers(7, '["k9"]') and not pos.covers(7, '["k1"]')
    closed = sc.Position.of(scn, {"updated": 5})
    assert closed.covers(5, None) and not closed.covers(6, None)
    with pytest.raises(AssertionError):
        sc.Position.of(scn, {"updated": 5, "surprise": 1})


def test_the_ledger_catches_a_repeat_and_a_state_that_claims_too_much(server, workdir):
    scn = sc.explicit("integer", "ascending", {sc.NO_PART: [("a", 1), ("b", 2)]}, start=0, end=9)
    env = harness.Env(server, workdir, scn)
    try:
        record = {"type": "RECORD", "record": {"stream": "items", "data": scn.record_of(scn.parts["-"][0])}}

        def state(stream_state):
            return {"type": "STATE", "state": {"type": "STREAM", "stream": {
                "stream_descriptor": {"name": "items"}, "stream_state": stream_state}}}

        ledger = harness.Ledger(env)
        ledger.take(harness.Run("fake", {}, 0, "", "", 0, [], messages=[record, state({"updated": 1})]))
        with pytest.raises(harness.PropertyFailure, match="emitted again"):
            ledger.take(harness.Run("fake", {}, 0, "", "", 0, [], messages=[record]))
        ledger = harness.Ledger(env)
        with pytest.raises(harness.PropertyFailure, match="never received"):
            ledger.take(harness.Run("fake", {}, 0, "", "", 0, [], messages=[record, state({"updated": 2})]))
    finally:
        env.close()


def test_the_server_serves_windows_in_order_and_pages(server):
    scn = sc.explicit("day", "descending", {"-": [("c", "2024-01-03"), ("b", "2024-01-02"), ("a", "2024-01-01")]},
                      start="2024-01-01", end="2024-01-03", page_size=1)
    import urllib.request
    data = harness.Dataset(scn.kind, scn.fmt, scn.parts, scn.page_size)
    base = server.register("server-check", data)
    try:
        data.arm({}, "r1")
        url, ids = f"{base}/r1/items?part=-&from=2024-01-02&to=2024-01-03", []
        while url:
            with urllib.request.urlopen(url) as answer:
                page = json.load(answer)
            ids += [item["id"] for item in page["items"]]
            url = page["next"]
        assert ids == ["c", "b"]
    finally:
        server.unregister("server-check")
