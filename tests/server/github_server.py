#!/usr/bin/env python3
"""A local stand-in for GitHub's REST API, the part scripts/examples/github_issues.lua reads:

  GET /repos/{owner}/{repo}/issues        list a repository's issues (pull requests included)
  GET /repositories/{id}/issues            the same, where GitHub's Link header points
  GET /repos/{owner}/{repo}                the repository (check uses it)

As documented (docs.github.com/rest/issues/issues#list-repository-issues, .../using-pagination-in
-the-rest-api): query parameters state (open, closed, all; default open), since (ISO 8601; issues
updated at or after it), sort (created, updated, comments; default created), direction (asc, desc;
default desc), per_page (default 30, at most 100) and page (default 1). Pages are linked by a
`Link` header (`<url>; rel="next", <url>; rel="last"`, and first/prev past page 1) whose URLs use
the /repositories/{id}/ path, as GitHub's do. A token goes in `Authorization: Bearer` (or
`token`); a wrong one is 401 {"message": "Bad credentials", ...}; an unknown repository 404
{"message": "Not Found", ...}; a bad parameter 422. Without a token public repositories answer.

Each repository holds `issues` issues with ids, numbers, titles, states and times drawn from its
name, updated between 2024-01-01 and 2024-06-30 with some times shared by several issues. The
control API changes them: POST /_control/touch {"repo": "o/r", "number": n, "updated_at": "..."}
and GET /_control/requests (the requests so far, the token left out).
"""
from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import re
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

UTC = dt.timezone.utc
FIRST = dt.datetime(2024, 1, 1, tzinfo=UTC)
SPAN_S = 181 * 86400
DOCS = "https://docs.github.com/rest"
ISSUES = re.compile(r"^/repos/([^/]+)/([^/]+)/issues/?$")
ISSUES_BY_ID = re.compile(r"^/repositories/(\d+)/issues/?$")
REPO = re.compile(r"^/repos/([^/]+)/([^/]+)/?$")


def stamp(t: dt.datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_stamp(text: str) -> dt.datetime | None:
    try:
        t = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def draw(*parts) -> int:
    return int.from_bytes(hashlib.sha256("/".join(map(str, parts)).encode()).digest()[:8], "big")


def make_issues(full_name: str, repo_id: int, count: int) -> list:
    issues = []
    for number in range(1, count + 1):
        created = FIRST + dt.timedelta(seconds=draw(full_name, number, "c") % (SPAN_S // 2))
        # Every fifth issue shares its update time with the one before: ties across pages.
        base = number - 1 if number % 5 == 0 else number
        updated = created + dt.timedelta(seconds=draw(full_name, base, "u") % (SPAN_S // 2))
        closed = draw(full_name, number, "s") % 3 == 0
        issue = {
            "id": repo_id * 100000 + number,
            "node_id": "I_%x" % draw(full_name, number),
            "number": number,
            "title": f"Issue {number} of {full_name}",
            "state": "closed" if closed else "open",
            "user": {"login": "user%d" % (draw(full_name, number, "user") % 7), "id": 1000 + number % 7},
            "labels": [{"name": "bug"}] if number % 4 == 0 else [],
            "comments": draw(full_name, number, "n") % 12,
            "created_at": stamp(created),
            "updated_at": stamp(updated),
            "closed_at": stamp(updated) if closed else None,
            "body": f"Body of issue {number}" if number % 3 else None,
            "url": f"https://api.github.com/repos/{full_name}/issues/{number}",
        }
        if number % 6 == 0:
            issue["pull_request"] = {"url": f"https://api.github.com/repos/{full_name}/pulls/{number}"}
        issues.append(issue)
    return issues


class GitHubServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, port: int = 0, token: str = "ghp_test_token_0001", repos=("octo/alpha", "octo/beta"),
                 issues: int = 250):
        super().__init__(("127.0.0.1", port), Handler)
        self.token = token
        self.lock = threading.Lock()
        self.repos = {}
        for index, name in enumerate(repos):
            repo_id = 1000 + index
            self.repos[name.lower()] = {"id": repo_id, "full_name": name,
                                        "issues": make_issues(name, repo_id, issues)}
        self.requests = []

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def start(self) -> "GitHubServer":
        # A short poll: stop() waits for it, once a test or golden case.
        threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()

    def set_clock(self, now) -> None:
        """Nothing: the issues do not depend on the time (the e2e Connector sets every server's)."""

    def touch(self, repo: str, number: int, updated_at: str) -> None:
        with self.lock:
            issue = self.repos[repo.lower()]["issues"][number - 1]
            issue["updated_at"] = updated_at

    def expected(self, repo: str, since: str | None = None) -> list:
        """The issues of repo updated at or after since, by update time then number."""
        start = parse_stamp(since) if since else None
        with self.lock:
            chosen = [dict(i) for i in self.repos[repo.lower()]["issues"]
                      if start is None or parse_stamp(i["updated_at"]) >= start]
        return sorted(chosen, key=lambda i: (i["updated_at"], i["number"]))


class Handler(BaseHTTPRequestHandler):
    server: GitHubServer

    def log_message(self, *args):
        pass

    def send_json(self, status, value, headers=()):
        data = json.dumps(value).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-GitHub-Media-Type", "github.v3; format=json")
        self.send_header("X-RateLimit-Limit", "5000")
        self.send_header("X-RateLimit-Remaining", "4999")
        for name, value_ in headers:
            self.send_header(name, value_)
        self.end_headers()
        self.wfile.write(data)

    def error(self, status, message, **extra):
        self.send_json(status, {"message": message, "documentation_url": DOCS, "status": str(status), **extra})

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        if self.path == "/_control/touch":
            self.server.touch(body["repo"], int(body["number"]), body["updated_at"])
            return self.send_json(200, {"ok": True})
        return self.error(404, "Not Found")

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        if url.path == "/_control/requests":
            with self.server.lock:
                return self.send_json(200, list(self.server.requests))
        params = dict(urllib.parse.parse_qsl(url.query, keep_blank_values=True))
        with self.server.lock:
            self.server.requests.append({"path": url.path, "query": params,
                                         "accept": self.headers.get("Accept"),
                                         "authorized": "Authorization" in self.headers})
        auth = self.headers.get("Authorization")
        if auth is not None:
            scheme, _, token = auth.partition(" ")
            if scheme.lower() not in ("bearer", "token") or token != self.server.token:
                return self.error(401, "Bad credentials")
        repo = self.find_repo(url.path)
        if repo is None:
            return self.error(404, "Not Found")
        if REPO.match(url.path) and not ISSUES.match(url.path):
            return self.send_json(200, {"id": repo["id"], "full_name": repo["full_name"], "private": False})
        return self.list_issues(repo, params)

    def find_repo(self, path):
        m = ISSUES.match(path) or REPO.match(path)
        if m:
            return self.server.repos.get(f"{m.group(1)}/{m.group(2)}".lower())
        m = ISSUES_BY_ID.match(path)
        if m:
            return next((r for r in self.server.repos.values() if r["id"] == int(m.group(1))), None)
        return None

    def list_issues(self, repo, params):
        state = params.get("state", "open")
        sort = params.get("sort", "created")
        direction = params.get("direction", "desc")
        if state not in ("open", "closed", "all") or sort not in ("created", "updated", "comments") \
                or direction not in ("asc", "desc"):
            return self.error(422, "Validation Failed", errors=[{"resource": "Issue", "code": "invalid"}])
        since = None
        if "since" in params:
            since = parse_stamp(params["since"])
            if since is None:
                return self.error(422, "Validation Failed",
                                  errors=[{"resource": "Issue", "field": "since", "code": "invalid"}])
        try:
            per_page = min(int(params.get("per_page", 30)), 100)
            page = max(int(params.get("page", 1)), 1)
        except ValueError:
            return self.error(422, "Validation Failed")
        with self.server.lock:
            issues = [dict(i) for i in repo["issues"]]
        chosen = [i for i in issues if (state == "all" or i["state"] == state)
                  and (since is None or parse_stamp(i["updated_at"]) >= since)]
        key = {"created": lambda i: (i["created_at"], i["number"]),
               "updated": lambda i: (i["updated_at"], i["number"]),
               "comments": lambda i: (i["comments"], i["number"])}[sort]
        chosen.sort(key=key, reverse=direction == "desc")
        last = max((len(chosen) + per_page - 1) // per_page, 1)
        body = chosen[(page - 1) * per_page:page * per_page]
        links = []

        def link(n, rel):
            query = dict(params, page=str(n))
            links.append(f'<http://{self.headers.get("Host")}/repositories/{repo["id"]}/issues?'
                         f'{urllib.parse.urlencode(query)}>; rel="{rel}"')
        if page > 1:
            link(page - 1, "prev")
        if page < last:
            link(page + 1, "next")
            link(last, "last")
        if page > 1:
            link(1, "first")
        return self.send_json(200, body, headers=[("Link", ", ".join(links))] if links else [])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--port-file")
    parser.add_argument("--token", default="ghp_test_token_0001")
    parser.add_argument("--issues", type=int, default=250)
    args = parser.parse_args()
    server = GitHubServer(args.port, args.token, issues=args.issues)
    if args.port_file:
        with open(args.port_file, "w") as f:
            f.write(str(server.server_address[1]))
    print(f"github_server: {server.base_url}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
