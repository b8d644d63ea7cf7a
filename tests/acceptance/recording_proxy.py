"""A loopback HTTP proxy for acceptance tests: records what a client sends, can inject answers.

Clients are pointed at the proxy; it forwards each request to the live server and keeps a
`Record` (method, path, headers, body size, whether the body was chunked). `inject` makes the
next matching request get a canned answer instead (e.g. 412 or 429 on an upload POST) without
reaching the server, or (`drop_after`) a broken connection: the server gets only the first
bytes of the body and the client no answer at all, as when a network fails mid-upload. Bodies are buffered (test-sized), so streaming itself is tested directly
against the server, not through here.
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "te",
               "trailer", "upgrade", "proxy-connection"}


@dataclass(frozen=True)
class Record:
    """One request as the client sent it."""

    method: str
    path: str
    headers: dict[str, str]
    body_size: int
    chunked: bool


@dataclass
class Injection:
    """A canned answer for the next `times` requests matching `match`; with `drop_after`
    (bytes), no answer: that much of the body is forwarded and the connection closed."""

    match: Callable[[Record], bool]
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    times: int = 1
    drop_after: int | None = None


class RecordingProxy:
    """Forwards to `upstream` (http://host:port); `base_url` is where clients connect."""

    def __init__(self, upstream: str) -> None:
        host, port = upstream.removeprefix("http://").split(":")
        self.upstream = (host, int(port))
        self.records: list[Record] = []
        self.injections: list[Injection] = []
        self.injected: list[Record] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self._server.server_address[1]}"

    @contextlib.contextmanager
    def running(self) -> Iterator[RecordingProxy]:
        """Serve in a thread; shut down afterwards."""
        thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._server.shutdown()
            self._server.server_close()
            thread.join(timeout=10)

    def inject(self, injection: Injection) -> None:
        """Answer matching requests with a canned response (once per `times`)."""
        with self._lock:
            self.injections.append(injection)

    def clear_injections(self) -> None:
        """Forget injections not used up (so they cannot hit a later test)."""
        with self._lock:
            self.injections.clear()

    def _take_injection(self, record: Record) -> Injection | None:
        with self._lock:
            self.records.append(record)
            for injection in self.injections:
                if injection.times > 0 and injection.match(record):
                    injection.times -= 1
                    self.injected.append(record)
                    return injection
        return None

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                return

            def _body(self) -> tuple[bytes, bool]:
                if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                    parts = []
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                        if size == 0:
                            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                                pass
                            return b"".join(parts), True
                        parts.append(self.rfile.read(size))
                        self.rfile.readline()
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length), False

            def _handle(self) -> None:
                body, chunked = self._body()
                headers = {k.lower(): v for k, v in self.headers.items()}
                record = Record(self.command, self.path, headers, len(body), chunked)
                injection = proxy._take_injection(record)
                if injection is not None and injection.drop_after is None:
                    self._reply(injection.status, injection.headers, injection.body)
                    return
                if injection is not None:
                    self._forward(body[:injection.drop_after])
                    self.close_connection = True
                    with contextlib.suppress(OSError):
                        self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self._reply(*self._forward(body))

            def _forward(self, body: bytes) -> tuple[int, dict[str, str], bytes]:
                upstream = http.client.HTTPConnection(*proxy.upstream, timeout=120)
                try:
                    forward = {k: v for k, v in self.headers.items()
                               if k.lower() not in _HOP_BY_HOP}
                    forward["Content-Length"] = str(len(body))
                    upstream.request(self.command, self.path, body=body, headers=forward)
                    response = upstream.getresponse()
                    data = response.read()
                    kept = {k: v for k, v in response.getheaders()
                            if k.lower() not in _HOP_BY_HOP}
                    return response.status, kept, data
                finally:
                    upstream.close()

            def _reply(self, status: int, headers: dict[str, str], body: bytes) -> None:
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            do_GET = do_POST = do_HEAD = do_PUT = _handle  # noqa: N815

        return Handler
