"""Secrets (issue 5): every value of an airbyte_secret field is masked (****) in every LOG,
TRACE and stderr line, also inside URLs, headers and error texts, raw or URL-encoded.

The suite-wide guard lives in conftest: the configs use the canary key by default, and every
run made through the helpers fails when the canary (or a secret a test registers in
connector.secrets) is printed in any form. The first tests prove that guard works; the others
push secrets into the places where a runtime would print them.
"""

from __future__ import annotations

import json
import re
import socket
import urllib.parse

import pytest

from .conftest import (
    CANARY, KEY, WRAPPED, Result, assert_no_secret, key_fingerprint, script_copy, secret_forms, utc)

AFTER_CLOSE = utc(2022, 3, 11, 22, 0)
# A key that changes when URL-encoded or JSON-escaped (unknown to the server: a 401).
SPECIAL = 'sl-s3cr3t "quoted" back\\slash+plus/slash?q&a=b#frag%41 caf\u00e9-canary'
URL_TEMPLATE = "base_url(config), http.escape(ticker), from, to, PAGE_LIMIT)"


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def key_in_the_url(tmp_path, *more_edits, name="key_in_url.lua"):
    """A script copy that also sends the key as ?apiKey= in every URL (URL-encoded)."""
    return script_copy(tmp_path, (URL_TEMPLATE, URL_TEMPLATE + ' .. "&apiKey=" .. http.escape(config.api_key)'),
                       *more_edits, name=name)


def printed_texts(result) -> list:
    """Every LOG message, TRACE error message and stack trace, and connection status message."""
    texts = [m["log"]["message"] for m in result.of("LOG")]
    for error in result.errors:
        texts += [error["message"], error.get("stack_trace", ""), error.get("internal_message", "")]
    texts += [m["connectionStatus"].get("message", "") for m in result.of("CONNECTION_STATUS")]
    return texts


# --------------------------------------------------------------------------------------------
# the guard itself
# --------------------------------------------------------------------------------------------

def test_default_config_uses_the_canary_key(connector):
    assert connector.config()["api_key"] == CANARY
    assert CANARY in connector.secrets


@pytest.mark.parametrize("where", ["stdout", "stderr"])
def test_guard_catches_the_canary(where):
    leaked = '{"type":"LOG","log":{"level":"INFO","message":"key %s"}}\n' % CANARY
    outputs = {"stdout": "", "stderr": ""}
    outputs[where] = leaked
    with pytest.raises(AssertionError, match="secret"):
        assert_no_secret(outputs["stdout"], outputs["stderr"])
    assert_no_secret('{"type":"LOG","log":{"level":"INFO","message":"key ****"}}\n', "")


@pytest.mark.parametrize("form", ["url-encoded", "url-encoded-lower-case", "plus-encoded", "json-escaped",
                                  "json-ascii-escaped"])
def test_guard_catches_every_printed_form(form):
    encoded = urllib.parse.quote(SPECIAL, safe="")
    printed = {
        "url-encoded": encoded,
        "url-encoded-lower-case": re.sub(r"%[0-9A-F]{2}", lambda m: m.group().lower(), encoded),
        "plus-encoded": urllib.parse.quote_plus(SPECIAL, safe=""),
        "json-escaped": SPECIAL.replace("\\", "\\\\").replace('"', '\\"'),
        "json-ascii-escaped": SPECIAL.replace("\\", "\\\\").replace('"', '\\"').replace("\u00e9", "\\u00e9"),
    }[form]
    assert printed != SPECIAL
    with pytest.raises(AssertionError, match="secret"):
        assert_no_secret(f"GET /x?apiKey={printed} failed\n", "", secrets=[SPECIAL])
    assert printed in secret_forms(SPECIAL)


def test_guard_runs_on_every_run(connector):
    """The check every helper applies to a finished run fails on a leaked canary."""
    fake = Result(["source-lua", "read"], 1, "", f"error: Bearer {CANARY}\n", 0.1)
    with pytest.raises(AssertionError, match="secret"):
        connector.inspect(fake, protocol=False)
    fake = Result(["source-lua", "read"], 0, '{"type":"LOG","log":{"level":"INFO","message":"%s"}}\n'
                  % urllib.parse.quote(CANARY), "", 0.1)
    with pytest.raises(AssertionError, match="secret"):
        connector.inspect(fake, protocol=True)
    # A secret JSON-escaped twice (a json.encode'd text in a LOG) is found once stdout is decoded.
    connector.secrets.append(SPECIAL)
    message = {"type": "LOG", "log": {"level": "INFO", "message": json.dumps({"key": SPECIAL})}}
    fake = Result(["source-lua", "read"], 0, json.dumps(message) + "\n", "", 0.1)
    assert SPECIAL not in fake.stdout and json.dumps(SPECIAL)[1:-1] not in fake.stdout
    with pytest.raises(AssertionError, match="secret"):
        connector.inspect(fake, protocol=True)


def test_the_canary_is_a_valid_key(connector):
    result = connector.read(connector.config(), now=AFTER_CLOSE).assert_complete()
    assert len(result.records) == 9
    assert {e["key_fingerprint"] for e in connector.server.log()} == {key_fingerprint(CANARY)}


# --------------------------------------------------------------------------------------------
# the key in URLs and error texts
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("status", [404, 400])
def test_key_in_the_url_of_an_http_error_is_masked(connector, tmp_path, status):
    """A script copy that puts the key in the URL: the error that quotes the URL masks it."""
    edit = ('"%s/v2/aggs/ticker/', '"%s/v2/aggz/ticker/') if status == 404 else ("range/1/day/", "range/1/days/")
    script = key_in_the_url(tmp_path, edit)
    result = connector.read(connector.config(), now=AFTER_CLOSE, flags=("--script", script, "--debug"))
    assert result.returncode == 1, result.describe()
    message = result.errors[0]["message"]
    assert f"HTTP {status} from http://127.0.0.1:" in message, message
    assert "apiKey=****" in message, message
    entries = connector.server.log()
    assert entries and all(e["api_key_in_query"] for e in entries), "the copy did put the key in the URL"


def test_url_encoded_key_in_the_url_is_masked(connector, tmp_path):
    """A key whose URL-encoded form differs from the key: both are masked (a 401 quotes the URL)."""
    connector.secrets.append(SPECIAL)
    script = key_in_the_url(tmp_path)
    result = connector.read(connector.config(api_key=SPECIAL), now=AFTER_CLOSE, flags=("--script", script))
    assert result.returncode == 1, result.describe()
    error = result.errors[0]
    assert error["failure_type"] == "config_error", error
    assert "apiKey=****" in error["message"], error
    assert "api_key" in error["message"], "a 401 names the API key"


@pytest.mark.parametrize("status", [500, 429])
def test_key_in_the_url_of_retried_failures_is_masked(connector, tmp_path, status):
    connector.secrets.append(SPECIAL)
    connector.server.faults(fail_after=0, status=status, retry_after=0)
    script = key_in_the_url(tmp_path)
    # Under valgrind one attempt can take longer than half a second: the budget must allow a retry.
    config = connector.config(retry_max_seconds=5 if WRAPPED else 0.5)
    result = connector.read(config, now=AFTER_CLOSE, flags=("--script", script))
    assert result.returncode == 1, result.describe()
    assert [e["failure_type"] for e in result.errors] == ["transient_error"], result.describe()
    assert any("retry" in m["log"]["message"] for m in result.of("LOG")), result.describe()


def test_connection_refused_with_the_key_in_the_url(connector, tmp_path):
    script = key_in_the_url(tmp_path)
    port = closed_port()
    config = connector.config(base_url=f"http://u:{CANARY}@127.0.0.1:{port}", retry_max_seconds=1)
    check = connector.check(config, flags=("--script", script), now=AFTER_CLOSE)
    assert check.connection_status["status"] == "FAILED", check.describe()
    assert "****" in check.connection_status["message"], check.connection_status
    result = connector.read(config, now=AFTER_CLOSE, flags=("--script", script))
    assert result.returncode == 1, result.describe()
    assert [e["failure_type"] for e in result.errors] == ["transient_error"], result.describe()
    assert str(port) in result.errors[0]["message"], "the error says where it could not connect"


def test_unresolvable_host_named_after_the_key(connector, tmp_path):
    """libcurl's own error text quotes the host name: here, the key."""
    config = connector.config(base_url=f"http://{CANARY}.invalid", retry_max_seconds=1, request_timeout_seconds=5)
    check = connector.check(config, now=AFTER_CLOSE, timeout=60)
    assert check.connection_status["status"] == "FAILED", check.describe()
    result = connector.read(config, now=AFTER_CLOSE, timeout=60)
    assert result.returncode == 1, result.describe()
    assert "****.invalid" in " ".join(printed_texts(check) + printed_texts(result)), result.describe()


# --------------------------------------------------------------------------------------------
# the key in logs, headers and script errors
# --------------------------------------------------------------------------------------------

LEAKY = ('  parse = function(ctx, response)\n',
         '  parse = function(ctx, response)\n'
         '    log.info("key:", ctx.config.api_key, "escaped:", http.escape(ctx.config.api_key))\n'
         '    print("Authorization: Bearer " .. ctx.config.api_key)\n'
         '    log.warn(string.format("headers {Authorization = %s}", "Bearer " .. ctx.config.api_key))\n')


@pytest.mark.parametrize("key", [CANARY, SPECIAL], ids=["canary", "special"])
def test_script_logging_the_key_is_masked(connector, tmp_path, key):
    connector.secrets.append(key)
    script = script_copy(tmp_path, LEAKY)
    if key == CANARY:
        result = connector.read(connector.config(api_key=key), now=AFTER_CLOSE,
                                flags=("--script", script)).assert_complete()
    else:
        # SPECIAL is not a valid key: parse never runs, so log it where it does (check).
        script = script_copy(tmp_path, ("  local ticker = tickers(config)[1]\n",
                                        "  local ticker = tickers(config)[1]\n"
                                        '  log.info("key:", config.api_key, "escaped:", http.escape(config.api_key))\n'
                                        '  print("Authorization: Bearer " .. config.api_key)\n'),
                             name="leaky_check.lua")
        result = connector.check(connector.config(api_key=key), now=AFTER_CLOSE, flags=("--script", script))
    texts = printed_texts(result)
    assert any(t.startswith("key: **** escaped: ****") for t in texts), texts
    assert "Authorization: Bearer ****" in texts, texts


@pytest.mark.parametrize("key", [CANARY, SPECIAL], ids=["canary", "special"])
def test_json_encoded_key_in_a_log_is_masked(connector, tmp_path, key):
    """The runtime's own json.encode escapes quotes and backslashes: a log of encoded headers
    must not show the key in that form either."""
    connector.secrets.append(key)
    log_headers = '  log.info("headers:", json.encode({Authorization = "Bearer " .. config.api_key}))\n'
    script = script_copy(tmp_path, ("  local ticker = tickers(config)[1]\n",
                                    "  local ticker = tickers(config)[1]\n" + log_headers),
                         name="json_check.lua")
    result = connector.check(connector.config(api_key=key), now=AFTER_CLOSE, flags=("--script", script))
    texts = [t for t in printed_texts(result) if t.startswith("headers:")]
    assert texts == ['headers: {"Authorization":"Bearer ****"}'], texts


def test_script_error_quoting_the_key_is_masked(connector, tmp_path):
    script = script_copy(tmp_path, ("  parse = function(ctx, response)\n",
                                    "  parse = function(ctx, response)\n"
                                    '    error("cannot use key " .. ctx.config.api_key .. " / "'
                                    " .. http.escape(ctx.config.api_key))\n"))
    result = connector.read(connector.config(), now=AFTER_CLOSE, flags=("--script", script))
    assert result.returncode == 1, result.describe()
    error = result.errors[0]
    assert error["failure_type"] == "system_error"
    assert "cannot use key **** / ****" in error["message"], error
    assert error.get("stack_trace"), error


def test_describe_error_quoting_the_key_is_masked(connector, tmp_path):
    script = script_copy(tmp_path, ("local function describe_error(status, body)\n",
                                    "local function describe_error(status, body, ctx)\n"
                                    '  if status == 401 then return "key " .. ctx.config.api_key .. " refused", '
                                    '"config_error" end\n'))
    connector.secrets.append(KEY + "-wrong")
    result = connector.read(connector.config(api_key=KEY + "-wrong"), now=AFTER_CLOSE, flags=("--script", script))
    assert result.returncode == 1, result.describe()
    assert "key **** refused" in result.errors[0]["message"], result.errors


def test_every_secret_field_is_masked(connector, tmp_path):
    """Not only api_key: any field the spec marks airbyte_secret (here a second one)."""
    other = "sl-second-secret-7e57"
    connector.secrets.append(other)
    script = script_copy(
        tmp_path,
        ("      stock_ticker = {\n", '      proxy_password = { type = "string", airbyte_secret = true },\n'
                                     "      stock_ticker = {\n"),
        ("  local ticker = tickers(config)[1]\n", "  local ticker = tickers(config)[1]\n"
                                                  '  log.info("password:", config.proxy_password)\n'))
    result = connector.check(connector.config(proxy_password=other), now=AFTER_CLOSE, flags=("--script", script))
    assert result.connection_status["status"] == "SUCCEEDED", result.describe()
    assert "password: ****" in printed_texts(result)
