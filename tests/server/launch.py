"""Starts tests/server/polygon_server.py on a free loopback port and talks to its control API.

Shared by the end-to-end fixtures, the golden transcripts and `make demo`.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

SERVER = Path(__file__).resolve().parent / "polygon_server.py"

# Loopback only: a proxy from the environment must never see the test traffic.
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class PolygonServer:
    """polygon_server.py in a subprocess (its stderr in workdir/stderr.txt), and its control API."""

    def __init__(self, workdir: Path, *args: str, python: str = sys.executable):
        workdir.mkdir(parents=True, exist_ok=True)
        port_file = workdir / "port"
        port_file.unlink(missing_ok=True)
        self.stderr = open(workdir / "stderr.txt", "w")
        self.proc = subprocess.Popen(
            [python, str(SERVER), "--port", "0", "--port-file", str(port_file), "--quiet", *args],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self.stderr)
        deadline = time.monotonic() + 15
        while not port_file.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the Polygon server did not start: {(workdir / 'stderr.txt').read_text()}")
            time.sleep(0.02)
        self.port = int(port_file.read_text())
        self.base_url = f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.stderr.close()

    def __enter__(self) -> "PolygonServer":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base_url + path, data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        with _NO_PROXY.open(request, timeout=30) as response:
            return json.loads(response.read())

    def reset(self) -> None:
        self.call("POST", "/_control/reset", {})

    def set_clock(self, instant: dt.datetime | None) -> None:
        """Bars, articles and tickers after instant are not published yet; None: the real clock."""
        self.call("POST", "/_control/clock", {"now": instant.isoformat() if instant else None})

    def faults(self, **spec) -> dict:
        return self.call("POST", "/_control/faults", spec)

    def log(self) -> list:
        return self.call("GET", "/_control/log")

    def published(self, ticker: str, first, last) -> list:
        """The ground truth at the server's current clock: bars with their "date"."""
        return self.call("GET", f"/_control/published?ticker={ticker}&from={first}&to={last}")
