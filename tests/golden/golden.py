#!/usr/bin/env python3
"""Golden transcripts: each connector command run on fixed inputs, its stdout kept as it must be.

Each directory under tests/golden/cases/ is one case:

    case.json        {"argv": [...], "now": "2022-03-11T22:00:00Z"}: the command line (relative
                     paths are the case's files; {repo} is the repository) and the instant both
                     the connector's and the server's clocks stand at; "records_built_in_lua":
                     true when the script's parse returns Lua tables (see below); "server":
                     "github" for tests/server/github_server.py, "hubspot" for hubspot_server.py (a
                     fresh one for the case)
                     instead of the Polygon-compatible server
    config.json, catalog.json, state.json      the inputs the command line names ({base_url} is
                     the server's address)
    transcript.txt   the command line, every stdout line as printed, and the exit status

A run compares its transcript with transcript.txt byte for byte, after putting {base_url} and
{repo} back for the server's address and the repository's path. The connector's clock is frozen
at `now` (libfaketime), so every emitted_at is that instant. The runtime writes every object in
byte order of its member names except records built in Lua, which keep their table's order, and
that changes with Lua's per-run hash seed: in a case that says "records_built_in_lua", RECORD
lines are kept with their members sorted (Python's JSON spelling), every other line as printed.

    golden.py --binary build/source-lua            compare every case (what `make test` does)
    golden.py --binary build/source-lua --update   rewrite the transcripts (`make golden`); review
                                                   the change with `git diff tests/golden`
"""

from __future__ import annotations

import argparse
import datetime as dt
import difflib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CASES = Path(__file__).resolve().parent / "cases"
FAKETIME_LIB = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1")
TRANSCRIPT = "transcript.txt"

sys.path.insert(0, str(REPO / "tests" / "server"))
from github_server import GitHubServer  # noqa: E402
from hubspot_server import HubSpotServer  # noqa: E402
from launch import PolygonServer  # noqa: E402


def case_names() -> list:
    return sorted(p.name for p in CASES.iterdir() if (p / "case.json").exists())


def instant(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def connector_env(now: dt.datetime) -> dict:
    if not FAKETIME_LIB.exists():
        raise SystemExit(f"libfaketime is missing ({FAKETIME_LIB}): run `make deps`")
    env = {k: os.environ[k] for k in ("PATH", "HOME", "LANG") if k in os.environ}
    # FAKETIME without '@' stands still; the monotonic clock runs, so libcurl's timeouts work.
    env.update(TZ="UTC", LD_PRELOAD=str(FAKETIME_LIB), FAKETIME_FMT="%s", FAKETIME=str(int(now.timestamp())),
               FAKETIME_DONT_FAKE_MONOTONIC="1", FAKETIME_NO_CACHE="1",
               ASAN_OPTIONS="verify_asan_link_order=0:detect_leaks=1")
    return env


def fill(text: str, base_url: str) -> str:
    return text.replace("{base_url}", base_url).replace("{repo}", str(REPO))


def unfill(text: str, base_url: str) -> str:
    return text.replace(base_url, "{base_url}").replace(str(REPO), "{repo}")


def sorted_record(line: str) -> str:
    if not line.startswith('{"type":"RECORD"'):
        return line
    return json.dumps(json.loads(line), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def run_case(name: str, binary: Path, polygon: PolygonServer) -> str:
    """The transcript of one case, with the server's address and the repository as placeholders."""
    case_dir = CASES / name
    case = json.loads((case_dir / "case.json").read_text(encoding="utf-8"))
    now = instant(case["now"])
    if case.get("server") in ("github", "hubspot"):
        server = (GitHubServer() if case["server"] == "github" else HubSpotServer()).start()
        try:
            return run_against(name, binary, case, now, server)
        finally:
            server.stop()
    polygon.reset()
    polygon.set_clock(now)
    return run_against(name, binary, case, now, polygon)


def run_against(name: str, binary: Path, case: dict, now: dt.datetime, server) -> str:
    case_dir = CASES / name
    with tempfile.TemporaryDirectory(prefix=f"golden-{name}-") as work:
        for path in case_dir.glob("*.json"):
            if path.name != "case.json":
                (Path(work) / path.name).write_text(fill(path.read_text(encoding="utf-8"), server.base_url),
                                                    encoding="utf-8")
        argv = [fill(arg, server.base_url) for arg in case["argv"]]
        proc = subprocess.run([str(binary), *argv], cwd=work, env=connector_env(now), stdin=subprocess.DEVNULL,
                              capture_output=True, timeout=120)
    lines = proc.stdout.decode("utf-8", errors="backslashreplace").split("\n")
    if lines[-1] == "":
        lines.pop()
    if case.get("records_built_in_lua"):
        lines = [sorted_record(line) for line in lines]
    lines = ["$ source-lua " + " ".join(case["argv"]), *lines, f"[exit {proc.returncode}]"]
    return unfill("\n".join(lines) + "\n", server.base_url)


def compare(name: str, got: str) -> str | None:
    """None when the case's transcript is got, else a unified diff from it to got."""
    path = CASES / name / TRANSCRIPT
    want = path.read_text(encoding="utf-8") if path.exists() else ""
    if got == want:
        return None
    return "".join(difflib.unified_diff(want.splitlines(True), got.splitlines(True),
                                        f"{name}/{TRANSCRIPT}", f"{name} (this run)"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--binary", type=Path, default=REPO / "build" / "source-lua")
    parser.add_argument("--update", action="store_true", help="rewrite every transcript.txt")
    parser.add_argument("cases", nargs="*", help="only these cases")
    args = parser.parse_args()
    binary = args.binary.absolute()
    differ = 0
    with tempfile.TemporaryDirectory(prefix="golden-server-") as work, PolygonServer(Path(work)) as server:
        for name in args.cases or case_names():
            got = run_case(name, binary, server)
            diff = compare(name, got)
            if diff is None:
                continue
            if args.update:
                (CASES / name / TRANSCRIPT).write_text(got, encoding="utf-8")
                print(f"rewrote {name}/{TRANSCRIPT}")
            else:
                differ += 1
                sys.stdout.write(diff)
    if differ:
        print(f"{differ} transcript(s) differ: `make golden` rewrites them; review with `git diff tests/golden`")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
