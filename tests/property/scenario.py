"""Random scenarios for the exactly-once property: a stream definition, its data, and the model of
what a read of it must emit and what a state says was emitted.

Every value a scenario holds is kept as a sort key, an int that orders as the runtime orders cursor
values: days as date.toordinal(), datetimes as microseconds since 1970, integers as themselves.
The text a record carries is made from it (a day, an RFC 3339 text with a random offset and
sometimes milliseconds, epoch seconds or milliseconds, an integer).

A scenario is drawn from a seed (random.Random(seed)); any of its choices may be forced by the
caller, which is how the test matrix covers every cursor kind, order and record path whatever the
seeds.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import random
import string
import zoneinfo
from pathlib import Path

HERE = Path(__file__).resolve().parent
TEMPLATE = string.Template((HERE / "connector.lua.tmpl").read_text(encoding="utf-8"))

KINDS = ("day", "datetime", "integer")
ORDERS = ("ascending", "descending", "unsorted")
PATHS = ("tables", "batch")
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
SECOND = 1_000_000
HOUR = 3600 * SECOND
NO_PART = "-"  # the part of every item of a stream without partitions

# Zones with daylight saving (Lord Howe moves by 30 minutes), for datetime windows counted in days.
ZONES = ("UTC", "America/New_York", "Europe/Berlin", "Australia/Lord_Howe", "Asia/Kolkata")
FIXED_ZONES = ("UTC", "Asia/Kolkata", "Asia/Tokyo")
STRFTIME = "%Y-%m-%d %H:%M:%S"  # cursor_format "strftime": a local time in the stream's zone
OFFSETS = ("Z", "+00:00", "+02:00", "-05:00", "+05:30", "-09:30", "+14:00")


def instant(micros: int) -> dt.datetime:
    return EPOCH + dt.timedelta(microseconds=micros)


def micros_of(value: dt.datetime) -> int:
    delta = value - EPOCH
    return (delta.days * 86400 + delta.seconds) * SECOND + delta.microseconds


def local_text(micros: int, zone: str | None) -> str:
    """micros as STRFTIME text, the local time in zone (UTC when None)."""
    return instant(micros).astimezone(zoneinfo.ZoneInfo(zone or "UTC")).strftime(STRFTIME)


def rfc3339(micros: int, offset: str = "Z") -> str:
    """micros as RFC 3339 text in the given offset, with milliseconds when it has a fraction."""
    if offset == "Z":
        tz = dt.timezone.utc
    else:
        sign = 1 if offset[0] == "+" else -1
        tz = dt.timezone(sign * dt.timedelta(hours=int(offset[1:3]), minutes=int(offset[4:6])))
    local = instant(micros).astimezone(tz)
    text = local.strftime("%Y-%m-%dT%H:%M:%S")
    if micros % SECOND:
        text += ".%03d" % (micros % SECOND // 1000)
    return text + offset


def state_text_to_key(kind: str, value) -> int:
    """A cursor value as the state spells it, as a sort key."""
    if kind == "day":
        return dt.date.fromisoformat(value).toordinal()
    if kind == "integer":
        assert isinstance(value, int) and not isinstance(value, bool), f"integer cursor {value!r}"
        return value
    assert isinstance(value, str) and value.endswith("Z"), f"datetime cursor {value!r} is not RFC 3339 in UTC"
    return micros_of(dt.datetime.fromisoformat(value.replace("Z", "+00:00")))


@dataclasses.dataclass
class Scenario:
    seed: int
    kind: str
    order: str
    path: str
    fmt: str | None            # datetime: rfc3339, epoch_s, epoch_ms or strftime (STRFTIME)
    pk: object                 # None, "id", ["part", "n"] or [["part"], ["n"]]
    partitions: list | None    # None: a stream without partitions
    partition_state_key: str | None
    concurrency: int
    start: int | None          # sort keys; None only for integer
    end: int | None
    window: object             # None, an ISO 8601 duration, or a count (integer)
    window_key: str            # "window" or "window_days"
    timezone: str | None
    page_size: int
    sloppy: int                # how far (sort-key units) the server widens each window
    pad: int
    map_threads: int
    host_tz: str
    cursor_field: str
    parts: dict = dataclasses.field(repr=False)  # part -> items in serving order

    # ---- the model ----

    @property
    def has_pk(self) -> bool:
        return self.pk is not None

    def in_range(self, k: int) -> bool:
        if self.start is not None and k < self.start:
            return False
        if self.end is not None:
            return k < self.end if self.kind == "datetime" else k <= self.end
        return True

    def items(self):
        for part, items in self.parts.items():
            for item in items:
                yield part, item

    def by_id(self) -> dict:
        return {item["id"]: (part, item) for part, item in self.items()}

    def truth(self) -> list:
        """The ids of the records one uninterrupted read emits."""
        return sorted(item["id"] for _, item in self.items() if self.in_range(item["_k"]))

    def record_of(self, item: dict) -> dict:
        return {k: v for k, v in item.items() if k != "_k"}

    def pk_text(self, item: dict) -> str:
        """The primary key as the state lists it (canonical JSON of the list of values)."""
        if self.pk == "id":
            return json.dumps([item["id"]], separators=(",", ":"))
        return json.dumps([item["part"], item["n"]], separators=(",", ":"))

    def positions(self, stream_state: dict) -> dict:
        """part -> Position, from a stream state (parts missing from it have none)."""
        out = {}
        if self.partitions is None:
            out[NO_PART] = Position.of(self, stream_state)
        else:
            table = stream_state.get(self.partition_state_key or "partitions", {})
            for part in self.partitions:
                out[part] = Position.of(self, table.get(part))
        return out

    def describe_value(self, k: int) -> str:
        if self.kind == "day":
            return dt.date.fromordinal(k).isoformat()
        if self.kind == "datetime":
            return rfc3339(k)
        return str(k)

    # ---- the connector ----

    def script(self) -> str:
        c = self.cursor_field
        keys = []
        if self.pk is not None:
            keys.append(f"primary_key = {lua(self.pk)},")
        keys.append(f'cursor_field = "{c}",')
        if self.kind != "day" or self.seed % 2:
            keys.append(f'cursor_kind = "{self.kind}",')
        if self.fmt == "strftime":
            keys.append(f'cursor_format = "{STRFTIME}",')
        elif self.fmt and (self.fmt != "rfc3339" or self.seed % 2):
            keys.append(f'cursor_format = "{self.fmt}",')
        if self.order != "ascending" or self.seed % 3 == 0:
            keys.append(f'cursor_order = "{self.order}",')
        if self.start is not None:
            start = lua(self.bound_text(self.start))
            # start as a value, or as a function of the config
            keys.append(f"start = {start}," if self.seed % 4 else f"start = function(config) return {start} end,")
        if self.end is not None:
            keys.append(f'["end"] = {lua(self.bound_text(self.end))},')
        if self.window is not None:
            keys.append(f"{self.window_key} = {lua(self.window)},")
        if self.timezone:
            keys.append(f'timezone = "{self.timezone}",')
        if self.partitions is not None:
            keys.append(f"partitions = function(config) return {lua(self.partitions)} end,")
            if self.partition_state_key:
                keys.append(f'partition_state_key = "{self.partition_state_key}",')
        if self.kind == "day":
            declared = ', as = "day"'
        elif self.kind == "integer":
            declared = ', as = "integer"'
        elif self.fmt == "strftime" and self.timezone:
            # local times without an offset: the declaration reads them in the stream's zone
            declared = f', as = "datetime", zone = "{self.timezone}"'
        else:
            declared = ', as = "datetime"'
        numeric = self.kind == "integer" or self.fmt in ("epoch_s", "epoch_ms")
        return TEMPLATE.substitute(
            title=self.title(), cursor_field=c, declared_as=declared,
            table_cursor=f"math.tointeger(item.{c})" if numeric else f"item.{c}",
            stream_keys="\n".join("    " + k for k in keys),
            parse="batch" if self.path == "batch" else "tables")

    def bound_text(self, k: int):
        if self.kind == "day":
            return dt.date.fromordinal(k).isoformat()
        if self.kind == "datetime":
            return rfc3339(k)
        return k

    def title(self) -> str:
        parts = "no partitions" if self.partitions is None else f"{len(self.partitions)} partitions"
        return (f"seed {self.seed}: {self.kind}{'/' + self.fmt if self.fmt else ''} {self.order}, {self.path}, "
                f"pk {json.dumps(self.pk)}, {parts}, concurrency {self.concurrency}, window {self.window!r}, "
                f"page {self.page_size}")

    def summary(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "parts"}
        d["start"] = None if self.start is None else self.describe_value(self.start)
        d["end"] = None if self.end is None else self.describe_value(self.end)
        return d

    def data_listing(self) -> str:
        """Each partition's items in serving order: id@value (x marks one outside [start, end])."""
        lines = []
        for part, items in self.parts.items():
            shown = [f"{it['id']}@{self.describe_value(it['_k'])}{'' if self.in_range(it['_k']) else 'x'}"
                     for it in items]
            lines.append(f"  {part}: " + " ".join(shown))
        return "\n".join(lines)


@dataclasses.dataclass
class Position:
    """What a partition's state says was emitted (state.c): below cursor, at cursor unless open,
    at cursor those in at, beyond cursor those in after. An entry of emitted_after_cursor is a
    key ([...]) or a key with its record's value ({"cursor": value, "key": [...]}), which then
    covers that record only at that value."""
    cursor: int | None
    open: bool
    at: frozenset
    after: dict  # key text -> the value the state gives it (a sort key), or None

    @staticmethod
    def of(scn: Scenario, obj) -> "Position":
        if obj is None:
            return Position(None, False, frozenset(), frozenset())
        assert isinstance(obj, dict), f"a partition's state is not an object: {obj!r}"
        allowed = {scn.cursor_field, "emitted_at_cursor", "emitted_after_cursor"}
        extra = set(obj) - allowed
        assert not extra, f"unexpected members {sorted(extra)} in {obj!r}"
        cursor = obj.get(scn.cursor_field)
        key = None if cursor is None else state_text_to_key(scn.kind, cursor)
        at = obj.get("emitted_at_cursor")
        if at is not None:
            assert key is not None, f"emitted_at_cursor without a cursor: {obj!r}"
            assert isinstance(at, list) and all(isinstance(k, list) for k in at), obj
        after = {}
        entries = obj.get("emitted_after_cursor", [])
        assert isinstance(entries, list), obj
        for entry in entries:
            value = None
            if isinstance(entry, dict):
                assert set(entry) == {"cursor", "key"}, f"an emitted_after_cursor entry {entry!r}"
                value = state_text_to_key(scn.kind, entry["cursor"])
                entry = entry["key"]
            assert isinstance(entry, list), f"an emitted_after_cursor entry {entry!r}"
            after[_text(entry)] = value
        return Position(key, at is not None, frozenset(_text(k) for k in at or []), after)

    def covers(self, k: int, pk_text: str | None) -> bool:
        if self.cursor is not None:
            if k < self.cursor:
                return True
            if k == self.cursor:
                return not self.open or (pk_text is not None and pk_text in self.at)
        if pk_text is None or pk_text not in self.after:
            return False
        return self.after[pk_text] is None or self.after[pk_text] == k


def _text(key: list) -> str:
    return json.dumps(key, separators=(",", ":"))


def lua(value) -> str:
    """A Python value as a Lua literal."""
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "{ " + ", ".join(lua(v) for v in value) + " }"
    raise TypeError(value)


# --------------------------------------------------------------------------------------------
# drawing a scenario
# --------------------------------------------------------------------------------------------

def _choose(rng: random.Random, forced: dict, name: str, choices):
    if name in forced:
        return forced.pop(name)
    return rng.choice(choices) if isinstance(choices, (list, tuple)) else choices(rng)


def _group_sizes(rng: random.Random, distinct: int, ties: int | None) -> list:
    if ties:
        return [ties] * distinct
    return [rng.choices((1, 2, 3, 4, 5, 8, 12), weights=(34, 20, 14, 8, 10, 9, 5))[0] for _ in range(distinct)]


def make(seed: int, **forced) -> Scenario:
    """The scenario of seed, with the given choices forced (kind, order, path, pk, partitions,
    concurrency, window, page_size, ...; also ties: records per value, distinct: values per
    partition, windowed: whether the stream has a window)."""
    rng = random.Random(seed)
    kind = _choose(rng, forced, "kind", KINDS)
    order = _choose(rng, forced, "order", ORDERS)
    path = _choose(rng, forced, "path", PATHS)
    fmt = None
    if kind == "datetime":
        fmt = _choose(rng, forced, "fmt", ("rfc3339", "rfc3339", "strftime") if path == "batch"
                      else ("rfc3339", "rfc3339", "epoch_s", "epoch_ms", "strftime"))
    pk = _choose(rng, forced, "pk", (None, "id", "id", ["part", "n"], [["part"], ["n"]]))
    partitions = _choose(rng, forced, "partitions", (None, None, ["A"], ["A", "B"], ["A", "B", "C"], ["P1", "P2", "P3", "P4", "P5"]))
    concurrency = _choose(rng, forced, "concurrency", (1, 2, 3, 4) if partitions and len(partitions) > 1 else (1, 2))
    psk = _choose(rng, forced, "partition_state_key", (None, "parts")) if partitions else None
    page_size = _choose(rng, forced, "page_size", (1, 2, 3, 3, 4, 5, 7, 10))
    ties = forced.pop("ties", None)
    timezone = None
    window_key = "window"

    # The range [start, end] and the values' spread, per kind; window: (value, its length in keys).
    if kind == "day":
        base = dt.date(2024, 1, 1).toordinal() + rng.randint(0, 400)
        span = rng.randint(1, 30)
        start, end = base, base + span
        spread, grain = 3, 1
        windows = [(None, 0), ("P1D", 1), ("P2D", 2), ("P3D", 3), ("P1W", 7), ("P10D", 10), ("P1M", 30), (4, 4)]
    elif kind == "datetime":
        base = micros_of(dt.datetime(2024, 3, 8, tzinfo=dt.timezone.utc)) + rng.randint(0, 40 * 24) * HOUR
        start = base + rng.choice((0, 0, rng.randint(0, 3599))) * SECOND
        span = rng.randint(2, 96) * HOUR + rng.choice((0, 0, 1800 * SECOND))
        end = start + span
        spread = 3 * HOUR
        grain = rng.choice((SECOND, 60 * SECOND, 900 * SECOND))
        windows = [(None, 0), ("PT1H", HOUR), ("PT6H", 6 * HOUR), ("PT7H30M", 7 * HOUR + 1800 * SECOND),
                   ("P1D", 24 * HOUR), ("PT45M", 2700 * SECOND), ("P2D", 48 * HOUR)]
        # strftime texts are local times: only zones without daylight saving keep them unambiguous
        timezone = _choose(rng, forced, "timezone", (None,) + (FIXED_ZONES if fmt == "strftime" else ZONES))
    else:
        # sometimes past 2^53 (exact only as integers), or far below zero
        start = rng.randint(-100, 100) + rng.choice((0, 0, 0, 0, 2 ** 62, -2 ** 62, 2 ** 53))
        span = rng.randint(0, 200)
        end = start + span
        spread, grain = 8, 1
        windows = [(None, 0), (1, 1), (3, 3), (10, 10), (25, 25), (64, 64)]
    windowed = forced.pop("windowed", None)
    if "window" in forced:
        window = forced.pop("window")
    else:
        # Not more than ~40 windows per partition, to keep the requests few.
        fitting = [w for w in windows if (w[0] is None or span // w[1] <= 40)
                   and (windowed is None or (w[0] is not None) == windowed)]
        window = rng.choice(fitting)[0]
    if kind == "day" and isinstance(window, int):
        window_key = "window_days"
    if kind == "integer" and window is None:
        # An integer cursor may have no start, or no end, or neither (one unbounded window).
        shape = _choose(rng, forced, "integer_bounds", ("both", "both", "no start", "no end", "neither"))
        if shape in ("no start", "neither"):
            start = None
        if shape in ("no end", "neither"):
            end = None

    lo = (start if start is not None else (end if end is not None else 0) - 200) - spread
    hi = (end if end is not None else (start if start is not None else 0) + 200) + spread
    sloppy = _choose(rng, forced, "sloppy", (0, 0, 0, spread))
    distinct_max = forced.pop("distinct", None)
    pad = _choose(rng, forced, "pad", (0, 0, 16, 120, 600))
    cursor_field = _choose(rng, forced, "cursor_field", ("updated", "updated_at", "seq"))

    parts = {}
    counter = 0
    for part in (partitions or [NO_PART]):
        distinct = distinct_max if distinct_max is not None else rng.choice((0, 1, 2, 4, 6, 9, 12, 15))
        distinct = min(distinct, (hi - lo) // grain + 1)
        # Values on the grain, with the bounds themselves likely (a value at start, at end).
        values = set()
        specials = [v for v in (start, end) if v is not None]
        while len(values) < distinct:
            if specials and rng.random() < 0.15:
                values.add(rng.choice(specials) + rng.choice((0, 0, -grain, grain)))
            else:
                values.add(lo + (rng.randint(0, (hi - lo) // grain) * grain))
        values = sorted(values)
        items = []
        for v, size in zip(values, _group_sizes(rng, len(values), ties)):
            if kind == "datetime" and fmt not in ("epoch_s", "strftime") and rng.random() < 0.3:
                v += rng.randint(1, 999) * 1000  # milliseconds
            for _ in range(size):
                counter += 1
                items.append(_item(rng, kind, fmt, timezone, cursor_field, part, counter, v, pad, len(items) + 1))
        # The order the server serves: ties in a fixed random order.
        rng.shuffle(items)
        if order == "ascending":
            items.sort(key=lambda it: it["_k"])
        elif order == "descending":
            items.sort(key=lambda it: it["_k"], reverse=True)
        parts[part] = items

    scn = Scenario(
        seed=seed, kind=kind, order=order, path=path, fmt=fmt, pk=pk, partitions=partitions,
        partition_state_key=psk, concurrency=concurrency, start=start, end=end, window=window,
        window_key=window_key, timezone=timezone, page_size=page_size, sloppy=sloppy, pad=pad,
        map_threads=_choose(rng, forced, "map_threads", (0, 1, 2, 4)),
        host_tz=_choose(rng, forced, "host_tz", ("UTC", "America/Los_Angeles", "Asia/Tokyo", "Europe/Dublin")),
        cursor_field=cursor_field,
        parts=parts)
    assert not forced, f"unknown scenario choices: {sorted(forced)}"
    return scn


def _item(rng: random.Random, kind: str, fmt: str | None, zone: str | None, field: str, part: str, number: int,
          k: int, pad: int, n: int) -> dict:
    if kind == "day":
        value = dt.date.fromordinal(k).isoformat()
    elif kind == "integer":
        value = k
    elif fmt == "epoch_s":
        value = k // SECOND
    elif fmt == "epoch_ms":
        value = k // 1000
    elif fmt == "strftime":
        value = local_text(k, zone)
    else:
        value = rfc3339(k, rng.choice(OFFSETS))
    return {"id": f"{part}-{number}", "part": part, "n": n, field: value,
            "pad": "p" * rng.randint(0, pad) if pad else "", "_k": k}


def explicit(kind: str, order: str, data: dict, *, pk="id", start=None, end=None, window=None, page_size=1,
             path: str = "tables", fmt: str | None = None, partitions: list | None = None, concurrency: int = 1,
             seed: int = 0) -> Scenario:
    """A scenario written out by hand (for reproductions): data maps each partition (NO_PART for a
    stream without partitions) to [(id, value), ...] in serving order, values as a record carries
    them (a day, an RFC 3339 text, epoch seconds or milliseconds, an integer)."""
    def key(value) -> int:
        if kind == "day":
            return dt.date.fromisoformat(value).toordinal()
        if kind == "integer":
            return value
        if isinstance(value, str):
            return micros_of(dt.datetime.fromisoformat(value.replace("Z", "+00:00")))
        if fmt == "epoch_s":
            return value * SECOND
        if fmt == "epoch_ms":
            return value * 1000
        raise ValueError(value)

    parts = {}
    for part, rows in data.items():
        parts[part] = [{"id": rid, "part": part, "n": n, "updated": value, "pad": "", "_k": key(value)}
                       for n, (rid, value) in enumerate(rows, 1)]
    return Scenario(
        seed=seed, kind=kind, order=order, path=path, fmt=fmt if kind == "datetime" else None, pk=pk,
        partitions=partitions, partition_state_key=None, concurrency=concurrency,
        start=None if start is None else key(start), end=None if end is None else key(end), window=window,
        window_key="window", timezone=None, page_size=page_size, sloppy=0, pad=0, map_threads=0, host_tz="UTC",
        cursor_field="updated", parts=parts)
