"""Transport errors that asking again would not mend end the sync at once, with the right
failure type, instead of being retried with backoff for the whole retry budget (minutes).

- HTTPS: the TLS library starts (on its own thread, while libcurl's other libraries are mapped)
  and a certificate the runtime does not trust is a config error. The server speaks TLS with a
  self-signed certificate (tests/e2e/tls, made for these tests and trusted by nothing) and
  answers every request with an empty aggregates page.
- An answer larger than the runtime's cap (256 MB) is a system error: the API's fault.
"""

from __future__ import annotations

import http.server
import ssl
import threading
from pathlib import Path

import pytest

from .conftest import WRAPPED

TLS = Path(__file__).parent / "tls"


class _EmptyPage(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server's name)
        body = b'{"ticker":"TSLA","queryCount":0,"resultsCount":0,"adjusted":true,"status":"OK","request_id":"t"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def untrusted_https():
    """(base_url, connections): connections lists every TCP connection accepted, before its TLS
    handshake (which the runtime ends when it does not trust the certificate)."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _EmptyPage)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(TLS / "localhost.pem", TLS / "localhost.key")
    connections = []

    def get_request():
        conn, address = server.socket.accept()
        connections.append(address)
        return context.wrap_socket(conn, server_side=True), address
    server.get_request = get_request
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    yield f"https://127.0.0.1:{server.server_address[1]}", connections
    server.shutdown()
    server.server_close()


def read_fails_at_once(connector, base_url, failure_type, reason):
    """A full refresh against base_url ends with one error of failure_type naming the URL and
    reason, no record and no retry."""
    result = connector.read(connector.config(base_url=base_url), "full_refresh")
    assert result.returncode != 0, result.describe()
    (error,) = result.errors
    assert error["failure_type"] == failure_type, error
    assert reason in error["message"] and base_url in error["message"], error
    assert not [m for m in result.of("LOG") if " retry " in m["log"]["message"]], result.describe()
    assert result.statuses[-1] == "INCOMPLETE"
    assert result.records == []


def test_read_fails_at_once_on_an_untrusted_certificate(connector, untrusted_https):
    base_url, connections = untrusted_https
    read_fails_at_once(connector, base_url, "config_error", "certificate")
    assert len(connections) == 1  # asked once, not again after a backoff


def test_check_reports_the_certificate_problem(connector, untrusted_https):
    base_url, _ = untrusted_https
    result = connector.check(connector.config(base_url=base_url))
    status = result.connection_status
    assert status["status"] == "FAILED", result.describe()
    assert "certificate" in status["message"], status


class _EndlessPage(http.server.BaseHTTPRequestHandler):
    """Announces 300 MB of JSON and sends it until the client hangs up."""
    protocol_version = "HTTP/1.1"

    def do_GET(self):  # noqa: N802
        self.server.requests += 1
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(300 << 20))
        self.end_headers()
        chunk = b" " * (1 << 20)
        try:
            self.wfile.write(b'{"results":[')
            for _ in range(300):
                self.wfile.write(chunk)
        except OSError:
            pass  # the runtime stopped reading at its cap
        self.close_connection = True

    def log_message(self, *args):
        pass


@pytest.fixture
def endless_http():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _EndlessPage)
    server.daemon_threads = True
    server.requests = 0
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.mark.skipif(WRAPPED, reason="256 MB through valgrind takes minutes")
def test_an_answer_past_the_cap_fails_the_sync_at_once(connector, endless_http):
    base_url = f"http://127.0.0.1:{endless_http.server_address[1]}"
    read_fails_at_once(connector, base_url, "system_error", "larger than 256 MB")
    assert endless_http.requests == 1


@pytest.mark.skipif(WRAPPED, reason="256 MB through valgrind takes minutes")
def test_http_get_gives_no_status_for_an_answer_past_the_cap(connector, endless_http):
    """check's http.get: nil and the reason, not a 200 with the first 256 MB of a body."""
    base_url = f"http://127.0.0.1:{endless_http.server_address[1]}"
    status = connector.check(connector.config(base_url=base_url)).connection_status
    assert status["status"] == "FAILED", status
    assert "larger than 256 MB" in status["message"], status
