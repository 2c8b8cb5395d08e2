"""Tests of the HubSpot test server itself (tests/server/hubspot_server.py).

The connector's tests trust this server as a stand-in for api.hubapi.com's contacts search and
OAuth token endpoint, so its tokens, filters, sorting, paging, limits and error bodies are
checked here. Run: /usr/bin/python3 -m pytest -q tests/server/test_hubspot_server.py
"""

import datetime as dt
import http.client
import json
import os
import re
import subprocess
import sys
import time
import urllib.parse

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from hubspot_server import (  # noqa: E402
    CLIENT_ID, CLIENT_SECRET, REFRESH_TOKEN, SEARCH_PATH, TOKEN_PATH, HubSpotServer, iso_ms, make_contacts,
    parse_instant)

ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
DEFAULTS = {"firstname", "lastname", "email", "lastmodifieddate", "hs_object_id", "createdate"}


class Client:
    """http.client against one server: (status, headers, parsed JSON body)."""

    def __init__(self, server):
        self.server = server
        self.port = server.server_address[1]
        self.token = None

    def request(self, method, path, body=None, headers=None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            raw = resp.read()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, json.loads(raw) if raw else None
        finally:
            conn.close()

    def refresh(self, refresh_token=REFRESH_TOKEN, client_id=CLIENT_ID, client_secret=CLIENT_SECRET,
                grant_type="refresh_token", content_type="application/x-www-form-urlencoded"):
        form = {"grant_type": grant_type, "client_id": client_id, "client_secret": client_secret,
                "refresh_token": refresh_token}
        form = {k: v for k, v in form.items() if v is not None}
        return self.request("POST", TOKEN_PATH, urllib.parse.urlencode(form), {"Content-Type": content_type})

    def login(self):
        status, _, body = self.refresh()
        assert status == 200, body
        self.token = body["access_token"]
        return self.token

    def search(self, body=None, token=None, raw=None):
        token = token or self.token or self.login()
        data = raw if raw is not None else json.dumps(body if body is not None else {})
        return self.request("POST", SEARCH_PATH, data,
                            {"Authorization": f"Bearer {token}", "Content-Type": "application/json"})

    def ok(self, body=None):
        status, _, answer = self.search(body)
        assert status == 200, answer
        return answer

    def walk(self, body):
        """Every result of a search, page by page, and the number of pages."""
        results, pages, after = [], 0, None
        while True:
            page = self.ok(dict(body, after=after) if after is not None else body)
            pages += 1
            results += page["results"]
            if "paging" not in page:
                return results, pages
            after = page["paging"]["next"]["after"]

    def control(self, method, name, body=None):
        status, _, answer = self.request(method, "/_control/" + name,
                                         json.dumps(body) if body is not None else None)
        assert status == 200, answer
        return answer


@pytest.fixture
def make():
    servers = []

    def start(**kwargs):
        server = HubSpotServer(**kwargs).start()
        servers.append(server)
        return Client(server)
    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def client(make):
    return make()


def gte(prop, value):
    return {"filterGroups": [{"filters": [{"propertyName": prop, "operator": "GTE", "value": value}]}]}


def error_body(body, category):
    assert body["status"] == "error" and body["category"] == category, body
    assert UUID.match(body["correlationId"]), body


# --------------------------------------------------------------------------------------------------
# the data
# --------------------------------------------------------------------------------------------------

def test_contacts_are_deterministic_and_in_range():
    contacts = make_contacts(250)
    assert contacts == make_contacts(250)
    assert list(contacts) == [str(i) for i in range(101, 351)]
    low = parse_instant("2024-01-01T00:00:00Z")
    high = parse_instant("2024-06-30T23:59:59.999Z")
    created = [c["created"] for c in contacts.values()]
    assert created == sorted(created), "ids grow with createdate: creation order is id order"
    for c in contacts.values():
        assert low <= c["created"] <= c["updated"] <= high
    nulls = {name: sum(c["props"][name] is None for c in contacts.values())
             for name in ("email", "lastname", "company", "phone", "lifecyclestage")}
    assert all(n > 0 for n in nulls.values()), nulls
    assert nulls["email"] < 50
    per_ms = {}
    for c in contacts.values():
        per_ms.setdefault(c["updated"], []).append(c["id"])
    sizes = sorted(len(ids) for ids in per_ms.values())
    assert sizes.count(2) >= 20 and max(sizes) >= 7, "ties of pairs and groups of seven"
    assert any(c["updated"] % 1000 for c in contacts.values()), "milliseconds are not all zero"


# --------------------------------------------------------------------------------------------------
# the token endpoint
# --------------------------------------------------------------------------------------------------

def test_a_refresh_gives_a_working_access_token(client):
    status, headers, body = client.refresh()
    assert status == 200 and headers["content-type"] == "application/json;charset=utf-8"
    assert body["token_type"] == "bearer" and body["expires_in"] == 1800
    assert body["refresh_token"] == REFRESH_TOKEN, "HubSpot keeps the refresh token"
    assert body["token_use"] == "access_token" and isinstance(body["hub_id"], int)
    assert len(body["access_token"]) <= 300
    status, _, answer = client.search({"limit": 1}, token=body["access_token"])
    assert status == 200 and len(answer["results"]) == 1
    assert client.server.token_requests == 1


@pytest.mark.parametrize("change, status_name", [
    ({"client_id": "someone-else"}, "BAD_CLIENT_ID"),
    ({"client_id": None}, "BAD_CLIENT_ID"),
    ({"client_secret": "wrong"}, "BAD_CLIENT_SECRET"),
    ({"refresh_token": "na1-0000-unknown"}, "BAD_REFRESH_TOKEN"),
    ({"refresh_token": None}, "BAD_REFRESH_TOKEN"),
    ({"grant_type": "password"}, "BAD_GRANT_TYPE"),
    ({"grant_type": "authorization_code"}, "BAD_AUTH_CODE"),
    # A JSON body is not read as a form: no grant_type (what HubSpot answers such a body).
    ({"content_type": "application/json"}, "BAD_GRANT_TYPE"),
])
def test_a_bad_token_request_is_400_with_hubspots_status(client, change, status_name):
    status, _, body = client.refresh(**change)
    assert status == 400
    assert body["status"] == status_name and body["message"] and UUID.match(body["correlationId"])
    if status_name == "BAD_REFRESH_TOKEN":
        assert body["message"] == "missing or unknown refresh token"
    assert client.server.issued == 0


def test_client_credentials_gives_an_access_token_without_refresh_token(client):
    status, _, body = client.refresh(grant_type="client_credentials", refresh_token=None)
    assert status == 200 and "refresh_token" not in body and body["token_use"] == "client_credentials"
    assert client.search({"limit": 1}, token=body["access_token"])[0] == 200


def test_rotation_retires_the_old_refresh_token(make):
    client = make(rotate_refresh_token=True)
    status, _, first = client.refresh()
    assert status == 200 and first["refresh_token"] != REFRESH_TOKEN
    assert client.server.current_refresh_token == first["refresh_token"]
    status, _, body = client.refresh(REFRESH_TOKEN)
    assert status == 400 and body["status"] == "BAD_REFRESH_TOKEN"
    status, _, second = client.refresh(first["refresh_token"])
    assert status == 200 and second["refresh_token"] not in (REFRESH_TOKEN, first["refresh_token"])
    assert client.refresh(first["refresh_token"])[0] == 400
    # Access tokens of earlier refreshes still work until they expire.
    assert client.search({"limit": 1}, token=first["access_token"])[0] == 200
    assert client.control("GET", "state")["current_refresh_token"] == second["refresh_token"]


def test_without_rotation_the_refresh_token_keeps_working(client):
    for _ in range(3):
        status, _, body = client.refresh()
        assert status == 200 and body["refresh_token"] == REFRESH_TOKEN
    assert client.server.token_requests == 3 and client.server.issued == 3


def test_fail_refresh(make):
    client = make(fail_refresh=True)
    status, _, body = client.refresh()
    assert status == 400 and body["status"] == "BAD_REFRESH_TOKEN"
    client.control("POST", "config", {"fail_refresh": 503})
    assert client.refresh()[0] == 503
    client.control("POST", "config", {"fail_refresh": False})
    assert client.refresh()[0] == 200


# --------------------------------------------------------------------------------------------------
# authentication of the search
# --------------------------------------------------------------------------------------------------

def test_a_missing_or_unknown_token_is_401_invalid_authentication(client):
    status, _, body = client.request("POST", SEARCH_PATH, "{}", {"Content-Type": "application/json"})
    assert status == 401
    error_body(body, "INVALID_AUTHENTICATION")
    assert body["message"].startswith("Authentication credentials not found. This API supports OAuth 2.0")
    status, _, body = client.search({}, token="CKnot-a-token")
    assert status == 401 and body["category"] == "INVALID_AUTHENTICATION"
    status, _, body = client.request("POST", SEARCH_PATH, "{}", {"Authorization": f"Basic {client.login()}"})
    assert status == 401


def test_an_expired_token_is_401_expired_authentication_and_a_refresh_mends_it(client):
    token = client.login()
    client.server.expire_tokens()
    status, _, body = client.search({}, token=token)
    assert status == 401
    error_body(body, "EXPIRED_AUTHENTICATION")
    assert re.fullmatch(r"The OAuth token used to make this call expired \d+ second\(s\) ago\.", body["message"])
    assert ISO_MS.match(body["context"]["expire time"][0])
    fresh = client.login()
    assert fresh != token and client.search({}, token=fresh)[0] == 200
    assert client.search({}, token=token)[0] == 401


def test_a_token_expires_after_its_lifetime(make):
    client = make(token_lifetime_s=30)
    before = time.time()
    status, _, body = client.refresh()
    assert body["expires_in"] == 30
    assert before + 30 <= client.server.access_tokens[body["access_token"]] <= time.time() + 30
    assert client.search({}, token=body["access_token"])[0] == 200
    gone = make(token_lifetime_s=0)
    token = gone.login()
    status, _, answer = gone.search({}, token=token)
    assert status == 401 and answer["category"] == "EXPIRED_AUTHENTICATION"
    gone.server.access_tokens[token] = time.time() - 3 * 3600 - 5
    assert "expired 3 hour(s) ago." in gone.search({}, token=token)[2]["message"]
    gone.server.access_tokens[token] = time.time() - 150
    assert "expired 2 minute(s) ago." in gone.search({}, token=token)[2]["message"]


def test_revoked_tokens(client):
    token = client.login()
    client.control("POST", "revoke_tokens", {})
    assert client.search({}, token=token)[2]["category"] == "INVALID_AUTHENTICATION"
    token = client.login()
    client.server.revoke_tokens(refresh=True)
    assert client.search({}, token=token)[0] == 401
    assert client.refresh()[2]["status"] == "BAD_REFRESH_TOKEN"


def test_a_preissued_access_token(make):
    client = make(access_token="CKstatic-token")
    assert client.search({"limit": 1}, token="CKstatic-token")[0] == 200


# --------------------------------------------------------------------------------------------------
# filters
# --------------------------------------------------------------------------------------------------

def test_gte_with_milliseconds_or_iso_gives_the_same_contacts(client):
    since = "2024-04-01T12:00:00.000Z"
    ms = parse_instant(since)
    ids = set()
    for value in (str(ms), ms, since, "2024-04-01T12:00:00Z", "2024-04-01T14:00:00+02:00"):
        results, _ = client.walk(dict(gte("lastmodifieddate", value), limit=200))
        got = {r["id"] for r in results}
        assert ids in (set(), got)
        ids = got
        assert all(parse_instant(r["properties"]["lastmodifieddate"]) >= ms for r in results)
    want = {c["id"] for c in client.server.contacts.values() if c["updated"] >= ms}
    assert ids == want and 0 < len(want) < 250


def test_gt_excludes_the_boundary_millisecond_and_gte_includes_it(client):
    tied = {}
    for c in client.server.contacts.values():
        tied.setdefault(c["updated"], []).append(c["id"])
    ms, ids = max(((k, v) for k, v in tied.items() if len(v) >= 7), key=lambda kv: kv[0])
    at = [r["id"] for r in client.ok(dict(gte("lastmodifieddate", iso_ms(ms)), limit=200))["results"]]
    assert set(ids) <= set(at)
    body = {"filterGroups": [{"filters": [{"propertyName": "lastmodifieddate", "operator": "GT", "value": ms}]}],
            "limit": 200}
    after = [r["id"] for r in client.ok(body)["results"]]
    assert not set(ids) & set(after) and len(at) == len(after) + len(ids)
    eq = {"filterGroups": [{"filters": [{"propertyName": "lastmodifieddate", "operator": "EQ", "value": str(ms)}]}]}
    answer = client.ok(eq)
    assert answer["total"] == len(ids) and sorted(r["id"] for r in answer["results"]) == sorted(ids)


def test_lt_lte_between_and_hs_object_id(client):
    def ids(*filters, groups=None):
        body = {"filterGroups": groups or [{"filters": list(filters)}], "limit": 200}
        return sorted((r["id"] for r in client.walk(body)[0]), key=int)

    assert ids({"propertyName": "hs_object_id", "operator": "LT", "value": "105"}) == ["101", "102", "103", "104"]
    assert ids({"propertyName": "hs_object_id", "operator": "LTE", "value": 103}) == ["101", "102", "103"]
    assert ids({"propertyName": "hs_object_id", "operator": "BETWEEN", "value": "200", "highValue": "202"}) == \
        ["200", "201", "202"]
    assert ids({"propertyName": "hs_object_id", "operator": "IN", "values": ["110", "120"]}) == ["110", "120"]
    # AND within a group, OR across groups.
    both = ids({"propertyName": "hs_object_id", "operator": "GTE", "value": "150"},
               {"propertyName": "hs_object_id", "operator": "LT", "value": "153"})
    assert both == ["150", "151", "152"]
    either = ids(groups=[{"filters": [{"propertyName": "hs_object_id", "operator": "EQ", "value": "101"}]},
                         {"filters": [{"propertyName": "hs_object_id", "operator": "EQ", "value": "350"}]}])
    assert either == ["101", "350"]
    created = client.server.contacts["120"]["created"]
    assert ids({"propertyName": "createdate", "operator": "LTE", "value": iso_ms(created)}) == \
        [str(i) for i in range(101, 121)]


def test_string_filters(client):
    contacts = client.server.contacts.values()
    no_email = sorted((c["id"] for c in contacts if c["props"]["email"] is None), key=int)
    body = {"filterGroups": [{"filters": [{"propertyName": "email", "operator": "NOT_HAS_PROPERTY"}]}], "limit": 200}
    assert sorted((r["id"] for r in client.ok(body)["results"]), key=int) == no_email
    first = client.server.contacts["101"]["props"]["firstname"]
    body = {"filterGroups": [{"filters": [{"propertyName": "firstname", "operator": "EQ", "value": first.upper()}]}],
            "limit": 200}
    assert client.ok(body)["total"] == sum(c["props"]["firstname"] == first for c in contacts), "case-insensitive"
    body = {"filterGroups": [{"filters": [{"propertyName": "email", "operator": "CONTAINS_TOKEN",
                                           "value": "*@example.com"}]}]}
    assert client.ok(body)["total"] == 250 - len(no_email)


# --------------------------------------------------------------------------------------------------
# sorting and paging
# --------------------------------------------------------------------------------------------------

def test_without_sorts_results_come_in_creation_order(client):
    results, _ = client.walk({"limit": 100})
    assert [r["id"] for r in results] == [str(i) for i in range(101, 351)]


@pytest.mark.parametrize("prop", ["lastmodifieddate", "createdate", "hs_object_id"])
@pytest.mark.parametrize("direction", ["ASCENDING", "DESCENDING"])
def test_sorts_break_ties_by_id_ascending(client, prop, direction):
    results, _ = client.walk({"sorts": [{"propertyName": prop, "direction": direction}], "limit": 200})
    keys = [(parse_instant(r["properties"][prop]) if prop != "hs_object_id" else int(r["id"]), int(r["id"]))
            for r in results]
    if direction == "ASCENDING":
        assert keys == sorted(keys)
    else:
        assert keys == sorted(keys, key=lambda k: (-k[0], k[1]))
    assert len(results) == 250


def test_paging_to_the_end_gives_every_contact_once(client):
    body = dict(gte("lastmodifieddate", 0), sorts=[{"propertyName": "lastmodifieddate", "direction": "ASCENDING"}],
                limit=7)
    results, pages = client.walk(body)
    ids = [r["id"] for r in results]
    assert len(ids) == 250 and len(set(ids)) == 250 and pages == 36
    stamps = [(r["updatedAt"], int(r["id"])) for r in results]
    assert stamps == sorted(stamps)
    last = client.ok(dict(body, after="245"))
    assert last["total"] == 250 and len(last["results"]) == 5 and "paging" not in last
    past = client.ok(dict(body, after=300))
    assert past == {"total": 250, "results": []}
    first = client.ok({})
    assert len(first["results"]) == 10 and first["paging"] == {"next": {"after": "10"}}


def test_limit_above_200_is_400_validation_error(client):
    assert len(client.ok({"limit": 200})["results"]) == 200
    for limit in (201, 1000, 0, -1, "ten"):
        status, _, body = client.search({"limit": limit})
        assert status == 400
        error_body(body, "VALIDATION_ERROR")


def test_a_search_cannot_page_beyond_10000_results(make):
    client = make(contacts=10050)
    page = client.ok({"limit": 100, "after": "9900"})
    assert page["total"] == 10050 and len(page["results"]) == 100
    assert page["paging"]["next"]["after"] == "10000"
    status, _, body = client.search({"limit": 100, "after": "10000"})
    assert status == 400
    error_body(body, "VALIDATION_ERROR")
    page = client.ok({"limit": 200, "after": "9950"})
    assert len(page["results"]) == 50 and page["paging"]["next"]["after"] == "10000", "the page stops at the cap"


def test_the_cap_with_a_small_max_results_and_the_restart(make):
    client = make(max_results=30)
    sorts = [{"propertyName": "lastmodifieddate", "direction": "ASCENDING"}]
    body = dict(gte("lastmodifieddate", 0), sorts=sorts, limit=8)
    seen, after = [], None
    while True:
        status, _, page = client.search(dict(body, after=after) if after else body)
        if status == 400:
            error_body(page, "VALIDATION_ERROR")
            break
        assert page["total"] == 250, "total counts every match, past the cap too"
        seen += page["results"]
        after = page["paging"]["next"]["after"]
    assert len(seen) == 30 and after == "30"
    # What a client must do: search again from the last lastmodifieddate it saw (GTE: the ties at
    # that millisecond come again), until a search ends below the cap. Every contact is reached.
    got = {r["id"]: r for r in seen}
    searches = 1
    while True:
        since = max(r["updatedAt"] for r in got.values())
        restart = dict(gte("lastmodifieddate", since), sorts=sorts, limit=8)
        page, after, capped = None, None, False
        while True:
            status, _, page = client.search(dict(restart, after=after) if after else restart)
            if status == 400:
                capped = True
                break
            assert all(r["updatedAt"] >= since for r in page["results"])
            got.update((r["id"], r) for r in page["results"])
            if "paging" not in page:
                break
            after = page["paging"]["next"]["after"]
        searches += 1
        if not capped:
            break
    assert sorted(got, key=int) == [str(i) for i in range(101, 351)] and searches > 8


# --------------------------------------------------------------------------------------------------
# properties
# --------------------------------------------------------------------------------------------------

def test_properties_selection(client):
    answer = client.ok({"properties": ["email", "phone", "no_such_property"], "limit": 50})
    for r in answer["results"]:
        assert set(r) == {"id", "properties", "createdAt", "updatedAt", "archived"}
        assert set(r["properties"]) == {"email", "phone", "createdate", "hs_object_id", "lastmodifieddate"}
        assert r["properties"]["hs_object_id"] == r["id"] and r["archived"] is False
        assert r["updatedAt"] == r["properties"]["lastmodifieddate"]
        assert r["createdAt"] == r["properties"]["createdate"]
        assert ISO_MS.match(r["updatedAt"]) and ISO_MS.match(r["createdAt"])
        assert all(v is None or isinstance(v, str) for v in r["properties"].values())
    assert any(r["properties"]["phone"] is None for r in answer["results"]), "nulls are given as null"
    for body in ({}, {"properties": []}):
        assert set(client.ok(body)["results"][0]["properties"]) == DEFAULTS


# --------------------------------------------------------------------------------------------------
# bad requests
# --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("body", [
    "",
    '{"limit": 10',
    "[1, 2]",
    json.dumps(gte("no_such_property", "1")),
    json.dumps({"filterGroups": [{"filters": [{"propertyName": "lastmodifieddate", "operator": "AFTER",
                                               "value": "1"}]}]}),
    json.dumps(gte("lastmodifieddate", "yesterday")),
    json.dumps({"filterGroups": [{"filters": [{"propertyName": "lastmodifieddate", "operator": "GTE"}]}]}),
    json.dumps({"filterGroups": [gte("hs_object_id", "1")["filterGroups"][0]] * 6}),
    json.dumps({"filterGroups": [{"filters": gte("hs_object_id", "1")["filterGroups"][0]["filters"] * 7}]}),
    json.dumps({"filterGroups": [{"filters": gte("hs_object_id", "1")["filterGroups"][0]["filters"] * 5}] * 4}),
    json.dumps({"sorts": [{"propertyName": "createdate"}, {"propertyName": "hs_object_id"}]}),
    json.dumps({"sorts": [{"propertyName": "createdate", "direction": "UP"}]}),
    json.dumps({"sorts": [{"propertyName": "no_such_property"}]}),
    json.dumps({"after": "abc"}),
    json.dumps({"after": "-5"}),
    json.dumps({"query": "x" * 3001}),
])
def test_a_bad_search_is_400_validation_error(client, body):
    status, headers, answer = client.search(raw=body)
    assert status == 400, answer
    error_body(answer, "VALIDATION_ERROR")
    if body.startswith('{"limit"'):
        assert answer["message"].startswith("Invalid input JSON on line 1, column")


def test_other_methods_on_the_search_path_are_405(client):
    token = client.login()
    for method in ("GET", "PUT", "DELETE", "PATCH"):
        status, headers, _ = client.request(method, SEARCH_PATH, headers={"Authorization": f"Bearer {token}"})
        assert status == 405 and headers["allow"] == "POST"
    assert client.request("GET", TOKEN_PATH)[0] == 405
    assert client.request("GET", "/crm/v3/objects/deals/search")[0] == 404


def test_the_rate_limit_when_set(make):
    client = make(search_per_second=2)
    client.server.rate_window_s = 30  # wide: the three searches fall in one window however slow
    token = client.login()
    assert [client.search({}, token=token)[0] for _ in range(2)] == [200, 200]
    status, headers, body = client.search({}, token=token)
    assert status == 429 and "retry-after" not in headers
    assert body["status"] == "error" and body["message"] == "You have reached your secondly limit."
    assert body["errorType"] == "RATE_LIMIT" and body["policyName"] == "SECONDLY"
    assert UUID.match(body["correlationId"])
    client.control("POST", "config", {"rate_window_s": 0.05})
    time.sleep(0.1)
    assert client.search({}, token=token)[0] == 200, "the window passed"
    unlimited = make()
    assert {unlimited.search({})[0] for _ in range(12)} == {200}


# --------------------------------------------------------------------------------------------------
# inspection and control
# --------------------------------------------------------------------------------------------------

def test_requests_are_recorded_without_secrets(client):
    token = client.login()
    client.search({"limit": 3}, token=token)
    client.request("POST", SEARCH_PATH, "{}")
    client.request("POST", SEARCH_PATH + "?hapikey=sl-secret-key", "{}")
    log = client.control("GET", "requests")
    text = json.dumps(log)
    for secret in (token, CLIENT_SECRET, REFRESH_TOKEN, "sl-secret-key"):
        assert secret not in text
    assert log[0]["path"] == TOKEN_PATH and log[0]["body"]["grant_type"] == "refresh_token"
    assert log[0]["body"]["client_id"] == CLIENT_ID and log[0]["body"]["refresh_token"] == "[redacted]"
    assert log[1] == {"method": "POST", "path": SEARCH_PATH, "query": {}, "body": {"limit": 3},
                      "authorized": True, "status": 200}
    assert log[2]["authorized"] is False and log[2]["status"] == 401
    assert client.server.requests == log
    assert log[3]["query"] == {"hapikey": "[redacted]"}
    state = client.control("GET", "state")
    assert state["token_requests"] == 1 and state["search_requests"] == 3


def test_expected_matches_what_a_search_walk_gives(client):
    since = "2024-05-01T00:00:00.000Z"
    props = ["email", "firstname", "lastname", "company", "phone", "lifecyclestage"]
    body = dict(gte("lastmodifieddate", since), properties=props, limit=50,
                sorts=[{"propertyName": "lastmodifieddate", "direction": "ASCENDING"}])
    results, _ = client.walk(body)
    flat = [{"id": r["id"], "createdAt": r["createdAt"], "updatedAt": r["updatedAt"], "archived": r["archived"],
             **r["properties"]} for r in results]
    expected = client.server.expected(since, properties=props)
    assert flat == expected and 0 < len(expected) < 250
    assert set(expected[0]) == {"id", "createdAt", "updatedAt", "archived", *props, "createdate", "hs_object_id",
                                "lastmodifieddate"}
    everything = client.server.expected()
    assert len(everything) == 250 and set(everything[0]) == {"id", "createdAt", "updatedAt", "archived", *DEFAULTS}
    assert client.control("GET", "expected?since=" + urllib.parse.quote(since) + "&properties=" + ",".join(props)) \
        == expected


def test_touch_moves_a_contact_to_the_end(client):
    client.server.touch("150", "2024-07-01T00:00:00.123Z", firstname="Zed")
    client.control("POST", "touch", {"id": "151", "lastmodifieddate": parse_instant("2024-07-01T00:00:00.123Z")})
    tail = client.server.expected("2024-07-01T00:00:00Z")
    assert [r["id"] for r in tail] == ["150", "151"] and tail[0]["firstname"] == "Zed"
    assert tail[0]["updatedAt"] == tail[0]["lastmodifieddate"] == "2024-07-01T00:00:00.123Z"
    answer = client.ok(gte("lastmodifieddate", "2024-07-01T00:00:00.123Z"))
    assert [r["id"] for r in answer["results"]] == ["150", "151"]


def test_control_over_http(client):
    token = client.login()
    client.control("POST", "expire_tokens", {})
    assert client.search({}, token=token)[2]["category"] == "EXPIRED_AUTHENTICATION"
    state = client.control("POST", "config", {"max_results": 5, "rotate_refresh_token": True})
    assert state["max_results"] == 5 and state["rotate_refresh_token"] is True
    assert client.request("POST", "/_control/config", json.dumps({"nope": 1}))[0] == 400
    assert client.request("GET", "/_control/nothing")[0] == 404


def test_main_runs_the_server_by_hand(tmp_path):
    port_file = tmp_path / "port"
    proc = subprocess.Popen([sys.executable, os.path.join(HERE, "hubspot_server.py"), "--port", "0",
                             "--port-file", str(port_file), "--contacts", "12", "--access-token", "CKhand"],
                            stdout=subprocess.PIPE, text=True)
    try:
        banner = proc.stdout.readline().strip()
        port = int(port_file.read_text())
        assert banner == f"hubspot_server: http://127.0.0.1:{port}"
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("POST", SEARCH_PATH, "{}", {"Authorization": "Bearer CKhand"})
        assert json.loads(conn.getresponse().read())["total"] == 12
        conn.close()
    finally:
        proc.terminate()
        proc.wait(timeout=5)
        proc.stdout.close()


def test_iso_ms_and_parse_instant_round_trip():
    for text in ("2024-03-05T10:11:12.345Z", "2024-01-01T00:00:00.000Z", "2024-06-29T23:59:59.999Z"):
        assert iso_ms(parse_instant(text)) == text
    assert parse_instant("2024-03-05") == parse_instant("2024-03-05T00:00:00Z")
    assert parse_instant("1709633472345") == 1709633472345
    assert parse_instant(dt.datetime(2024, 3, 5, tzinfo=dt.timezone.utc).isoformat()) == \
        parse_instant("2024-03-05T00:00:00Z")
    assert parse_instant("soon") is None and parse_instant(True) is None
