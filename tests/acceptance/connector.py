"""Running the connector under test and the local Polygon-compatible server.

The connector is any command line that speaks the Airbyte protocol: the suite appends
`spec`, `check --config F`, `discover --config F` or `read --config F --catalog F [--state F]`
and reads one JSON message per stdout line. Every run is kept in `ConnectorRunner.history`
so the protocol tests can check every line the connector ever printed.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlsplit, urlunsplit

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
RUN_TIMEOUT_SECONDS = 60


@dataclass
class Run:
    """The outcome of one connector invocation."""

    args: list[str]
    returncode: int
    stdout: str
    stderr: str
    duration: float
    messages: list[dict] = field(default_factory=list)
    # (line number, text, why) for every stdout line that is not a JSON object
    bad_lines: list[tuple[int, str, str]] = field(default_factory=list)

    @classmethod
    def parse(cls, args: list[str], returncode: int, stdout: bytes | str, stderr: str, duration: float) -> "Run":
        raw = stdout.encode() if isinstance(stdout, str) else stdout
        run = cls(args, returncode, raw.decode("utf-8", errors="replace"), stderr, duration)
        lines = raw.split(b"\n")
        if lines and lines[-1] == b"":
            lines.pop()  # the newline that ends the last message
        # split on "\n" only: str.splitlines() would also cut at U+2028 inside a JSON string
        for number, raw_line in enumerate(lines, start=1):
            try:
                line = raw_line.decode("utf-8")
            except UnicodeDecodeError as err:
                run.bad_lines.append((number, raw_line.decode("utf-8", errors="replace"), f"not UTF-8: {err}"))
                continue
            try:
                message = json.loads(line)
            except ValueError as err:
                run.bad_lines.append((number, line, f"not JSON: {err}"))
                continue
            if not isinstance(message, dict):
                run.bad_lines.append((number, line, "JSON but not an object"))
                continue
            run.messages.append(message)
        return run

    @property
    def command(self) -> str:
        return shlex.join(self.args)

    def of_type(self, type_: str) -> list[dict]:
        return [m for m in self.messages if m.get("type") == type_]

    @property
    def records(self) -> list[dict]:
        """The `record` objects of the RECORD messages, in order."""
        return [m["record"] for m in self.of_type("RECORD") if isinstance(m.get("record"), dict)]

    @property
    def states(self) -> list[dict]:
        """The `state` objects of the STATE messages, in order."""
        return [m["state"] for m in self.of_type("STATE") if isinstance(m.get("state"), dict)]

    def traces(self, trace_type: str) -> list[dict]:
        return [
            m["trace"]
            for m in self.of_type("TRACE")
            if isinstance(m.get("trace"), dict) and m["trace"].get("type") == trace_type
        ]

    def describe(self, limit: int = 2000) -> str:
        """A short account of the run for assertion messages."""
        out = self.stdout if len(self.stdout) <= limit else self.stdout[:limit] + "\n...[cut]"
        err = self.stderr if len(self.stderr) <= limit else self.stderr[-limit:]
        return f"$ {self.command}\nexit {self.returncode}\n--- stdout\n{out}\n--- stderr\n{err}"


class ConnectorRunner:
    """Invokes the connector; writes config/catalog/state to temp files first."""

    def __init__(self, command: list[str], workdir: Path, timeout: float = RUN_TIMEOUT_SECONDS):
        self.command = command
        self.workdir = workdir
        self.timeout = timeout
        self.history: list[Run] = []
        self._cache: dict[Any, Any] = {}
        self._files = 0

    # -- files -----------------------------------------------------------------------------
    def write_json(self, stem: str, value: Any) -> Path:
        self._files += 1
        path = self.workdir / f"{self._files:04d}-{stem}.json"
        path.write_text(json.dumps(value, indent=2), encoding="utf-8")
        return path

    # -- invocations -----------------------------------------------------------------------
    def run(self, *args: str) -> Run:
        argv = [*self.command, *map(str, args)]
        started = time.monotonic()
        try:
            proc = subprocess.run(
                argv,
                cwd=REPO_ROOT,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=self.timeout,
            )
        except FileNotFoundError as err:
            pytest.fail(f"connector command not found: {shlex.join(argv)} ({err}); build it first (make)")
        except subprocess.TimeoutExpired as err:
            stderr = (err.stderr or b"").decode("utf-8", errors="replace")
            pytest.fail(f"connector did not finish within {self.timeout:.0f}s: {shlex.join(argv)}\n{stderr}")
        stderr = proc.stderr.decode("utf-8", errors="replace")
        run = Run.parse(argv, proc.returncode, proc.stdout, stderr, time.monotonic() - started)
        self.history.append(run)
        return run

    def cached(self, key: Any, invoke: Callable[[], Any]) -> Any:
        """Reuse the result of an identical invocation (or group of them) made earlier."""
        if key not in self._cache:
            self._cache[key] = invoke()
        return self._cache[key]

    def spec(self, cache: bool = True) -> Run:
        if not cache:
            return self.run("spec")
        return self.cached(("spec",), lambda: self.run("spec"))

    def check(self, config: Path, cache: bool = True) -> Run:
        if not cache:
            return self.run("check", "--config", config)
        return self.cached(("check", _file_key(config)), lambda: self.run("check", "--config", config))

    def discover(self, config: Path, cache: bool = True) -> Run:
        if not cache:
            return self.run("discover", "--config", config)
        return self.cached(("discover", _file_key(config)), lambda: self.run("discover", "--config", config))

    def read(self, config: Path, catalog: dict, state: Any = None, cache: bool = False) -> Run:
        """Read with `catalog` (a dict) and optional `state` (a dict or the platform's list)."""

        def invoke() -> Run:
            args = ["read", "--config", config, "--catalog", self.write_json("catalog", catalog)]
            if state is not None:
                args += ["--state", self.write_json("state", state)]
            return self.run(*args)

        if not cache:
            return invoke()
        key = ("read", _file_key(config), _json_key(catalog), _json_key(state))
        return self.cached(key, invoke)


def _file_key(path: Path) -> tuple[str, str]:
    return (str(path), Path(path).read_text(encoding="utf-8"))


def _json_key(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def connector_command(connector: str, script: str | None) -> list[str]:
    """Split --connector with shlex; a relative program path is taken from the repo root."""
    argv = shlex.split(connector)
    if not argv:
        raise pytest.UsageError("--connector must not be empty")
    program = argv[0]
    if "/" in program and not os.path.isabs(program):
        argv[0] = str(REPO_ROOT / program)
    if script:
        argv += ["--script", str(Path(script).resolve())]
    return argv


def rewrite_base_url(config: dict, server_url: str) -> dict:
    """A copy of `config` whose base_url points at the local server (path kept)."""
    result = dict(config)
    current = result.get("base_url")
    if isinstance(current, str) and current:
        target = urlsplit(server_url)
        parts = urlsplit(current)
        result["base_url"] = urlunsplit((target.scheme, target.netloc, parts.path, parts.query, parts.fragment))
    else:
        result["base_url"] = server_url
    return result


# -- the local server -----------------------------------------------------------------------
class PolygonServer:
    """tests/server/polygon_server.py, started on a free port for the whole session."""

    def __init__(self, script: Path, workdir: Path):
        self.script = script
        self.workdir = workdir
        self.proc: subprocess.Popen | None = None
        self.port: int | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 15.0) -> None:
        if not self.script.exists():
            pytest.fail(f"local Polygon server not found: {self.script}")
        port_file = self.workdir / "polygon-server.port"
        self.log_path = self.workdir / "polygon-server.log"
        log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, str(self.script), "--port", "0", "--port-file", str(port_file), "--quiet"],
            cwd=REPO_ROOT,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"local server exited with {self.proc.returncode}:\n{self.log_path.read_text(errors='replace')}")
            text = port_file.read_text().strip() if port_file.exists() else ""
            if text.isdigit() and _accepts_connections(int(text)):
                self.port = int(text)
                return
            time.sleep(0.05)
        self.stop()
        pytest.fail(f"local server did not report a port within {timeout}s")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)

    def control(self, path: str, body: Any = None, method: str | None = None) -> Any:
        """Call a /_control/... endpoint; POST when a body is given."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.url + path, data=data, method=method or ("POST" if data is not None else "GET"),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            payload = response.read()
        return json.loads(payload) if payload.strip() else None


def _accepts_connections(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False
