"""The parent-stream scenario of `make bench`: a list of 1,000 parents in ten pages linked by
next_url, and for each parent a page of its children (five records), read as a child stream
(`parent = {stream = "parents", field = "id"}`) with the bench's concurrency.

Its floor is what no client can beat on this machine: curl fetching the parents' ten pages one
after another (each names the next), then the 1,000 children's pages with the same concurrency,
all to /dev/null. Rounds alternate the sync and the floor, and the figure is the median of each
round's sync/floor ratio (target: at most 1.5x)."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import tempfile
import time

from page_server import PageServer

PARENTS = 1000
PARENTS_PER_PAGE = 100
CHILDREN_EACH = 5

SCRIPT = """\
local PARENTS = records.declare {
  list = "results", next_url = "next_url",
  fields = { { "id", from = "id" }, { "name", from = "name" } },
}
local CHILDREN = records.declare {
  list = "results",
  fields = { { "id", from = "id" }, { "parent", context = "partition" }, { "value", from = "value" } },
}
return {
  spec = { connectionSpecification = { type = "object", properties = { base_url = { type = "string" } } } },
  check = function() return true end,
  streams = {
    { name = "parents", json_schema = { type = "object" }, primary_key = "id",
      request = function(ctx) return ctx.config.base_url .. "/parents?page=1" end,
      parse = function(ctx, response) return PARENTS:map(ctx, response) end },
    { name = "children", json_schema = { type = "object" }, primary_key = "id",
      parent = { stream = "parents", field = "id" },
      request = function(ctx) return ctx.config.base_url .. "/children/" .. ctx.partition end,
      parse = function(ctx, response) return CHILDREN:map(ctx, response) end },
  },
}
"""


def pages(base_url: str) -> dict:
    bodies = {}
    for page in range(1, PARENTS // PARENTS_PER_PAGE + 1):
        first = (page - 1) * PARENTS_PER_PAGE
        body = {"results": [{"id": f"p{i:05d}", "name": f"parent {i}"} for i in range(first, first + PARENTS_PER_PAGE)]}
        if page < PARENTS // PARENTS_PER_PAGE:
            body["next_url"] = f"{base_url}/parents?page={page + 1}"
        bodies[f"/parents?page={page}"] = json.dumps(body).encode()
    for i in range(PARENTS):
        body = {"results": [{"id": f"c{i:05d}-{k}", "value": i * 10 + k} for k in range(CHILDREN_EACH)]}
        bodies[f"/children/p{i:05d}"] = json.dumps(body).encode()
    return bodies


def timed(argv) -> float:
    start = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - start


def run(binary: str, concurrency: int, rounds: int = 7) -> list:
    """The scenario's lines for the bench's report."""
    holder = {}
    server = PageServer({}, lambda target: target, lambda key: holder["bodies"].get(key))
    base_url = f"http://127.0.0.1:{server.port}"
    holder["bodies"] = pages(base_url)
    try:
        with tempfile.TemporaryDirectory() as work:
            script = os.path.join(work, "parents.lua")
            config = os.path.join(work, "config.json")
            catalog = os.path.join(work, "catalog.json")
            with open(script, "w") as f:
                f.write(SCRIPT)
            with open(config, "w") as f:
                json.dump({"base_url": base_url, "concurrency": concurrency}, f)
            with open(catalog, "w") as f:
                json.dump({"streams": [{"stream": {"name": "children", "json_schema": {},
                                                   "supported_sync_modes": ["full_refresh"]},
                                        "sync_mode": "full_refresh", "destination_sync_mode": "overwrite"}]}, f)
            sync = [binary, "--script", script, "read", "--config", config, "--catalog", catalog]
            out = subprocess.run(sync, capture_output=True, text=True, check=True).stdout
            records = out.count('"type":"RECORD"')
            if records != PARENTS * CHILDREN_EACH:
                return [f"parent stream: not measured: {records} records, not {PARENTS * CHILDREN_EACH}"]
            parent_urls = [base_url + f"/parents?page={p}" for p in range(1, PARENTS // PARENTS_PER_PAGE + 1)]
            child_urls = [base_url + f"/children/p{i:05d}" for i in range(PARENTS)]
            floor = ["sh", "-c", 'curl -s --fail "$@" >/dev/null', "sh"]
            for url in parent_urls:
                floor += ["-o", "/dev/null", url]
            floor_children = ["curl", "-s", "--fail", "--parallel", "--parallel-max", str(concurrency)]
            for url in child_urls:
                floor_children += ["-o", "/dev/null", url]
            syncs, floors = [], []
            for _ in range(rounds):
                syncs.append(timed(sync))
                # the parents' pages one after another (each names the next), then the children
                floors.append(timed(floor) + timed(floor_children))
    finally:
        server.shutdown()
    ratios = [s / f for s, f in zip(syncs, floors)]
    ratio = statistics.median(ratios)
    verdict = "meets target" if ratio <= 1.5 else "MISSES target"
    return [f"parent stream: {PARENTS:,} children of {PARENTS // PARENTS_PER_PAGE} parent pages, concurrency "
            f"{concurrency}: {records:,} records in {min(syncs):.3f} s (best of {rounds}; median "
            f"{statistics.median(syncs):.3f} s); floor (curl: parent pages in turn, then the children) "
            f"{min(floors):.3f} s; sync/floor = {ratio:.2f}x (median of the rounds' ratios)  [{verdict}: <= 1.5x]"]


if __name__ == "__main__":
    import argparse
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--binary", default="build/source-lua")
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    print("\n".join(run(os.path.abspath(args.binary), args.concurrency)))
