"""The bench's page server: pre-rendered answers sent from memory over HTTP/1.1 keep-alive.

The issue asks for a server that is not the bottleneck. `http.server` spent ~0.3 ms of CPU on
each answer (its header parsing goes through the `email` package): curl's answers took up to
4.5 ms each to write, and that, not the network, set curl's floor. This server reads a request
head, looks its path up and sends one prepared bytes object (a page is rendered at its first
request, untimed, and kept); `bench.py --timeline` shows each answer written in 0.1-0.6 ms, most
of it the kernel's loopback send.

It speaks only what the bench needs: GET without a body, HTTP/1.1 (keep-alive unless the client
says `Connection: close`) or HTTP/1.0 (closed after the answer unless it says keep-alive). An
unknown path gets a 404 and the connection stays open; anything else gets a 400 and is closed.
"""
import re
import socket
import threading
import time

HEAD_END = b"\r\n\r\n"
MAX_HEAD = 64 * 1024
CONNECTION_HEADER = re.compile(rb"\r\nconnection:([^\r\n]*)", re.IGNORECASE)
VERSIONS = (b"HTTP/1.1", b"HTTP/1.0")


def _answer(status, reason, body, content_type=b"application/json"):
    head = (b"HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n"
            % (status, reason, content_type, len(body)))
    return head + body


NOT_FOUND = _answer(404, b"Not Found", b'{"status":"NOT_FOUND"}')
BAD_REQUEST = _answer(400, b"Bad Request", b"bad request\n", b"text/plain")


def _keeps_alive(head, version):
    """Whether the connection stays open after answering head (RFC 9112, 9.3)."""
    tokens = set()
    for value in CONNECTION_HEADER.findall(head):
        tokens.update(t.strip().lower() for t in value.split(b","))
    if b"close" in tokens:
        return False
    return version == b"HTTP/1.1" or b"keep-alive" in tokens


class PageServer:
    """Serves, on 127.0.0.1, bodies_by_key[path_key(path)] for each GET (a 404 when path_key
    gives None or a key it does not have). A key it does not have is given to render, when there
    is one: the body it returns (None: a 404) is kept and served from then on, so that a page is
    rendered once, at its first request, and sent from memory after. `served` collects a
    (start, end) perf_counter pair per answer, appended once the answer is sent, for the bench's
    --timeline; `targets` the request targets (path and query) answered 200, each once, in the
    order first asked: what the bench's floor asks for in its turn. keep=False: a rendered body is
    not kept but rendered again at each request, without the lock (render must then be safe to
    call from several threads at once): for the scale scenario's 10,000 pages, which a render
    splices in microseconds from a few shared ones rather than holding hundreds of MB."""

    def __init__(self, bodies_by_key, path_key, render=None, keep=True):
        # Whole answers (head and body) built once: an answer is one sendall.
        self._answers = {key: _answer(200, b"OK", body) for key, body in bodies_by_key.items()}
        self._path_key = path_key
        self._render = render
        self._keep = keep
        self._rendering = threading.Lock()
        self.targets = []
        self._targets_seen = set()
        self.served = []
        self._served_changed = threading.Condition()
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        # Eight connections arrive at once; a short backlog drops some (a 1 s SYN retry).
        self._listener.listen(128)
        self.port = self._listener.getsockname()[1]
        self._stopping = False
        self.connections = 0  # being served now
        threading.Thread(target=self._accept_loop, daemon=True).start()

    def wait_served(self, count, timeout=5.0):
        """Waits until count answers are in `served`: the client may have read an answer before
        the server's thread, back from sendall, noted it. True when they are."""
        with self._served_changed:
            return self._served_changed.wait_for(lambda: len(self.served) >= count, timeout)

    def take_targets(self):
        """The targets answered 200 since the last take (each once, in the order first asked),
        forgotten here: a target asked again after a take is noted again."""
        with self._served_changed:
            targets, self.targets = self.targets, []
            self._targets_seen = set()
        return targets

    def wait_idle(self, timeout=5.0):
        """Waits until no connection is open (a client that exited has had its connections'
        threads finish their work). True when none is."""
        with self._served_changed:
            return self._served_changed.wait_for(lambda: self.connections == 0, timeout)

    def shutdown(self):
        self._stopping = True
        try:
            # Wakes accept() so that the loop sees _stopping.
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
        except OSError:
            pass
        self._listener.close()

    def _accept_loop(self):
        while not self._stopping:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            # Counted here rather than in its thread, so that wait_idle cannot miss a connection
            # whose thread has not started yet.
            with self._served_changed:
                self.connections += 1
            threading.Thread(target=self._serve_connection, args=(conn,), daemon=True).start()

    def _serve_connection(self, conn):
        try:
            # Nagle's algorithm would hold an answer's last segment until the client's delayed
            # ACK (40 ms): a stall that is the server's, not the client's.
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with conn:
                self._serve_requests(conn)
        except OSError:
            pass  # the client went away: nothing to answer
        finally:
            with self._served_changed:
                self.connections -= 1
                self._served_changed.notify_all()

    def _serve_requests(self, conn):
        pending = b""
        while True:
            # Empty lines before a request line are to be ignored (RFC 9112, 2.2).
            pending = pending.lstrip(b"\r\n")
            end = pending.find(HEAD_END)
            if end < 0:
                if len(pending) > MAX_HEAD:
                    conn.sendall(BAD_REQUEST)
                    return
                chunk = conn.recv(65536)
                if not chunk:
                    return
                pending += chunk
                continue
            head, pending = pending[:end + 2], pending[end + 4:]
            start = time.perf_counter()
            keep_alive = self._answer_head(conn, head)
            with self._served_changed:
                self.served.append((start, time.perf_counter()))
                self._served_changed.notify_all()
            if not keep_alive:
                return

    def _answer_head(self, conn, head):
        """Sends the answer to one request head; False when the connection is to be closed."""
        request_line = head.split(b"\r\n", 1)[0].split(b" ")
        if len(request_line) != 3 or request_line[0] != b"GET" or request_line[2] not in VERSIONS:
            conn.sendall(BAD_REQUEST)
            return False
        target = request_line[1].decode("latin-1")
        answer = self._answer_for(target)
        conn.sendall(answer)
        if answer is not NOT_FOUND:
            with self._served_changed:  # connections are served on threads of their own
                if target not in self._targets_seen:
                    self._targets_seen.add(target)
                    self.targets.append(target)
        return _keeps_alive(head, request_line[2])

    def body(self, target):
        """The body answered to target, or None when it is a 404."""
        answer = self._answer_for(target)
        return None if answer is NOT_FOUND else answer[answer.index(HEAD_END) + len(HEAD_END):]

    def _answer_for(self, target):
        key = self._path_key(target)
        if key is None:
            return NOT_FOUND
        answer = self._answers.get(key)
        if answer is None and self._render is not None and not self._keep:
            body = self._render(key)
            return NOT_FOUND if body is None else _answer(200, b"OK", body)
        if answer is None and self._render is not None:
            # One thread renders a page; the others asking for it meanwhile wait for it.
            with self._rendering:
                answer = self._answers.get(key)
                if answer is None:
                    body = self._render(key)
                    answer = self._answers[key] = NOT_FOUND if body is None else _answer(200, b"OK", body)
        return answer if answer is not None else NOT_FOUND
