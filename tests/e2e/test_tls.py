"""HTTPS: the TLS library starts (on its own thread, while libcurl's other libraries are mapped)
and a certificate the runtime does not trust fails the sync at once, with a config error, instead
of being asked again for minutes.

The server here speaks TLS with a self-signed certificate (tests/e2e/tls, made for this test and
trusted by nothing), and answers every request with an empty aggregates page.
"""

from __future__ import annotations

import http.server
import ssl
import threading
from pathlib import Path

import pytest

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
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"https://127.0.0.1:{server.server_address[1]}", connections
    server.shutdown()
    server.server_close()


def test_read_fails_at_once_on_an_untrusted_certificate(connector, untrusted_https):
    base_url, connections = untrusted_https
    result = connector.read(connector.config(base_url=base_url), "full_refresh")
    assert result.returncode != 0, result.describe()
    (error,) = result.errors
    assert error["failure_type"] == "config_error", error
    assert "certificate" in error["message"] and base_url in error["message"], error
    assert not [m for m in result.of("LOG") if " retry " in m["log"]["message"]], result.describe()
    assert result.statuses[-1] == "INCOMPLETE"
    assert result.records == []
    assert len(connections) == 1  # asked once, not again after a backoff


def test_check_reports_the_certificate_problem(connector, untrusted_https):
    base_url, _ = untrusted_https
    result = connector.check(connector.config(base_url=base_url))
    status = result.connection_status
    assert status["status"] == "FAILED", result.describe()
    assert "certificate" in status["message"], status
