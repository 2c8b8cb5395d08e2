#!/usr/bin/env python3
"""A script's tests: a recorded read (a cassette) and the records and state it must give.

    tests/scripts/NAME/
        case.json       {"script": "scripts/...lua", "catalog": "catalog.json", "state": "state.json"?}
        config.json     the config, its airbyte_secret values replaced by placeholders
        catalog.json    what `source-lua catalog` wrote for it
        cassette/       the HTTP exchanges (source-lua --record), secrets removed
        expected.jsonl  each record ({"stream", "data"}) in order, then each stream's last state

Adding one is a single command against the live API (or a local stand-in):

    make script-case NAME=github_issues SCRIPT=scripts/examples/github_issues.lua CONFIG=secrets/github.json

which records the read, replays it with the placeholders (it must give the same records: a
script that reads the clock itself does not replay) and writes the expected output. `make test`
replays every case with no network (tests/scripts/test_script_cases.py).

Records are compared as JSON values (a record built in Lua writes its members in the table's
order, which changes from run to run), and as a set across partitions (read side by side, their
pages interleave differently from run to run); states exactly.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PLACEHOLDER = "placeholder-{}"


def run(binary, args, check=True):
    proc = subprocess.run([str(binary), *map(str, args)], capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise SystemExit(f"source-lua {' '.join(map(str, args))} failed (exit {proc.returncode}):\n"
                         f"{proc.stdout[-3000:]}{proc.stderr[-2000:]}")
    return proc


def secret_paths(schema, prefix=()):
    """The config paths of the spec's airbyte_secret fields."""
    for name, field in (schema.get("properties") or {}).items():
        if not isinstance(field, dict):
            continue
        if field.get("airbyte_secret"):
            yield prefix + (name,)
        yield from secret_paths(field, prefix + (name,))


def with_placeholders(config, paths):
    config = json.loads(json.dumps(config))
    for path in paths:
        node = config
        for key in path[:-1]:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, dict) and path[-1] in node:
            node[path[-1]] = PLACEHOLDER.format("-".join(path))
    return config


def outcome(stdout):
    """The records, in order, and each stream's last state, as expected.jsonl holds them."""
    records, states = [], {}
    for line in stdout.splitlines():
        message = json.loads(line)
        if message["type"] == "RECORD":
            records.append({"stream": message["record"]["stream"], "data": message["record"]["data"]})
        elif message["type"] == "STATE" and "stream" in message["state"]:
            stream = message["state"]["stream"]
            states[stream["stream_descriptor"]["name"]] = stream["stream_state"]
    return records, [{"stream": name, "state": state} for name, state in sorted(states.items())]


def canonical(value) -> str:
    return json.dumps(value, sort_keys=True)


def read_args(case_dir, case, cassette_mode):
    args = ["--script", REPO / case["script"], cassette_mode, case_dir / "cassette", "read",
            "--config", case_dir / "config.json", "--catalog", case_dir / case.get("catalog", "catalog.json")]
    if case.get("state"):
        args += ["--state", case_dir / case["state"]]
    return args


def replay(binary, case_dir):
    """(records, states) of the case's replay, and the run."""
    case = json.loads((case_dir / "case.json").read_text())
    proc = run(binary, read_args(case_dir, case, "--replay"), check=False)
    records, states = outcome(proc.stdout) if proc.returncode == 0 else ([], [])
    return records, states, proc


def expected(case_dir):
    records, states = [], []
    for line in (case_dir / "expected.jsonl").read_text().splitlines():
        item = json.loads(line)
        (records if "data" in item else states).append(item)
    return records, states


def add(binary, name, script, config_path, state_path=None, streams=None, cases_dir=None):
    case_dir = Path(cases_dir or REPO / "tests" / "scripts") / name
    if case_dir.exists():
        raise SystemExit(f"{case_dir} exists: remove it first to record the case again")
    script = Path(script).resolve()
    spec = json.loads(run(binary, ["--script", script, "spec"]).stdout.splitlines()[-1])["spec"]
    secrets = list(secret_paths(spec["connectionSpecification"]))
    config = json.loads(Path(config_path).read_text())
    case_dir.mkdir(parents=True)
    try:
        catalog_args = ["--script", script, "catalog", "--config", config_path]
        if streams:
            catalog_args += ["--streams", streams]
        (case_dir / "catalog.json").write_text(run(binary, catalog_args).stdout)
        case = {"script": os.path.relpath(script, REPO), "catalog": "catalog.json"}
        if state_path:
            shutil.copy(state_path, case_dir / "state.json")
            case["state"] = "state.json"
        (case_dir / "case.json").write_text(json.dumps(case, indent=2) + "\n")
        # The live read, recorded, with the real config.
        (case_dir / "config.json").write_text(json.dumps(config))
        live = run(binary, read_args(case_dir, case, "--record"))
        # The replay, with placeholders where the secrets were.
        (case_dir / "config.json").write_text(json.dumps(with_placeholders(config, secrets), indent=2) + "\n")
        records, states, proc = replay(binary, case_dir)
        if proc.returncode != 0:
            raise SystemExit(f"the recorded read does not replay:\n{proc.stdout[-3000:]}")
        live_records, live_states = outcome(live.stdout)
        # Partitions are read side by side: the order across them may differ from run to run.
        if (sorted(map(canonical, records)), states) != (sorted(map(canonical, live_records)), live_states):
            raise SystemExit("the replay gives other records or state than the live read: does the script "
                             "read the clock (date.now, date.today) instead of ctx.from and ctx.to?")
        lines = [json.dumps(item, sort_keys=True) for item in records + states]
        (case_dir / "expected.jsonl").write_text("\n".join(lines) + "\n")
    except BaseException:
        shutil.rmtree(case_dir)
        raise
    print(f"{case_dir}: {len(records)} records, {len(states)} states, "
          f"{len(list((case_dir / 'cassette').glob('0*.json')))} exchanges recorded")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--binary", default=REPO / "build" / "source-lua")
    parser.add_argument("name")
    parser.add_argument("--script", required=True)
    parser.add_argument("--config", required=True)
    parser.add_argument("--state")
    parser.add_argument("--streams")
    parser.add_argument("--cases-dir", help="where the case goes (default tests/scripts)")
    args = parser.parse_args()
    add(Path(args.binary).resolve(), args.name, args.script, args.config, args.state, args.streams, args.cases_dir)


if __name__ == "__main__":
    sys.exit(main())
