"""runtime/tz.c against Python's zoneinfo, for every zone zoneinfo lists.

The instants compared, for each zone: every transition the TZif file lists from 1800 to 2100, and
every transition after the file's last one up to 2100 found by sampling zoneinfo weekly and
bisecting where its answer changes (so the footer's transitions are zoneinfo's, not ours), each
at t-1, t and t+1; the weekly samples themselves; 1800-01-01, before almost every zone's first
transition; and instants in years 1 and 9999. At each: offset, DST flag (zoneinfo's dst() != 0)
and abbreviation. Around each transition, local times just before, at both edges of, inside and
after its gap or fold, read with fold=0: the UTC instant. And every span [from, until) the probe
reports is checked: it holds t, and zoneinfo answers the same at its first and last second
(within years 1..9999).

All queries go to one tz-probe process (built next to the binary under test).
"""
import io
import os
import struct
import subprocess
import time
import zoneinfo
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TZDIR = "/usr/share/zoneinfo"
EPOCH = datetime(1970, 1, 1)
FIRST = int(datetime(1800, 1, 1, tzinfo=timezone.utc).timestamp())
LAST = int(datetime(2101, 1, 1, tzinfo=timezone.utc).timestamp())
WEEK = 7 * 86400
# The ends of datetime's range, a day in (so that local times stay in range): before the first
# transition and far into the footer.
EARLIEST = int(datetime(1, 1, 2, tzinfo=timezone.utc).timestamp())
LATEST = int(datetime(9999, 12, 30, 23, 59, 59, tzinfo=timezone.utc).timestamp())


def probe_path():
    binary = Path(os.environ.get("SOURCE_LUA_BINARY", "build/source-lua"))
    if not binary.is_absolute():
        binary = ROOT / binary
    return binary.parent / "tz-probe"


def run_probe(lines, tzdir=TZDIR):
    probe = probe_path()
    if not probe.exists():
        pytest.fail(f"{probe} is missing: build it with `make {probe.relative_to(ROOT)}`")
    env = dict(os.environ, TZDIR=str(tzdir))
    proc = subprocess.run(
        [str(probe)], input="".join(lines), capture_output=True, text=True, env=env, timeout=120
    )
    assert proc.returncode == 0, f"tz-probe exited {proc.returncode}: {proc.stderr[-2000:]}"
    out = proc.stdout.splitlines()
    assert len(out) == len(lines), f"{len(lines)} queries, {len(out)} answers"
    return out


def file_transitions(path):
    """The transition instants of a TZif file's 64-bit block, and its footer."""
    data = Path(path).read_bytes()
    counts = struct.unpack(">6l", data[20:44])
    isut, isstd, leap, timecnt, typecnt, charcnt = counts
    if data[4:5] == b"\0":
        return list(struct.unpack(f">{timecnt}l", data[44 : 44 + 4 * timecnt])), ""
    at = 44 + timecnt * 5 + typecnt * 6 + charcnt + leap * 8 + isstd + isut
    isut, isstd, leap, timecnt, typecnt, charcnt = struct.unpack(">6l", data[at + 20 : at + 44])
    at += 44
    times = list(struct.unpack(f">{timecnt}q", data[at : at + 8 * timecnt]))
    at += timecnt * 9 + typecnt * 6 + charcnt + leap * 12 + isstd + isut
    footer = data[at + 1 : data.index(b"\n", at + 1)].decode()
    return times, footer


class Zone:
    """zoneinfo's answers for one zone, memoised."""

    def __init__(self, key, zi=None):
        self.key = key
        self.zi = zi or zoneinfo.ZoneInfo(key)
        self.memo = {}

    def at(self, t):
        got = self.memo.get(t)
        if got is None:
            dt = datetime.fromtimestamp(t, self.zi)
            got = (int(dt.utcoffset().total_seconds()), int(bool(dt.dst())), dt.tzname())
            self.memo[t] = got
        return got

    def local_to_utc(self, local):
        dt = (EPOCH + timedelta(seconds=local)).replace(tzinfo=self.zi)  # fold=0
        return local - int(dt.utcoffset().total_seconds())

    def changes(self, start, end):
        """Instants in (start, end) where zoneinfo's answer changes, found by weekly samples and
        bisection; and the samples."""
        found = []
        samples = list(range(start, end, WEEK))
        for a, b in zip(samples, samples[1:]):
            if self.at(a) == self.at(b):
                continue
            lo, hi = a, b  # at(lo) == at(a) != at(hi)
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if self.at(mid) == self.at(a):
                    lo = mid
                else:
                    hi = mid
            found.append(hi)
        return found, samples


def zone_queries(key):
    """(zone, instants, local times) to compare for one zone."""
    zone = Zone(key)
    times, footer = file_transitions(os.path.join(TZDIR, key))
    transitions = [t for t in times if FIRST < t < LAST]
    after = max(times[-1] + 1, FIRST) if times else FIRST
    samples = []
    if "," in footer and after < LAST:
        found, samples = zone.changes(after, LAST)
        transitions += found
    instants = {EARLIEST, FIRST, LAST - 1, LATEST - 86399, *samples}
    for t in transitions:
        instants.update((t - 1, t, t + 1))
    locals_ = set()
    for t in transitions:
        before, now = zone.at(t - 1)[0], zone.at(t)[0]
        lo, hi = t + min(before, now), t + max(before, now)
        locals_.update((lo - 1, lo, (lo + hi) // 2, hi - 1, hi))
    return zone, sorted(instants), sorted(locals_), len(transitions)


def test_every_zone_matches_zoneinfo():
    started = time.monotonic()
    keys = sorted(zoneinfo.available_timezones())
    assert len(keys) > 500, "the system tz database (Debian's tzdata) is not installed"
    for key in ("America/New_York", "Europe/Dublin"):
        assert str(zoneinfo._tzpath.find_tzfile(key)).startswith(TZDIR + "/"), "zoneinfo reads another database"

    # A zone linked to another (US/Eastern, America/New_York) is the same file: one of each file is
    # enough to compare every rule, and halves the time.
    by_content = {}
    for key in keys:
        with open(os.path.join(TZDIR, key), "rb") as f:
            by_content.setdefault(f.read(), key)
    keys = sorted(by_content.values())

    plan = []
    lines = []
    transitions = 0
    for key in keys:
        zone, instants, locals_, n = zone_queries(key)
        transitions += n
        plan.append((zone, instants, locals_))
        lines += [f"offset {key} {t}\n" for t in instants]
        lines += [f"local {key} {t}\n" for t in locals_]
    answers = iter(run_probe(lines))

    mismatches = []
    offsets = locals_compared = spans = 0
    for zone, instants, locals_ in plan:
        checked_spans = set()
        for t in instants:
            got = next(answers).split()
            if got[0] == "error":
                mismatches.append(f"{zone.key}: {' '.join(got)}")
                break
            offset, dst, abbr, start, until = int(got[0]), int(got[1]), got[2], int(got[3]), int(got[4])
            want = zone.at(t)
            offsets += 1
            if (offset, dst, abbr) != want:
                mismatches.append(f"{zone.key} at {t}: got {(offset, dst, abbr)}, zoneinfo {want}")
            if not start <= t < until:
                mismatches.append(f"{zone.key} at {t}: span [{start}, {until}) does not hold it")
            if (start, until) in checked_spans:
                continue
            checked_spans.add((start, until))
            spans += 1
            for edge in (max(start, EARLIEST), min(until - 1, LATEST)):
                if zone.at(edge) != (offset, dst, abbr):
                    mismatches.append(
                        f"{zone.key}: span [{start}, {until}) at {t} says {(offset, dst, abbr)}, "
                        f"zoneinfo at {edge} says {zone.at(edge)}"
                    )
        for local in locals_:
            got = next(answers)
            want = zone.local_to_utc(local)
            locals_compared += 1
            if got != str(want):
                mismatches.append(f"{zone.key} local {local}: got {got}, zoneinfo {want}")

    elapsed = time.monotonic() - started
    print(
        f"\ntz: {len(keys)} zones, {transitions} transitions, {offsets} instants, {locals_compared} local times, "
        f"{spans} spans compared with zoneinfo in {elapsed:.1f} s"
    )
    assert not mismatches, f"{len(mismatches)} differences from zoneinfo:\n" + "\n".join(mismatches[:30])


def test_unknown_and_refused_names():
    answers = run_probe(
        [
            "find Europe/Londn\n",
            "find ../etc/passwd\n",
            "find /etc/passwd\n",
            "find America\n",
            "find UTC\n",
            "find US/Eastern\n",
        ]
    )
    assert answers[0].startswith("error unknown time zone 'Europe/Londn' (did you mean Europe/London")
    assert answers[1].startswith("error invalid time zone name '../etc/passwd'")
    assert answers[2].startswith("error invalid time zone name '/etc/passwd'")
    assert answers[3].startswith("error unknown time zone 'America'")
    assert answers[4:] == ["ok", "ok"]


def tzif_with_footer(footer):
    """A TZif v2 file with no transitions: the footer alone decides (one unused LMT type)."""

    def block(time_size):
        header = b"TZif2" + bytes(15) + struct.pack(">6l", 0, 0, 0, 0, 1, 4)
        return header + struct.pack(">lBB", 0, 0, 0) + b"LMT\0"

    return block(4) + block(8) + b"\n" + footer.encode() + b"\n"


# Footers beyond those tzdata uses today, in every form zoneinfo reads as POSIX does. Left out:
# day-of-year rules "n" and "J59" in leap years (zoneinfo reads n as one-based and J59 of a leap
# year as February 29; POSIX and tz.c do not), rule hours over 99 (zoneinfo cannot parse them),
# and rules that change within a few hours of New Year (zoneinfo evaluates each UTC year's two
# changes alone). tests/unit/test_tz.c pins those down against POSIX.
SYNTHETIC_FOOTERS = [
    "AAA3BBB,M3.5.0/-1,M10.5.0/0",
    "IST-1GMT0,M10.5.0,M3.5.0/1",
    "<+0330>-3:30<+0430>,J79/24,J263/24",
    "EST5EDT,0/0,J365/25",
    "AAA0BBB,J60/0,J300/0",
    "<-03>3<-02>,M3.2.0/-99,M11.1.0/99",
    "<+1245>-12:45<+1345>,M9.5.0/2:45,M4.1.0/3:45",
    "<+11>-11<+12>,M10.1.0,M4.1.0/3",
    "<-04>4<-03>,M9.1.6/24,M4.1.6/24",
    "AAA0BBB-2,M3.5.0/1,M10.5.0/3",
    "AAA-14BBB-13,M9.5.0,M4.1.0",
    "XXX10YYY11,M3.2.0,M11.1.0",
    "NST3:30NDT,M3.2.0/0:01,M11.1.0/0:01",
    "<-0930>9:30",
]


def test_synthetic_footers_match_zoneinfo(tmp_path):
    start = int(datetime(2023, 1, 1, tzinfo=timezone.utc).timestamp())
    end = int(datetime(2027, 1, 1, tzinfo=timezone.utc).timestamp())
    plan, lines = [], []
    for i, footer in enumerate(SYNTHETIC_FOOTERS):
        name = f"Synthetic{i}"
        data = tzif_with_footer(footer)
        (tmp_path / name).write_bytes(data)
        zone = Zone(name, zoneinfo.ZoneInfo.from_file(io.BytesIO(data), key=name))
        found, samples = zone.changes(start, end)
        instants = sorted({*samples, *(t + d for t in found for d in (-1, 0, 1)), *range(start, end, 5 * 3607)})
        locals_ = sorted({t + off + d for t in found for off in {zone.at(t - 1)[0], zone.at(t)[0]} for d in (-1, 0, 1)})
        plan.append((zone, footer, instants, locals_))
        lines += [f"offset {name} {t}\n" for t in instants] + [f"local {name} {t}\n" for t in locals_]
    answers = iter(run_probe(lines, tmp_path))
    mismatches = []
    for zone, footer, instants, locals_ in plan:
        for t in instants:
            got = next(answers).split()
            got = (int(got[0]), int(got[1]), got[2]) if got[0] != "error" else tuple(got)
            if got != zone.at(t):
                mismatches.append(f"{footer} at {t}: got {got}, zoneinfo {zone.at(t)}")
        for local in locals_:
            got, want = next(answers), zone.local_to_utc(local)
            if got != str(want):
                mismatches.append(f"{footer} local {local}: got {got}, zoneinfo {want}")
    assert not mismatches, f"{len(mismatches)} differences:\n" + "\n".join(mismatches[:30])
