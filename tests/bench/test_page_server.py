"""The bench's page server answers like an HTTP/1.1 server: the floor and the sync both depend on it."""
import http.client
import shutil
import socket
import subprocess
import time

import pytest

from page_server import PageServer

PAGES = {"AAA": b'{"ticker":"AAA","results":[]}', "BBB": b'{"ticker":"BBB","queryCount":0}' * 5000}


def ticker_of(path):
    parts = path.split("/")
    return parts[4] if len(parts) > 4 and path.startswith("/v2/aggs/ticker/") else None


@pytest.fixture
def server():
    s = PageServer(PAGES, ticker_of)
    yield s
    s.shutdown()


def path(ticker):
    return f"/v2/aggs/ticker/{ticker}/range/1/day/2020-01-01/2020-12-31?limit=50000"


def read_answer(sock_file):
    status = sock_file.readline()
    headers = {}
    while True:
        line = sock_file.readline()
        if line in (b"\r\n", b""):
            break
        name, value = line.decode().split(":", 1)
        headers[name.strip().lower()] = value.strip()
    body = sock_file.read(int(headers["content-length"]))
    return status, headers, body


def test_answers_on_one_keep_alive_connection(server):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    for ticker in ("AAA", "BBB", "AAA"):
        conn.request("GET", path(ticker), headers={"Authorization": "Bearer k"})
        resp = conn.getresponse()
        assert resp.status == 200
        assert resp.getheader("Content-Type") == "application/json"
        assert resp.read() == PAGES[ticker]
    conn.close()
    assert server.wait_served(3)
    assert len(server.served) == 3
    assert all(end >= start for start, end in server.served)


def test_pipelined_requests_are_answered_in_order(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(b"".join(b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % path(t).encode() for t in ("BBB", "AAA")))
        f = sock.makefile("rb")
        assert read_answer(f)[2] == PAGES["BBB"]
        assert read_answer(f)[2] == PAGES["AAA"]


def test_unknown_path_is_404_and_the_connection_stays_usable(server):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    conn.request("GET", path("ZZZ"))
    resp = conn.getresponse()
    assert resp.status == 404
    resp.read()
    conn.request("GET", "/elsewhere")
    resp = conn.getresponse()
    assert resp.status == 404
    resp.read()
    conn.request("GET", path("AAA"))
    assert conn.getresponse().read() == PAGES["AAA"]
    conn.close()


def test_connection_close_is_honoured(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(b"GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % path("AAA").encode())
        f = sock.makefile("rb")
        assert read_answer(f)[2] == PAGES["AAA"]
        assert f.read() == b""


@pytest.mark.parametrize("request_head", [b"POST / HTTP/1.1\r\n\r\n", b"GET\r\n\r\n", b"GET / HTTP/1.1 extra\r\n\r\n",
                                          b"GET / FOO\r\n\r\n", b"GET / HTTP/2.0\r\n\r\n"])
def test_what_it_does_not_speak_is_400_then_closed(server, request_head):
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(request_head)
        f = sock.makefile("rb")
        status, _, _ = read_answer(f)
        assert status.startswith(b"HTTP/1.1 400 ")
        assert f.read() == b""


def test_a_head_that_never_ends_is_400_then_closed(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nX: " + b"a" * 70000)
        f = sock.makefile("rb")
        assert read_answer(f)[0].startswith(b"HTTP/1.1 400 ")
        assert f.read() == b""


def wait_for_connections(server, count, timeout=5.0):
    deadline = time.monotonic() + timeout
    while server.connections != count and time.monotonic() < deadline:
        time.sleep(0.01)
    return server.connections == count


def test_a_client_that_leaves_mid_head_ends_its_connection(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHo")
        assert wait_for_connections(server, 1)
    assert wait_for_connections(server, 0)
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    conn.request("GET", path("AAA"))
    assert conn.getresponse().read() == PAGES["AAA"]
    conn.close()


def test_a_head_in_pieces_is_answered_once_whole(server):
    head = b"GET %s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer k\r\n\r\n" % path("BBB").encode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        for i in range(0, len(head), 7):
            sock.sendall(head[i:i + 7])
            time.sleep(0.002)
        f = sock.makefile("rb")
        assert read_answer(f)[2] == PAGES["BBB"]
    assert server.wait_served(1)
    assert len(server.served) == 1


def test_empty_lines_before_a_request_are_ignored(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(b"\r\n\r\nGET %s HTTP/1.1\r\n\r\n" % path("AAA").encode())
        assert read_answer(sock.makefile("rb"))[2] == PAGES["AAA"]


@pytest.mark.parametrize("version, connection, stays_open", [
    (b"HTTP/1.1", b"", True),
    (b"HTTP/1.1", b"Connection: close\r\n", False),
    (b"HTTP/1.1", b"connection:  Keep-Alive, Close\r\n", False),
    (b"HTTP/1.1", b"Connection: keep-alive\r\n", True),
    (b"HTTP/1.0", b"", False),
    (b"HTTP/1.0", b"Connection: keep-alive\r\n", True),
])
def test_the_connection_header_and_version_decide_keep_alive(server, version, connection, stays_open):
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        request = b"GET %s %s\r\nHost: x\r\n%s\r\n" % (path("AAA").encode(), version, connection)
        sock.sendall(request)
        f = sock.makefile("rb")
        assert read_answer(f)[2] == PAGES["AAA"]
        if stays_open:
            sock.sendall(request)
            assert read_answer(f)[2] == PAGES["AAA"]
        else:
            assert f.read() == b""


@pytest.mark.skipif(not shutil.which("curl"), reason="curl is not installed")
def test_curl_in_parallel_gets_every_page_whole(server, tmp_path):
    """What the floor does: curl --parallel over keep-alive connections."""
    argv = ["curl", "-s", "--fail", "--parallel", "--parallel-max", "4"]
    for i in range(12):
        ticker = "AAA" if i % 3 == 0 else "BBB"
        argv += ["-o", str(tmp_path / f"{i}.{ticker}"), f"http://127.0.0.1:{server.port}{path(ticker)}"]
    subprocess.run(argv, check=True, timeout=30)
    for i in range(12):
        (out,) = tmp_path.glob(f"{i}.*")
        assert out.read_bytes() == PAGES[out.suffix[1:]]
    assert server.wait_served(12)
    assert len(server.served) == 12


def test_a_page_it_lacks_is_rendered_once_then_sent_from_memory():
    rendered = []

    def render(ticker):
        rendered.append(ticker)
        return None if ticker == "NONE" else b'{"ticker":"%s"}' % ticker.encode()

    s = PageServer(PAGES, ticker_of, render)
    try:
        conn = http.client.HTTPConnection("127.0.0.1", s.port, timeout=5)
        answers = []
        for ticker in ("CCC", "AAA", "CCC", "NONE", "NONE"):
            conn.request("GET", path(ticker))
            resp = conn.getresponse()
            answers.append((resp.status, resp.read()))
        conn.close()
        assert answers == [(200, b'{"ticker":"CCC"}'), (200, PAGES["AAA"]), (200, b'{"ticker":"CCC"}'),
                           (404, b'{"status":"NOT_FOUND"}'), (404, b'{"status":"NOT_FOUND"}')]
        assert rendered == ["CCC", "NONE"]  # what it had was not rendered, nothing twice
        assert s.body(path("CCC")) == b'{"ticker":"CCC"}' and s.body(path("NONE")) is None
    finally:
        s.shutdown()


def test_targets_are_the_pages_answered_each_once_in_the_order_first_asked(server):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    for target in (path("BBB"), path("ZZZ"), path("AAA"), path("BBB"), path("AAA") + "&x=1"):
        conn.request("GET", target)
        conn.getresponse().read()
    conn.close()
    assert server.wait_served(5)
    assert server.targets == [path("BBB"), path("AAA"), path("AAA") + "&x=1"]


def test_unkept_pages_are_rendered_at_each_request():
    """keep=False, as the scale scenario's server: nothing rendered is kept."""
    rendered = []

    def render(ticker):
        rendered.append(ticker)
        return None if ticker == "NONE" else b'{"ticker":"%s","n":%d}' % (ticker.encode(), len(rendered))

    s = PageServer(PAGES, ticker_of, render, keep=False)
    try:
        conn = http.client.HTTPConnection("127.0.0.1", s.port, timeout=5)
        answers = []
        for ticker in ("CCC", "AAA", "CCC", "NONE"):
            conn.request("GET", path(ticker))
            resp = conn.getresponse()
            answers.append((resp.status, resp.read()))
        conn.close()
        assert answers == [(200, b'{"ticker":"CCC","n":1}'), (200, PAGES["AAA"]), (200, b'{"ticker":"CCC","n":2}'),
                           (404, b'{"status":"NOT_FOUND"}')]
        assert rendered == ["CCC", "CCC", "NONE"]
    finally:
        s.shutdown()


def test_taken_targets_are_forgotten(server):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    for ticker in ("AAA", "BBB", "AAA"):
        conn.request("GET", path(ticker))
        conn.getresponse().read()
    # The client may read an answer before the server's thread notes its target.
    assert server.wait_served(3)
    assert server.take_targets() == [path("AAA"), path("BBB")]
    assert server.targets == [] and server.take_targets() == []
    conn.request("GET", path("BBB"))
    conn.getresponse().read()
    conn.close()
    assert server.wait_served(4)
    assert server.take_targets() == [path("BBB")]


def test_idle_once_every_client_has_left(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=5):
        assert wait_for_connections(server, 1)
        assert not server.wait_idle(0.05)
    assert server.wait_idle(5)
