#!/usr/bin/env python3
"""`make demo`: a real sync against the bundled Polygon-compatible server, step by step.

Starts tests/server/polygon_server.py on a free loopback port, writes a config pointing at it,
then runs spec, check, discover, a full refresh, an incremental read, and a second incremental
read resumed from the first one's state, printing each step readably. Stops the server at the end.
"""
import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "server"))

from launch import PolygonServer  # noqa: E402


def banner(title, argv):
    print(f"\n\033[1m== {title}\033[0m")
    print("$ " + " ".join(os.path.relpath(a, ROOT) if a.startswith(ROOT) else a for a in argv))


def describe(message):
    kind = message.get("type")
    if kind == "RECORD":
        d = message["record"]["data"]
        return f"RECORD  {d['stock_ticker']:<6} {d['date']}  close {d['price']}"
    if kind == "STATE":
        s = message["state"]
        return f"STATE   {json.dumps(s['stream']['stream_state'])}  ({int(s['sourceStats']['recordCount'])} records)"
    if kind == "TRACE" and message["trace"]["type"] == "STREAM_STATUS":
        st = message["trace"]["stream_status"]
        return f"STATUS  {st['stream_descriptor']['name']}: {st['status']}"
    if kind == "TRACE":
        return f"ERROR   {message['trace']['error']['message']}"
    if kind == "LOG":
        return f"LOG     {message['log']['level']}: {message['log']['message']}"
    if kind == "CONNECTION_STATUS":
        return f"CHECK   {json.dumps(message['connectionStatus'])}"
    if kind == "SPEC":
        props = message["spec"]["connectionSpecification"]["properties"]
        return "SPEC    config fields: " + ", ".join(sorted(props))
    if kind == "CATALOG":
        return "CATALOG " + ", ".join(
            f"{s['name']} ({'/'.join(s['supported_sync_modes'])}, cursor {s.get('default_cursor_field')})"
            for s in message["catalog"]["streams"])
    return json.dumps(message)


def run(binary, title, args):
    argv = [binary, *args]
    banner(title, argv)
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    messages = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    for m in messages:
        print("  " + describe(m))
    if proc.returncode != 0:
        raise SystemExit(f"step failed with exit {proc.returncode}: {proc.stderr}")
    return messages


def last_state(messages):
    states = [m["state"] for m in messages if m["type"] == "STATE"]
    return [states[-1]] if states else []


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--binary", default=os.path.join(ROOT, "build", "source-lua"))
    args = parser.parse_args()
    binary = os.path.abspath(args.binary)
    with tempfile.TemporaryDirectory() as work:
        with PolygonServer(Path(work) / "server") as server:
            config = os.path.join(work, "config.json")
            with open(config, "w") as f:
                json.dump({"api_key": "sl-test-key-0001", "stock_ticker": "TSLA,AAPL",
                           "start_date": time.strftime("%Y-%m-%d", time.gmtime(time.time() - 14 * 86400)),
                           "base_url": server.base_url}, f)
            print(f"Local Polygon-compatible server on {server.base_url}; config: {json.load(open(config))}"
                  .replace("sl-test-key-0001", "****"))
            full = os.path.join(ROOT, "catalogs", "fullrefresh_configured_catalog.json")
            incr = os.path.join(ROOT, "catalogs", "incremental_configured_catalog.json")
            run(binary, "spec", ["spec"])
            run(binary, "check", ["check", "--config", config])
            run(binary, "discover", ["discover", "--config", config])
            run(binary, "read: full refresh", ["read", "--config", config, "--catalog", full])
            three_days_ago = dt.datetime.now(dt.timezone.utc).replace(microsecond=0) - dt.timedelta(days=3)
            print(f"\nThe server now pretends it is {three_days_ago:%Y-%m-%dT%H:%M:%SZ}: the last days' bars are not "
                  "published yet.")
            server.set_clock(three_days_ago)
            first = run(binary, "read: incremental, no state", ["read", "--config", config, "--catalog", incr])
            server.set_clock(None)
            print("\nThe server's clock is back to now: the missing days have been published.")
            state = os.path.join(work, "state.json")
            with open(state, "w") as f:
                json.dump(last_state(first), f)
            print(f"\n  state handed to the next run: {open(state).read()}")
            second = run(binary, "read: incremental, resumed from that state",
                         ["read", "--config", config, "--catalog", incr, "--state", state])
            repeated = sum(1 for m in second if m["type"] == "RECORD")
            print(f"\nThe resumed read sent {repeated} record(s): only the days published since, none twice.")


if __name__ == "__main__":
    main()
