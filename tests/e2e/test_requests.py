"""Requests as tables: what request(ctx), parse's next page and http.request/get/post may send
(method, query, headers, a body as text, JSON or form), against a small server of the test's own
that records every request and pages a search API by a cursor in the POST body, as HubSpot's
CRM search does (POST .../search, {"after": ...} -> {"results": [...], "paging": {"next":
{"after": ...}}})."""

from __future__ import annotations

import json
import urllib.parse

import pytest

from .stub_server import JsonHandler, StubServer

from .conftest import utc

AFTER_CLOSE = utc(2022, 3, 11, 22, 0)
ITEMS = [{"id": str(i), "name": f"item {i}"} for i in range(1, 8)]


class Recorder(StubServer):
    def __init__(self):
        super().__init__(Handler)
        self.requests = []
        self.statuses = {}  # path -> list of statuses to answer, in turn


class Handler(JsonHandler):
    def handle_any(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode() if length else None
        url = urllib.parse.urlsplit(self.path)
        seen = {"method": self.command, "path": url.path, "query": url.query,
                "content_type": self.headers.get("Content-Type"), "auth": self.headers.get("Authorization"),
                "body": body}
        self.server.requests.append(seen)
        queue = self.server.statuses.get(url.path)
        if queue:
            status, headers = queue.pop(0)
            return self.answer(status, {"status": "error", "message": f"HTTP {status}"}, headers)
        query = dict(urllib.parse.parse_qsl(url.query))
        if url.path == "/offset":
            offset, limit = int(query.get("offset", 0)), int(query.get("limit", 2))
            return self.answer(200, {"items": ITEMS[offset:offset + limit]})
        if url.path == "/pages":
            page, size = int(query.get("page", 1)), int(query.get("per_page", 2))
            return self.answer(200, ITEMS[(page - 1) * size:page * size])
        if url.path == "/linked":
            page = int(query.get("page", 1))
            links = [f'<{self.server.url}/linked?page={page + 1}>; rel="next"'] if page * 3 < len(ITEMS) else []
            links.append(f'<{self.server.url}/linked?page=1>; rel="first"')
            return self.answer(200, ITEMS[(page - 1) * 3:page * 3], [("Link", ", ".join(links))])
        if url.path == "/nested":
            reply = {"meta": {"count": len(ITEMS)}, "data": {"kind": "list", "items": ITEMS[:4]},
                     "other": {"items": [{"id": "not me"}]}}
            return self.answer(200, reply)
        if url.path == "/cursor":
            at = int(query.get("after", 0))
            reply = {"data": ITEMS[at:at + 3], "meta": {"next": str(at + 3) if at + 3 < len(ITEMS) else None}}
            return self.answer(200, reply)
        if url.path.startswith("/tickers/"):
            name = url.path.rsplit("/", 1)[1]
            if name.startswith("GONE"):
                return self.answer(404, {"status": "NOT_FOUND", "message": f"Ticker not found: {name}"})
            return self.answer(200, {"status": "OK", "results": {"id": name, "name": f"{name} Inc."}})
        if url.path == "/crm/v3/objects/contacts/search":
            if self.command != "POST":
                return self.answer(405, {"status": "error", "message": "Method Not Allowed"})
            ask = json.loads(body or "{}")
            after = int(ask.get("after") or 0)
            limit = int(ask.get("limit") or 3)
            page = ITEMS[after:after + limit]
            reply = {"total": len(ITEMS), "results": page}
            if after + limit < len(ITEMS):
                reply["paging"] = {"next": {"after": str(after + limit)}}
            return self.answer(200, reply)
        return self.answer(200, seen)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = handle_any


@pytest.fixture
def recorder():
    server = Recorder().start()
    yield server
    server.shutdown()
    server.server_close()


SEARCH_SCRIPT = """\
return {
  spec = { connectionSpecification = { type = "object", properties = {
    api_key = { type = "string", airbyte_secret = true }, base_url = { type = "string" } } } },
  check = function() return true end,
  streams = { {
    name = "stock_prices",
    json_schema = { type = "object", properties = { id = { type = "string" }, name = { type = "string" } } },
    primary_key = "id",
    request = function(ctx)
      return %(first)s
    end,
    parse = function(ctx, response)
      local body = response.body
      local next = body.paging and body.paging.next
      if not next then return body.results end
      return body.results, { url = response.url, method = "POST", json = { limit = 3, after = next.after } }
    end,
  } },
}
"""
FIRST_SEARCH = ('{ url = ctx.config.base_url .. "/crm/v3/objects/contacts/search", method = "post",\n'
                '        headers = { Authorization = "Bearer " .. ctx.config.api_key }, json = { limit = 3 } }')


def search_script(tmp_path, first=FIRST_SEARCH, name="search.lua"):
    path = tmp_path / name
    path.write_text(SEARCH_SCRIPT % {"first": first}, encoding="utf-8")
    return path


def read(connector, recorder, script, **kw):
    return connector.read(connector.config(base_url=recorder.url), catalog="full_refresh", now=AFTER_CLOSE,
                          flags=("--script", script), **kw)


def test_a_search_api_is_paged_by_a_cursor_in_the_post_body(connector, recorder, tmp_path):
    result = read(connector, recorder, search_script(tmp_path)).assert_complete()
    assert [d["id"] for d in result.data] == [item["id"] for item in ITEMS]
    sent = recorder.requests
    assert [r["method"] for r in sent] == ["POST"] * 3
    assert [json.loads(r["body"]) for r in sent] == [{"limit": 3}, {"after": "3", "limit": 3},
                                                     {"after": "6", "limit": 3}]
    assert all(r["content_type"] == "application/json" for r in sent)
    # The next request had no headers of its own: it kept the first one's.
    assert all(r["auth"] == "Bearer " + connector.config()["api_key"] for r in sent)


def test_a_post_is_not_repeated_after_an_answer_that_may_have_processed_it(connector, recorder, tmp_path):
    recorder.statuses["/crm/v3/objects/contacts/search"] = [(500, ())]
    result = read(connector, recorder, search_script(tmp_path))
    assert result.returncode != 0 and result.data == [], result.describe()
    assert len(recorder.requests) == 1
    assert "HTTP 500" in result.errors[-1]["message"], result.describe()


def test_a_post_is_repeated_after_a_429(connector, recorder, tmp_path):
    recorder.statuses["/crm/v3/objects/contacts/search"] = [(429, [("Retry-After", "0")]),
                                                            (503, [("Retry-After", "0")])]
    result = read(connector, recorder, search_script(tmp_path)).assert_complete()
    assert [d["id"] for d in result.data] == [item["id"] for item in ITEMS]
    assert len(recorder.requests) == 5


def test_an_idempotent_post_is_repeated_after_a_500(connector, recorder, tmp_path):
    recorder.statuses["/crm/v3/objects/contacts/search"] = [(500, ())]
    first = FIRST_SEARCH.replace("json = {", "idempotent = true, json = {")
    result = read(connector, recorder, search_script(tmp_path, first))
    assert result.returncode == 0, result.describe()
    assert len(recorder.requests) == 4


@pytest.mark.parametrize("first,message", [
    ('{ url = ctx.config.base_url .. "/x", methd = "POST" }', "unknown key 'methd' (did you mean method?)"),
    ('{ url = ctx.config.base_url .. "/x", method = "FETCH" }', "method 'FETCH'"),
    ('{ url = ctx.config.base_url .. "/x", body = "a", json = {} }', "one of body, json and form"),
    ('{ url = ctx.config.base_url .. "/x", json = { a = 1 } }', "a GET has no body"),
    ('{ method = "POST" }', "url is missing"),
    ('{ url = ctx.config.base_url .. "/x", query = { a = {} , b = function() end } }', "query.b is a function"),
    # A list in a list, or a list that holds itself, has no query spelling (it recursed without end).
    ('{ url = ctx.config.base_url .. "/x", query = { a = { { 1 } } } }', "query.a holds a table"),
])
def test_a_request_table_with_a_mistake_is_a_config_error(connector, recorder, tmp_path, first, message):
    result = read(connector, recorder, search_script(tmp_path, first))
    assert result.returncode != 0 and recorder.requests == [], result.describe()
    error = result.errors[-1]
    assert message in error["message"] and error["failure_type"] == "config_error", error


CHECK_SCRIPT = """\
return {
  spec = { connectionSpecification = { type = "object", properties = { base_url = { type = "string" } } } },
  check = function(config)
    local out = {}
    for _, call in ipairs({
      function() return http.get(config.base_url .. "/echo", { query = { q = "a b&c", n = 32923, list = { 1, 2 } } }) end,
      function() return http.post(config.base_url .. "/echo", { form = { user = "me", note = "x=y" } }) end,
      function() return http.request({ url = config.base_url .. "/echo?x=1", method = "PUT", body = "raw",
                                       content_type = "text/plain" }) end,
      function() return http.request(config.base_url .. "/echo") end,
    }) do
      local status, body, headers = call()
      local seen = json.decode(body)
      local function text(v) return type(v) == "string" and v or "null" end
      out[#out + 1] = table.concat({ status, headers["Content-Type"], seen.method, seen.query,
                                     text(seen.content_type), text(seen.body) }, " ")
    end
    return false, table.concat(out, "\\n")
  end,
  streams = { { name = "s", json_schema = { type = "object" }, request = function() return "http://x/" end,
                parse = function() return {} end } },
}
"""


def test_http_request_get_and_post_send_what_they_are_given(connector, recorder, tmp_path):
    path = tmp_path / "check.lua"
    path.write_text(CHECK_SCRIPT, encoding="utf-8")
    result = connector.check({"base_url": recorder.url}, flags=("--script", path))
    lines = result.connection_status["message"].split("\n")
    assert lines == [
        "200 application/json GET list=1&list=2&n=32923&q=a%20b%26c null null",
        "200 application/json POST  application/x-www-form-urlencoded note=x%3Dy&user=me",
        "200 application/json PUT x=1 text/plain raw",
        "200 application/json GET  null null",
    ], lines


CHILD_SCRIPT = """\
return {
  spec = { connectionSpecification = { type = "object", properties = {
    api_key = { type = "string", airbyte_secret = true }, base_url = { type = "string" } } } },
  check = function() return true end,
  streams = { {
    name = "stock_prices",
    json_schema = { type = "object", properties = { id = { type = "string" }, name = { type = "string" } } },
    primary_key = "id",
    partitions = function() return { "AAA", "GONE1", "BBB" } end,
    errors = { %(rules)s },
    request = function(ctx) return ctx.config.base_url .. "/tickers/" .. ctx.partition end,
    parse = function(ctx, response) return { response.body.results } end,
  } },
}
"""


def child_script(tmp_path, rules: str, name="children.lua"):
    path = tmp_path / name
    path.write_text(CHILD_SCRIPT % {"rules": rules}, encoding="utf-8")
    return path


def test_an_ignored_404_skips_that_partition_and_the_read_goes_on(connector, recorder, tmp_path):
    script = child_script(tmp_path, '{ status = 404, action = "ignore" }')
    result = read(connector, recorder, script).assert_complete()
    assert sorted(d["id"] for d in result.data) == ["AAA", "BBB"]
    warnings = [m["log"]["message"] for m in result.of("LOG") if m["log"]["level"] == "WARN"]
    assert len(warnings) == 1 and "stock_prices[GONE1]: HTTP 404" in warnings[0], warnings
    assert "ignored (errors[1]): Ticker not found: GONE1" in warnings[0], warnings
    summaries = [m["log"]["message"] for m in result.of("LOG") if "answers ignored" in m["log"]["message"]]
    assert summaries == ["stock_prices[GONE1]: 0 records emitted; 1 answers ignored by an errors rule "
                         "(their windows count as read)"], summaries


def test_without_a_rule_a_404_ends_the_read(connector, recorder, tmp_path):
    result = read(connector, recorder, child_script(tmp_path, ""))
    assert result.returncode != 0
    assert result.errors[-1]["failure_type"] == "config_error", result.describe()


@pytest.mark.parametrize("rules,failure_type", [
    ('{ status = { 400, 404 }, action = "fail", failure_type = "transient_error" }', "transient_error"),
    ('{ message = "not found", action = "fail", failure_type = "system_error" }', "system_error"),
    ('{ message = "no such text", action = "ignore" }, { status = 404, action = "fail" }', "config_error"),
])
def test_a_fail_rule_sets_the_failure_type(connector, recorder, tmp_path, rules, failure_type):
    result = read(connector, recorder, child_script(tmp_path, rules))
    assert result.returncode != 0
    error = result.errors[-1]
    assert error["failure_type"] == failure_type and "HTTP 404" in error["message"], error


def test_a_retry_rule_asks_again(connector, recorder, tmp_path):
    recorder.statuses["/tickers/BBB"] = [(409, [("Retry-After", "0")])]
    script = child_script(tmp_path, '{ status = 409, action = "retry" }, { status = 404, action = "ignore" }')
    result = read(connector, recorder, script).assert_complete()
    assert sorted(d["id"] for d in result.data) == ["AAA", "BBB"]
    assert [r["path"] for r in recorder.requests].count("/tickers/BBB") == 2


@pytest.mark.parametrize("rules,message", [
    ('{ status = 404, actoin = "ignore" }', "errors[1]: unknown key 'actoin' (did you mean action?)"),
    ('{ status = 404, action = "ignor" }', "action 'ignor' is none of retry, ignore and fail (did you mean ignore?)"),
    ('{ action = "ignore" }', "errors[1]: needs a status or a message to match"),
    ('{ status = 99, action = "ignore" }', "status must be an HTTP status"),
    ('{ status = 404, action = "ignore", failure_type = "config_error" }', "failure_type goes with action"),
    ('{ status = 404, action = "fail", failure_type = "fatal" }', "failure_type 'fatal'"),
])
def test_an_errors_rule_with_a_mistake_is_refused_at_load(connector, recorder, tmp_path, rules, message):
    result = read(connector, recorder, child_script(tmp_path, rules))
    assert result.returncode != 0 and recorder.requests == [], result.describe()
    assert message in result.errors[-1]["message"], result.errors


PAGED_SCRIPT = """\
return {
  spec = { connectionSpecification = { type = "object", properties = {
    api_key = { type = "string", airbyte_secret = true }, base_url = { type = "string" } } } },
  check = function() return true end,
  streams = { {
    name = "stock_prices",
    json_schema = { type = "object", properties = { id = { type = "string" }, name = { type = "string" } } },
    primary_key = "id",
    paginator = %(paginator)s,
    request = function(ctx) return %(request)s end,
    parse = function(ctx, response) return %(records)s end,
  } },
}
"""

PAGINATORS = {
    "offset": ('{ type = "offset", limit = 2 }', 'ctx.config.base_url .. "/offset"', "response.body.items",
               ["offset=0&limit=2", "limit=2&offset=2", "limit=2&offset=4", "limit=2&offset=6"]),
    "page": ('{ type = "page", size = 3, size_param = "per_page" }', 'ctx.config.base_url .. "/pages?sort=id"',
             "response.body", ["sort=id&page=1&per_page=3", "sort=id&per_page=3&page=2",
                               "sort=id&per_page=3&page=3"]),
    "link": ('{ type = "link" }', 'ctx.config.base_url .. "/linked"', "response.body",
             ["", "page=2", "page=3"]),
    "cursor-query": ('{ type = "cursor", path = "meta.next", param = "after" }', 'ctx.config.base_url .. "/cursor"',
                     "response.body.data", ["", "after=3", "after=6"]),
    "cursor-json": ('{ type = "cursor", path = "paging.next.after", param = "after", into = "json" }',
                    '{ url = ctx.config.base_url .. "/crm/v3/objects/contacts/search", method = "POST", '
                    'json = { limit = 3 } }', "response.body.results", ["", "", ""]),
}


@pytest.mark.parametrize("kind", list(PAGINATORS))
def test_a_declared_paginator_reads_every_page(connector, recorder, tmp_path, kind):
    paginator, request, records, queries = PAGINATORS[kind]
    path = tmp_path / f"{kind}.lua"
    path.write_text(PAGED_SCRIPT % {"paginator": paginator, "request": request, "records": records},
                    encoding="utf-8")
    result = read(connector, recorder, path).assert_complete()
    assert [d["id"] for d in result.data] == [item["id"] for item in ITEMS]
    assert [r["query"] for r in recorder.requests] == queries
    if kind == "cursor-json":
        assert [json.loads(r["body"]) for r in recorder.requests] == [
            {"limit": 3}, {"after": "3", "limit": 3}, {"after": "6", "limit": 3}]


@pytest.mark.parametrize("paginator,message", [
    ('{ type = "links" }', 'type must be "link", "offset", "page" or "cursor" (did you mean link?)'),
    ('{ type = "offset" }', "needs limit"),
    ('{ type = "offset", limit = 2, ofset_param = "o" }', "unknown key 'ofset_param' (did you mean offset_param?)"),
    ('{ type = "cursor", path = "next" }', "needs path"),
    ('{ type = "cursor", path = "next", param = "after", into = "body" }', 'into must be "query" or "json"'),
    ('"link"', "paginator must be a table"),
])
def test_a_paginator_with_a_mistake_is_refused_at_load(connector, recorder, tmp_path, paginator, message):
    path = tmp_path / "bad.lua"
    path.write_text(PAGED_SCRIPT % {"paginator": paginator, "request": 'ctx.config.base_url .. "/offset"',
                                    "records": "response.body.items"}, encoding="utf-8")
    result = read(connector, recorder, path)
    assert result.returncode != 0 and recorder.requests == [], result.describe()
    assert "stream 'stock_prices': paginator" in result.errors[-1]["message"], result.errors
    assert message in result.errors[-1]["message"], result.errors


DECLARED_ROOT = """\
local ITEMS = records.declare { list = "$", fields = { { "id", from = "id" }, { "name", from = "name" } } }
return {
  spec = { connectionSpecification = { type = "object", properties = {
    api_key = { type = "string", airbyte_secret = true }, base_url = { type = "string" } } } },
  check = function() return true end,
  streams = { {
    name = "stock_prices",
    json_schema = { type = "object", properties = { id = { type = "string" }, name = { type = "string" } } },
    primary_key = "id",
    paginator = { type = "page", size = 3 },
    request = function(ctx) return ctx.config.base_url .. "/pages" end,
    parse = function(ctx, response) return ITEMS:map(ctx, response) end,
  } },
}
"""


def test_declared_records_from_a_page_that_is_an_array(connector, recorder, tmp_path):
    path = tmp_path / "root.lua"
    path.write_text(DECLARED_ROOT, encoding="utf-8")
    result = read(connector, recorder, path).assert_complete()
    assert result.data == ITEMS
    assert [r["query"] for r in recorder.requests] == ["page=1&per_page=3", "per_page=3&page=2",
                                                      "per_page=3&page=3"]


def test_a_root_list_with_a_next_url_member_is_refused(connector, recorder, tmp_path):
    path = tmp_path / "root-next.lua"
    path.write_text(DECLARED_ROOT.replace('list = "$",', 'list = "$", next_url = "next",'), encoding="utf-8")
    result = read(connector, recorder, path)
    assert result.returncode != 0 and recorder.requests == []
    assert "leaves no member for next_url" in result.errors[-1]["message"], result.errors


DECLARED_NESTED = DECLARED_ROOT.replace('list = "$"', 'list = "data.items"').replace(
    'paginator = { type = "page", size = 3 },', '').replace('"/pages"', '"/nested"')


def test_declared_records_under_a_dotted_path(connector, recorder, tmp_path):
    path = tmp_path / "nested.lua"
    path.write_text(DECLARED_NESTED, encoding="utf-8")
    result = read(connector, recorder, path).assert_complete()
    assert result.data == ITEMS[:4]
