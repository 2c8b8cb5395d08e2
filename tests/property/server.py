"""A small threaded HTTP server for the property tests: each scenario's data, served page by page.

One server (loopback, port 0) serves every scenario of a session, each under its own prefix:

    GET /s/<scenario>/<run>/items?part=A&from=<ctx.from>&to=<ctx.to>&offset=<n>

answers {"items": [...], "next": "<the same URL with the next offset>" | null}: the partition's
items in the scenario's serving order (ascending, descending, or shuffled once with a fixed seed,
so that the pages of one window always agree), those inside the window the query names (day and
integer windows [from, to], datetime windows [from, to)), `page_size` at a time. A "sloppy"
scenario widens the window by a margin, as an API that rounds its bounds does: the runtime must
skip what it did not ask for.

Faults are armed per run: `Dataset.arm({(partition, n): fault}, run)` numbers each partition's
requests of the run from 1 and answers the partition's request n with the fault instead of the
page (per partition, so that where a fault falls does not depend on how the runtime interleaves
partitions read at once; a request of an earlier run that the server reads only now, its process
gone, is answered 410 and not counted):

    ("status", 404)    a status that is not retried: the run ends at once (config_error)
    ("retry", 503)     a retryable status with Retry-After: 0: the runtime asks again at once
    ("garbage", 200)   a 200 whose body is not JSON, with Retry-After: 0: asked again at once
    ("giveup", 503)    a retryable status without Retry-After: the first backoff (at least 500 ms)
                       is past the run's retry_max_seconds, so the run ends (transient_error)
    ("truncate", 200)  a 200 whose body stops short of its Content-Length, the connection closed
                       (a transport error, retried like giveup: the run ends)

Every request is logged (number, partition, window, offset, what was answered), for the
reproductions a failing test prints.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
import threading
import time
import urllib.parse
import zoneinfo
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


def micros_of(instant: dt.datetime) -> int:
    delta = instant - EPOCH
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


STRFTIME = "%Y-%m-%d %H:%M:%S"


def parse_bound(kind: str, fmt: str | None, text: str, zone: str | None = None) -> int:
    """A window bound as the script put it in the URL, as the scenario's sort key: days since
    0001-01-01 (date.toordinal), microseconds since 1970, or the integer."""
    if kind == "day":
        return dt.date.fromisoformat(text).toordinal()
    if kind == "integer":
        return int(text)
    if fmt == "epoch_s":
        return int(text) * 1_000_000
    if fmt == "epoch_ms":
        return int(text) * 1000
    if fmt == "strftime":
        local = dt.datetime.strptime(text, STRFTIME).replace(tzinfo=zoneinfo.ZoneInfo(zone or "UTC"))
        return micros_of(local)
    return micros_of(dt.datetime.fromisoformat(text.replace("Z", "+00:00")))


class Dataset:
    """What the server knows of one scenario: items per partition in serving order, each with its
    sort key in "_k" (never sent)."""

    def __init__(self, kind: str, fmt: str | None, parts: dict, page_size: int, sloppy: int = 0,
                 zone: str | None = None):
        self.kind = kind
        self.fmt = fmt
        self.zone = zone  # the stream's time zone, for local-time (strftime) bounds
        self.parts = parts
        self.page_size = page_size
        self.sloppy = sloppy  # the margin, in sort-key units, by which a window is widened
        self.faults: dict = {}
        self.count = 0
        self.counts: dict = {}
        self.log: list = []
        self.lock = threading.Lock()
        self.armed = time.monotonic()
        self.token = None

    def arm(self, faults: dict, token: str) -> None:
        """Starts a run: its requests carry token (a request of an earlier run, still queued when
        that run ended, is answered 410 and neither counted nor logged)."""
        with self.lock:
            self.token = token
            self.faults = dict(faults)
            self.count = 0
            self.counts = {}
            self.log = []
            self.armed = time.monotonic()

    def select(self, query: dict) -> list:
        part = query.get("part", ["-"])[0]
        items = self.parts.get(part, [])
        lo = parse_bound(self.kind, self.fmt, query["from"][0], self.zone) if "from" in query else None
        hi = parse_bound(self.kind, self.fmt, query["to"][0], self.zone) if "to" in query else None
        exclusive = self.kind == "datetime"
        if lo is not None:
            lo -= self.sloppy
        if hi is not None:
            hi += self.sloppy
        return [it for it in items
                if (lo is None or it["_k"] >= lo)
                and (hi is None or (it["_k"] < hi if exclusive else it["_k"] <= hi))]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms delayed-ACK stall
    server: "PropertyServer"

    def log_message(self, *args) -> None:  # quiet
        pass

    def _send(self, status: int, body: bytes, headers: dict | None = None, length: int | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body) if length is None else length))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802
        url = urllib.parse.urlsplit(self.path)
        pieces = url.path.strip("/").split("/")
        data = self.server.datasets.get(pieces[1]) if len(pieces) == 4 and pieces[0] == "s" else None
        if data is None or pieces[3] != "items":
            self._send(404, b'{"message": "no such scenario"}')
            return
        query = urllib.parse.parse_qs(url.query, keep_blank_values=True)
        with data.lock:
            if pieces[2] != data.token:
                self._send(410, b'{"message": "a request of a run that has ended"}')
                return
            part = query.get("part", ["-"])[0]
            data.count += 1
            data.counts[part] = data.counts.get(part, 0) + 1
            number = data.count
            fault = data.faults.get((part, data.counts[part]))
        entry = {"n": number, "part": part, "pn": data.counts[part], "from": query.get("from", [None])[0],
                 "to": query.get("to", [None])[0], "offset": int(query.get("offset", ["0"])[0]),
                 "port": self.client_address[1], "t": round(time.monotonic() - data.armed, 4)}
        data.log.append(entry)
        if fault:
            entry["fault"] = list(fault)
            kind, status = fault
            if kind == "status":
                self._send(status, json.dumps({"message": f"injected HTTP {status} at request {number}"}).encode())
            elif kind == "retry":
                self._send(status, b'{"message": "try again"}', {"Retry-After": "0"})
            elif kind == "garbage":
                self._send(200, b"<html>not json</html>", {"Retry-After": "0"})
            elif kind == "giveup":
                self._send(status, b'{"message": "unavailable"}')
            elif kind == "truncate":
                self._send(200, b'{"items": [{"id"', length=4096)
                self.close_connection = True
            return
        try:
            selected = data.select(query)
        except (KeyError, ValueError) as err:
            self._send(400, json.dumps({"message": f"bad query: {err}"}).encode())
            return
        offset = entry["offset"]
        page = selected[offset:offset + data.page_size]
        entry["items"] = [it["id"] for it in page]
        next_url = None
        if offset + data.page_size < len(selected):
            pairs = [(k, v) for k, vs in query.items() if k != "offset" for v in vs]
            pairs.append(("offset", str(offset + data.page_size)))
            next_url = (f"http://{self.headers['Host']}{url.path}?"
                        + urllib.parse.urlencode(pairs, quote_via=urllib.parse.quote))
        body = {"items": [{k: v for k, v in it.items() if k != "_k"} for it in page], "next": next_url}
        self._send(200, json.dumps(body).encode())


class PropertyServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.datasets: dict = {}
        self.thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def register(self, sid: str, data: Dataset) -> str:
        """The scenario's URL; a run's base URL is it followed by /<run>."""
        self.datasets[sid] = data
        return f"{self.base}/s/{sid}"

    def handle_error(self, request, client_address) -> None:
        # A run that fails leaves its other transfers unread: their connections close under us.
        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)

    def unregister(self, sid: str) -> None:
        self.datasets.pop(sid, None)

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
