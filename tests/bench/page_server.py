"""The bench's page server: pre-rendered answers sent from memory over HTTP/1.1 keep-alive.

The issue asks for a server that is not the bottleneck. `http.server` spent ~0.3 ms of CPU on
each answer (its header parsing goes through the `email` package), ~13 ms over a 40-page sync:
on two cores that CPU is taken from whichever client it runs beside, and a client with three
busy threads (the sync) loses more of it than one with one (curl). This server reads a request
head, looks its path up and sends one prepared bytes object: a few tens of us an answer.

It speaks only what the bench needs: GET, no request body, keep-alive unless the client sends
`Connection: close`. Anything else gets a 400 or 404 and the connection is closed.
"""
import re
import socket
import threading
import time

HEAD_END = b"\r\n\r\n"
MAX_HEAD = 64 * 1024
CLOSE_HEADER = re.compile(rb"\r\nconnection:[ \t]*close[ \t]*\r\n", re.IGNORECASE)


def _answer(status, reason, body, content_type=b"application/json"):
    head = (b"HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n"
            % (status, reason, content_type, len(body)))
    return head + body


NOT_FOUND = _answer(404, b"Not Found", b'{"status":"NOT_FOUND"}')
BAD_REQUEST = _answer(400, b"Bad Request", b"bad request\n", b"text/plain")


class PageServer:
    """Serves answer_for(path) -> bytes or None (404) on 127.0.0.1. `served` collects
    (start, end) perf_counter pairs of each answer, for the bench's --timeline."""

    def __init__(self, bodies_by_path_key, path_key):
        # Whole answers (head and body) built once: an answer is one sendall.
        self._answers = {key: _answer(200, b"OK", body) for key, body in bodies_by_path_key.items()}
        self._path_key = path_key
        self.served = []
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        # Eight connections arrive at once; a short backlog drops some (a 1 s SYN retry).
        self._listener.listen(128)
        self.port = self._listener.getsockname()[1]
        self._stopping = False
        threading.Thread(target=self._accept_loop, daemon=True).start()

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
            threading.Thread(target=self._serve_connection, args=(conn,), daemon=True).start()

    def _serve_connection(self, conn):
        # Nagle's algorithm would hold an answer's last segment until the client's delayed ACK
        # (40 ms): a stall that is the server's, not the client's.
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        pending = b""
        with conn:
            while True:
                end = pending.find(HEAD_END)
                if end < 0:
                    if len(pending) > MAX_HEAD:
                        conn.sendall(BAD_REQUEST)
                        return
                    try:
                        chunk = conn.recv(65536)
                    except OSError:
                        return
                    if not chunk:
                        return
                    pending += chunk
                    continue
                head, pending = pending[:end + 2], pending[end + 4:]
                start = time.perf_counter()
                keep_alive = self._answer_head(conn, head)
                self.served.append((start, time.perf_counter()))
                if not keep_alive:
                    return

    def _answer_head(self, conn, head):
        """Sends the answer to one request head; False when the connection is to be closed."""
        request_line = head.split(b"\r\n", 1)[0].split(b" ")
        if len(request_line) != 3 or request_line[0] != b"GET":
            conn.sendall(BAD_REQUEST)
            return False
        key = self._path_key(request_line[1].decode("latin-1"))
        answer = self._answers.get(key, NOT_FOUND) if key is not None else NOT_FOUND
        try:
            conn.sendall(answer)
        except OSError:
            return False
        return not CLOSE_HEADER.search(head)
