"""Declared auth (a script's `auth` table): API key in a header or the query, Bearer, Basic and
OAuth2 (client credentials; refresh token, rotated or not), against a server of the test's own
that checks credentials as APIs do and records what it was sent. Every run's output is checked
for every credential the test knows, the access tokens the server hands out included."""

from __future__ import annotations

import base64
import threading
import time
import urllib.parse

import pytest

from .stub_server import JsonHandler, StubServer

from .conftest import utc

NOW = utc(2024, 3, 11, 22, 0)
CLIENT_ID = "sl-client-id-0001"
CLIENT_SECRET = "sl-client-secret-canary-0001"
REFRESH = "sl-refresh-canary-0001"
API_KEY = "sl-api-key-canary-0001"
ITEMS = [{"id": i, "name": f"item {i}"} for i in range(1, 13)]
PER_PAGE = 3


def access_token(n: int) -> str:
    return f"sl-access-canary-{n:04d}"


def rotated(n: int) -> str:
    return f"sl-refresh-canary-rotated-{n:04d}"


class AuthServer(StubServer):
    def __init__(self, lifetime: float = 1800, rotate: bool = False, page_delay: float = 0.0):
        super().__init__(Handler)
        self.lifetime, self.rotate, self.page_delay = lifetime, rotate, page_delay
        self.lock = threading.Lock()
        self.tokens = {}  # access token -> expiry (monotonic)
        self.refresh_token = REFRESH
        self.issued = 0
        self.token_requests = []  # the forms posted to /oauth/token, secrets replaced
        self.requests = []  # (path, how it was authorized)
        self.refuse_new_tokens = False  # tokens are issued but every API call answers 401


class Handler(JsonHandler):
    def do_POST(self):
        s = self.server
        length = int(self.headers.get("Content-Length") or 0)
        form = dict(urllib.parse.parse_qsl(self.rfile.read(length).decode()))
        if self.path != "/oauth/token":
            return self.answer(404, {"message": "Not Found"})
        client_id, client_secret = form.get("client_id"), form.get("client_secret")
        basic = self.headers.get("Authorization", "")
        if basic.startswith("Basic "):
            client_id, client_secret = base64.b64decode(basic[6:]).decode().split(":", 1)
        with s.lock:
            s.token_requests.append({"grant_type": form.get("grant_type"), "scope": form.get("scope"),
                                     "refresh_token_ok": form.get("refresh_token") == s.refresh_token,
                                     "client_in": "header" if basic else "body",
                                     "content_type": self.headers.get("Content-Type")})
            if (client_id, client_secret) != (CLIENT_ID, CLIENT_SECRET):
                return self.answer(401, {"error": "invalid_client", "error_description": "unknown client"})
            grant = form.get("grant_type")
            if grant == "refresh_token" and form.get("refresh_token") != s.refresh_token:
                return self.answer(400, {"error": "invalid_grant", "error_description": "refresh token is not valid"})
            if grant not in ("refresh_token", "client_credentials"):
                return self.answer(400, {"error": "unsupported_grant_type"})
            s.issued += 1
            token = access_token(s.issued)
            s.tokens[token] = time.monotonic() + s.lifetime
            reply = {"access_token": token, "token_type": "bearer", "expires_in": s.lifetime}
            if grant == "refresh_token":
                if s.rotate:
                    s.refresh_token = rotated(s.issued)
                reply["refresh_token"] = s.refresh_token
        self.answer(200, reply)

    def authorized(self, url) -> str | None:
        """How the request was authorized ("bearer", "basic:user:pass", "header", "query"), or None."""
        s = self.server
        auth = self.headers.get("Authorization", "")
        query = dict(urllib.parse.parse_qsl(url.query))
        if auth.startswith("Bearer "):
            token = auth[7:]
            with s.lock:
                expiry = s.tokens.get(token)
            if token == API_KEY or (expiry and expiry > time.monotonic() and not s.refuse_new_tokens):
                return "bearer"
            return None
        if auth.startswith("Basic "):
            return "basic:" + base64.b64decode(auth[6:]).decode()
        if self.headers.get("X-Api-Key") == "Token " + API_KEY:
            return "header"
        if query.get("api_key") == API_KEY:
            return "query"
        return None

    def do_GET(self):
        s = self.server
        url = urllib.parse.urlsplit(self.path)
        if url.path == "/echo":  # as some APIs' error bodies and debug proxies do
            return self.answer(401, {"message": "refused: " + self.headers.get("Authorization", "")})
        how = self.authorized(url)
        s.requests.append((url.path, how, url.query))
        if how is None:
            return self.answer(401, {"message": "Bad credentials"})
        if url.path == "/me":
            return self.answer(200, {"ok": True})
        page = int(dict(urllib.parse.parse_qsl(url.query)).get("page", 1))
        time.sleep(s.page_delay)
        reply = {"items": ITEMS[(page - 1) * PER_PAGE:page * PER_PAGE]}
        if page * PER_PAGE < len(ITEMS):
            # as some APIs do, the next URL repeats the key it was asked with
            extra = "&api_key=" + API_KEY if how == "query" else ""
            reply["next"] = f"{s.url}/items?page={page + 1}{extra}"
        self.answer(200, reply)


SCRIPT = """\
return {
  spec = { connectionSpecification = { type = "object", properties = {
    api_key = { type = "string", airbyte_secret = true },
    client_id = { type = "string", airbyte_secret = true },
    client_secret = { type = "string", airbyte_secret = true },
    credentials = { type = "object", properties = {
      refresh_token = { type = "string", airbyte_secret = true } } },
    user = { type = "string" }, password = { type = "string", airbyte_secret = true },
    base_url = { type = "string" } } } },
  check = function(config)
    local status, body = http.get(config.base_url .. "/me")
    if status ~= 200 then return false, "HTTP " .. tostring(status) .. ": " .. tostring(body) end
    return true
  end,
  auth = %(auth)s,
  streams = { {
    name = "items",
    json_schema = { type = "object", properties = { id = { type = "integer" }, name = { type = "string" } } },
    primary_key = "id",
    request = function(ctx) return ctx.config.base_url .. "/items?page=1" end,
    parse = function(ctx, response) return response.body.items, response.body.next end,
  } },
}
"""

OAUTH_REFRESH = ('{ type = "oauth2", token_url = function(config) return config.base_url .. "/oauth/token" end,'
                 ' client_id = "config.client_id", client_secret = "config.client_secret",'
                 ' refresh_token = "config.credentials.refresh_token" }')
OAUTH_CLIENT = ('{ type = "oauth2", grant = "client_credentials", scope = "read", client_auth = "basic",'
                ' token_url = function(config) return config.base_url .. "/oauth/token" end,'
                ' client_id = "config.client_id", client_secret = "config.client_secret" }')

CATALOG = {"streams": [{"stream": {"name": "items", "json_schema": {}, "supported_sync_modes": ["full_refresh"]},
                        "sync_mode": "full_refresh", "destination_sync_mode": "overwrite"}]}


@pytest.fixture
def api():
    servers = []

    def start(**kw):
        servers.append(AuthServer(**kw).start())
        return servers[-1]

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def conn(connector):
    connector.secrets += [CLIENT_SECRET, REFRESH, API_KEY, *map(access_token, range(1, 40)),
                          *map(rotated, range(1, 40))]
    return connector


def script(tmp_path, auth: str):
    path = tmp_path / "auth.lua"
    path.write_text(SCRIPT % {"auth": auth}, encoding="utf-8")
    return path


def config(server, **extra):
    value = {"base_url": server.url, "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
             "credentials": {"refresh_token": REFRESH}, "api_key": API_KEY, "user": "ann", "password": "pw-canary"}
    value.update(extra)
    return value


def read(conn, tmp_path, server, auth, **extra):
    return conn.read(config(server, **extra), catalog=CATALOG, now=NOW, flags=("--script", script(tmp_path, auth)))


def ids(result):
    return [d["id"] for d in result.data]


@pytest.mark.parametrize("auth,how", [
    ('{ type = "bearer", token = "config.api_key" }', "bearer"),
    ('{ type = "api_key", key = "config.api_key", header = "X-Api-Key", prefix = "Token " }', "header"),
    ('{ type = "api_key", key = "config.api_key", query = "api_key" }', "query"),
    ('{ type = "basic", username = "config.user", password = "config.password" }', "basic:ann:pw-canary"),
])
def test_each_kind_of_credential_goes_with_every_page(conn, api, tmp_path, auth, how):
    conn.secrets.append("pw-canary")
    server = api()
    result = read(conn, tmp_path, server, auth).assert_complete()
    assert ids(result) == [i["id"] for i in ITEMS]
    assert [r[1] for r in server.requests] == [how] * 4
    if how == "query":
        # the next URLs repeated the key: it was not added a second time
        assert all(r[2].count("api_key=") == 1 for r in server.requests), server.requests


def test_a_credential_the_config_leaves_out_is_not_sent(conn, api, tmp_path):
    server = api()
    cfg = config(server)
    del cfg["api_key"]
    result = conn.read(cfg, catalog=CATALOG, now=NOW,
                       flags=("--script", script(tmp_path, '{ type = "bearer", token = "config.api_key" }')))
    assert result.returncode != 0 and "HTTP 401" in result.errors[-1]["message"], result.describe()
    assert server.requests[0][1] is None


def test_oauth2_client_credentials_fetches_one_token_for_the_whole_read(conn, api, tmp_path):
    server = api()
    result = read(conn, tmp_path, server, OAUTH_CLIENT).assert_complete()
    assert ids(result) == [i["id"] for i in ITEMS]
    assert server.token_requests == [{"grant_type": "client_credentials", "scope": "read", "refresh_token_ok": False,
                                      "client_in": "header",
                                      "content_type": "application/x-www-form-urlencoded"}]
    assert [r[1] for r in server.requests] == ["bearer"] * 4


def test_oauth2_refresh_token_renews_an_expiring_token_mid_read(conn, api, tmp_path):
    # Tokens live 0.5 s and pages take 0.15 s: the read outlives a token or two. Each is renewed
    # before it runs out or, sent at its last moment, after the API's 401.
    server = api(lifetime=0.5, page_delay=0.15)
    result = read(conn, tmp_path, server, OAUTH_REFRESH).assert_complete()
    assert ids(result) == [i["id"] for i in ITEMS]
    assert len(server.token_requests) >= 2
    assert all(t["grant_type"] == "refresh_token" and t["refresh_token_ok"] and t["client_in"] == "body"
               for t in server.token_requests)
    assert result.of("CONTROL") == []  # the refresh token did not change


def test_a_401_refreshes_the_token_once_then_fails_as_a_config_error(conn, api, tmp_path):
    server = api()
    server.refuse_new_tokens = True
    result = read(conn, tmp_path, server, OAUTH_REFRESH)
    assert result.returncode != 0 and result.data == [], result.describe()
    assert len(server.token_requests) == 2 and len(server.requests) == 2
    error = result.errors[-1]
    assert error["failure_type"] == "config_error" and "HTTP 401" in error["message"], error


def test_a_rotated_refresh_token_is_saved_through_a_control_message(conn, api, tmp_path):
    server = api(lifetime=0.5, rotate=True, page_delay=0.15)
    result = read(conn, tmp_path, server, OAUTH_REFRESH).assert_complete()
    assert ids(result) == [i["id"] for i in ITEMS]
    controls = result.of("CONTROL")
    assert len(controls) == len(server.token_requests) >= 2
    last = controls[-1]["control"]
    assert last["type"] == "CONNECTOR_CONFIG"
    saved = last["connectorConfig"]["config"]
    assert saved["credentials"]["refresh_token"] == server.refresh_token
    assert saved == config(server, credentials={"refresh_token": server.refresh_token})
    # Each refresh spent the token the previous one gave.
    assert all(t["refresh_token_ok"] for t in server.token_requests)


def test_a_refused_refresh_is_a_config_error_naming_the_token_url(conn, api, tmp_path):
    server = api()
    result = read(conn, tmp_path, server, OAUTH_REFRESH, credentials={"refresh_token": "sl-refresh-canary-wrong"})
    assert result.returncode != 0 and result.data == [] and server.requests == [], result.describe()
    error = result.errors[-1]
    assert error["failure_type"] == "config_error", error
    assert server.url + "/oauth/token" in error["message"] and "refresh token is not valid" in error["message"]


def test_check_uses_the_declared_auth_and_reports_a_refused_refresh(conn, api, tmp_path):
    server = api()
    path = script(tmp_path, OAUTH_REFRESH)
    ok = conn.check(config(server), flags=("--script", path))
    assert ok.connection_status["status"] == "SUCCEEDED", ok.describe()
    bad = conn.check(config(server, client_secret="sl-client-secret-canary-bad"), flags=("--script", path))
    conn.secrets.append("sl-client-secret-canary-bad")
    status = bad.connection_status
    assert status["status"] == "FAILED" and "/oauth/token" in status["message"] and "unknown client" in status[
        "message"], status


def test_a_request_with_auth_false_goes_without_credentials(conn, api, tmp_path):
    server = api()
    path = tmp_path / "noauth.lua"
    path.write_text((SCRIPT % {"auth": '{ type = "bearer", token = "config.api_key" }'}).replace(
        'http.get(config.base_url .. "/me")', 'http.get(config.base_url .. "/me", { auth = false })'))
    result = conn.check(config(server), flags=("--script", path))
    assert result.connection_status["status"] == "FAILED" and server.requests == [("/me", None, "")]


def test_a_basic_header_an_api_echoes_is_masked(conn, api, tmp_path):
    server = api()
    pair = base64.b64encode(b"ann:pw-canary").decode()
    conn.secrets += ["pw-canary", pair]
    path = tmp_path / "echo.lua"
    path.write_text((SCRIPT % {"auth": '{ type = "basic", username = "config.user", password = "config.password" }'})
                    .replace('config.base_url .. "/me"', 'config.base_url .. "/echo"'))
    result = conn.check(config(server), flags=("--script", path))
    status = result.connection_status
    assert status["status"] == "FAILED" and "refused: Basic ****" in status["message"], status


@pytest.mark.parametrize("auth,message", [
    ('{ type = "bearer", tokn = "config.api_key" }', "auth (type \"bearer\"): unknown key 'tokn' (did you mean token?)"),
    ('{ type = "bearer", token = "sk-live-123" }', "auth.token must name the config field"),
    ('{ type = "oauth", token_url = "x" }', "did you mean oauth2?"),
    ('{ token = "config.api_key" }', "auth.type is missing"),
    ('{ type = "bearer", token = "config.apikey" }',
     "auth.token names config.apikey, a config field the spec does not declare (did you mean api_key?)"),
    ('{ type = "basic", username = "config.user", password = "config.credentials.pasword" }',
     "auth.password names config.credentials.pasword, a config field the spec does not declare"),
    ('{ type = "api_key", key = "config.api_key" }', "give header or query"),
    ('{ type = "oauth2", client_id = "config.client_id", client_secret = "config.client_secret", '
     'refresh_token = "config.credentials.refresh_token" }', "auth.token_url must be a URL"),
    ('{ type = "oauth2", token_url = "http://x/t", client_id = "config.client_id", '
     'client_secret = "config.client_secret" }', "auth.refresh_token is missing"),
])
def test_a_mistaken_auth_declaration_is_refused_when_the_script_loads(conn, tmp_path, auth, message):
    result = conn.run("--script", script(tmp_path, auth), "spec")
    assert result.returncode != 0, result.describe()
    assert message in result.errors[-1]["message"], result.errors
