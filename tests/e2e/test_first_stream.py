"""docs/FIRST_STREAM.md, run as written: each file block is written where it says, each command
run in turn against the GitHub stand-in, in a folder of the test's own (the walk's `mine/` and
`tests/scripts/` are made there; `make script-case` is the script it runs)."""

from __future__ import annotations

import json
import re
import shlex
import subprocess

import pytest

from .conftest import BINARY, PYTHON, REPO, assert_no_secret

import github_server  # noqa: E402  (tests/server is on the path: conftest puts it there)

DOC = REPO / "docs" / "FIRST_STREAM.md"
BLOCK = re.compile(r"^```(\w+)(?: (\S+))?\n(.*?)^```$", re.M | re.S)
TOKEN = "ghp_test_token_0001"


def blocks():
    return [(m.group(1), m.group(2), m.group(3)) for m in BLOCK.finditer(DOC.read_text(encoding="utf-8"))]


def command(line: str, base_url: str) -> str | None:
    """The shell command the test runs for a line of the walk (None: not run)."""
    if not line.strip() or line.startswith("#") or line.startswith("python3 tests/server/"):
        return None
    line = line.replace("http://127.0.0.1:8765", base_url)
    if line.startswith("make script-case "):
        args = dict(a.split("=", 1) for a in shlex.split(line)[2:])
        return (f"{PYTHON} {REPO}/tests/scripts/script_case.py --binary {BINARY} --cases-dir tests/scripts "
                f"{args['NAME']} --script {args['SCRIPT']} --config {args['CONFIG']}")
    assert line.startswith(("build/source-lua ", "mkdir ", "grep ")), f"a command the walk does not expect: {line}"
    return line.replace("build/source-lua", str(BINARY), 1)


def test_the_walk_has_every_step():
    kinds = [b[0] for b in blocks()]
    assert kinds.count("lua") == 3 and kinds.count("sh") >= 6 and kinds.count("json") == 1


def test_the_first_stream_walk_runs_as_written(tmp_path):
    server = github_server.GitHubServer(token=TOKEN, issues=250).start()
    outputs = []
    try:
        for kind, path, text in blocks():
            if path:
                target = tmp_path / path
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(text.replace("http://127.0.0.1:8765", server.base_url), encoding="utf-8")
                continue
            if kind != "sh":
                continue
            for line in text.splitlines():
                cmd = command(line, server.base_url)
                if cmd is None:
                    continue
                proc = subprocess.run(["bash", "-c", cmd], cwd=tmp_path, capture_output=True, text=True,
                                      timeout=120)
                assert proc.returncode == 0, f"$ {line}\n{proc.stdout[-3000:]}\n{proc.stderr[-2000:]}"
                assert_no_secret(proc.stdout, proc.stderr, [TOKEN], f" by: {line}")
                outputs.append((line, proc.stdout))
    finally:
        server.stop()
    said = dict(outputs)

    def output_of(prefix):
        return next(out for line, out in outputs if line.startswith(prefix))

    assert "CONNECTION_STATUS" in output_of("build/source-lua --script mine/issues.lua check")
    first = output_of("build/source-lua --script mine/issues.lua test-read --config mine/config.json --max-records 2")
    assert "page 1 of issues: 100 records parsed, 100 kept; no next page" in first
    assert "next: " + server.base_url + "/repositories/" in output_of(
        "build/source-lua --script mine/issues.lua test-read --config mine/config.json --max-pages 2")
    assert "== inferred schema of issues" in output_of(
        "build/source-lua --script mine/issues.lua test-read --config mine/config.json --max-pages 1 --infer-schema")
    events = [json.loads(e) for e in output_of(
        "build/source-lua --script mine/issues.lua test-read --config mine/config.json --max-pages 1 --json"
    ).splitlines()]
    partition = next(e for e in events if e["event"] == "partition")
    assert partition["partition"] == "octo/alpha" and partition["from"] == "2024-03-01T00:00:00Z"
    assert any(e["event"] == "checkpoint" for e in events)
    resumed = output_of("build/source-lua --script mine/issues.lua test-read --config mine/config.json --state")
    assert ", 0 records, " in resumed, resumed
    replayed = output_of("build/source-lua --script mine/issues.lua --replay")
    first_read = (tmp_path / "mine" / "first.jsonl").read_text()
    assert replayed.count('"type":"RECORD"') == first_read.count('"type":"RECORD"') > 100
    assert (tmp_path / "tests" / "scripts" / "mine_issues" / "expected.jsonl").exists()
    assert said  # every command ran


@pytest.mark.parametrize("line", ["python3 tests/server/github_server.py --port 8765 &", "# a comment", ""])
def test_lines_the_walk_does_not_run(line):
    assert command(line, "http://x") is None
