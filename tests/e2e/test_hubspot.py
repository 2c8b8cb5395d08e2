"""scripts/examples/hubspot_contacts.lua against the HubSpot stand-in (tests/server/hubspot_server.py):
the CRM search paged by a cursor in the POST body, OAuth2 with HubSpot's refresh-token grant
(expiry mid-read, a 401, a rotated refresh token, a refused refresh), the 10,000-results cap, and
incremental reads resumed from their state. Every run is checked for the app's credentials and
for each access token the server handed out."""

from __future__ import annotations

import sys
import datetime as dt
import threading
import time

import pytest

from .conftest import REPO, assert_no_secret, utc

sys.path.insert(0, str(REPO / "tests" / "server"))
from hubspot_server import CLIENT_ID, CLIENT_SECRET, REFRESH_TOKEN, HubSpotServer  # noqa: E402

SCRIPT = REPO / "scripts" / "examples" / "hubspot_contacts.lua"
FLAGS = ("--script", SCRIPT)
NOW = utc(2024, 7, 1, 12, 0)
START = "2024-01-01"
PROPERTIES = ["email", "firstname", "lastname", "company", "phone", "lifecyclestage", "createdate",
              "lastmodifieddate", "hs_object_id"]
CATALOG = {"streams": [{"stream": {"name": "contacts", "json_schema": {},
                                   "supported_sync_modes": ["full_refresh", "incremental"],
                                   "source_defined_cursor": True, "default_cursor_field": ["updatedAt"]},
                        "sync_mode": "incremental", "cursor_field": ["updatedAt"],
                        "destination_sync_mode": "append_dedup", "primary_key": [["id"]]}]}


@pytest.fixture
def hubspot():
    servers = []

    def start(**kw):
        servers.append(HubSpotServer(**kw).start())
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def hs(connector):
    connector.secrets += [CLIENT_SECRET, REFRESH_TOKEN, CLIENT_ID]
    return connector


def config(server, **extra):
    value = {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "refresh_token": REFRESH_TOKEN,
             "start_date": START, "base_url": server.base_url}
    value.update(extra)
    return value


def read(hs, server, state=None, **extra):
    kw = {} if state is None else {"state": state}
    result = hs.read(config(server, **extra), catalog=CATALOG, flags=FLAGS, now=NOW, **kw)
    with server.lock:
        issued = list(server.access_tokens)
    assert_no_secret(result.stdout, result.stderr, issued, " (an access token)")
    return result


def ids(result):
    return [d["id"] for d in result.data]


def instant(text):
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def searches(server):
    return [r for r in server.requests if r["path"] == "/crm/v3/objects/contacts/search"]


def test_every_contact_modified_since_the_start_once_in_order(hs, hubspot):
    server = hubspot()
    result = read(hs, server).assert_complete()
    expected = server.expected(START + "T00:00:00Z", PROPERTIES)
    assert len(expected) == 250
    assert result.data == expected
    sent = searches(server)
    assert len(sent) == 3 and all(r["authorized"] for r in sent)
    first = sent[0]["body"]
    assert first["filterGroups"] == [{"filters": [{"propertyName": "lastmodifieddate", "operator": "GTE",
                                                   "value": "1704067200000"}]}]
    assert first["sorts"] == [{"propertyName": "lastmodifieddate", "direction": "ASCENDING"}]
    assert first["limit"] == 100 and "after" not in first and first["properties"] == PROPERTIES
    assert [r["body"].get("after") for r in sent] == [None, "100", "200"]
    assert server.token_requests == 1
    state = result.last_stream_state
    assert instant(state["updatedAt"]) == instant(expected[-1]["updatedAt"])


def test_a_resumed_read_sends_what_changed_since_and_nothing_twice(hs, hubspot):
    server = hubspot()
    first = read(hs, server).assert_complete()
    server.touch("150", "2024-06-30T23:00:00.000Z", firstname="Renamed")
    second = read(hs, server, state=[first.states[-1]]).assert_complete()
    assert ids(second) == ["150"], second.describe()
    assert second.data[0]["firstname"] == "Renamed"
    # A third read from there has nothing new.
    third = read(hs, server, state=[second.states[-1]]).assert_complete()
    assert third.data == []


def test_a_search_past_ten_thousand_results_starts_again_from_the_last_contact(hs, hubspot):
    # HubSpot caps a search at 10,000 results; the stand-in's cap is lowered to keep the test quick.
    server = hubspot(contacts=700, max_results=250)
    script = SCRIPT.read_text(encoding="utf-8").replace("local MAX_RESULTS = 10000", "local MAX_RESULTS = 250")
    path = hs.tmp_path / "hubspot_small_cap.lua"
    path.write_text(script, encoding="utf-8")
    result = hs.read(config(server), catalog=CATALOG, flags=("--script", path), now=NOW).assert_complete()
    assert ids(result) == [c["id"] for c in server.expected(START + "T00:00:00Z", PROPERTIES)]
    afters = [r["body"].get("after") for r in searches(server)]
    assert afters.count(None) >= 3, afters  # restarted searches
    assert all(a is None or int(a) < 250 for a in afters)


def test_a_token_expiring_mid_read_is_renewed(hs, hubspot):
    # Tokens of 1 s, a request every 50 ms: the read outlives a token, which is renewed before it
    # runs out (or, sent at its last moment, after HubSpot's 401).
    server = hubspot(contacts=2500, token_lifetime_s=1)
    result = read(hs, server, requests_per_minute=1200).assert_complete()
    assert len(result.data) == 2500
    assert server.token_requests >= 2
    assert sum(r["status"] == 200 for r in searches(server)) == 25


def test_a_401_mid_read_fetches_a_new_token_once(hs, hubspot):
    server = hubspot(contacts=1000)
    done = threading.Event()

    def expire_after_two_pages():
        # however slow the connector (valgrind), the token expires between its pages
        while not done.is_set() and server.search_requests < 2:
            time.sleep(0.002)
        server.expire_tokens()

    expirer = threading.Thread(target=expire_after_two_pages, daemon=True)
    expirer.start()
    try:
        result = read(hs, server, requests_per_minute=1200).assert_complete()
    finally:
        done.set()
        expirer.join()
    assert len(result.data) == 1000
    statuses = [r["status"] for r in searches(server)]
    assert statuses.count(401) == 1 and server.token_requests == 2, statuses


def test_a_rotated_refresh_token_goes_back_to_the_platform(hs, hubspot):
    server = hubspot(rotate_refresh_token=True)
    result = read(hs, server).assert_complete()
    [control] = result.of("CONTROL")
    saved = control["control"]["connectorConfig"]["config"]
    assert saved == config(server, refresh_token=server.current_refresh_token)
    assert saved["refresh_token"] != REFRESH_TOKEN
    # The next sync starts with the saved one (the old one no longer works).
    again = hs.read(saved, catalog=CATALOG, flags=FLAGS, now=NOW, state=[result.states[-1]])
    hs.secrets.append(saved["refresh_token"])
    assert again.returncode == 0, again.describe()


def test_a_refused_refresh_token_is_a_config_error_naming_the_token_url(hs, hubspot):
    server = hubspot()
    result = read(hs, server, refresh_token="na1-0000-wrong")
    assert result.returncode != 0 and result.data == [], result.describe()
    error = result.errors[-1]
    assert error["failure_type"] == "config_error", error
    assert server.base_url + "/oauth/v1/token" in error["message"]
    assert "missing or unknown refresh token" in error["message"]
    assert searches(server) == []


def test_check(hs, hubspot):
    server = hubspot()
    ok = hs.check(config(server), flags=FLAGS)
    assert ok.connection_status["status"] == "SUCCEEDED", ok.describe()
    bad = hs.check(config(server, client_secret="3c9e1f7a-wrong"), flags=FLAGS)
    status = bad.connection_status
    assert status["status"] == "FAILED" and "/oauth/v1/token" in status["message"], status


def test_spec_and_discover(hs, hubspot):
    spec = hs.spec(flags=FLAGS).assert_ok().messages[0]["spec"]["connectionSpecification"]
    assert set(spec["required"]) == {"client_id", "client_secret", "refresh_token", "start_date"}
    assert all(spec["properties"][k]["airbyte_secret"] for k in ("client_id", "client_secret", "refresh_token"))
    [stream] = hs.discover(config(hubspot()), flags=FLAGS).assert_ok().of("CATALOG")[0]["catalog"]["streams"]
    assert stream["name"] == "contacts" and stream["source_defined_primary_key"] == [["id"]]
    assert stream["default_cursor_field"] == ["updatedAt"]


def test_custom_properties_are_flattened(hs, hubspot):
    server = hubspot()
    result = read(hs, server, properties=["email", "lifecyclestage"]).assert_complete()
    assert set(result.data[0]) == {"id", "createdAt", "updatedAt", "archived", "email", "lifecyclestage",
                                   "createdate", "lastmodifieddate", "hs_object_id"}
    assert searches(server)[0]["body"]["properties"] == ["email", "lifecyclestage", "lastmodifieddate"]
