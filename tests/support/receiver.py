"""A real webhook receiver for tests: an HTTP server on a loopback port, in a thread.

It records every request and answers as it is told, in order, then ``200``::

    with Receiver() as receiver:
        receiver.replies += [Reply(503, {"Retry-After": "120"}), Reply(hang=30)]
        ... deliver to receiver.url ...
        [first, second, third] = receiver.requests

``hang`` holds the answer back that many seconds (or until the receiver stops). With ``tls`` it
speaks HTTPS and records the name each client asked for (SNI) in ``server_names``.
"""

from __future__ import annotations

import ssl
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

PATH = "/hooks/mailbeacon"


@dataclass(frozen=True)
class Reply:
    status: int = 200
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""
    hang: float = 0.0  # seconds before answering


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]  # names in lower case
    body: bytes


class Receiver:
    def __init__(
        self, *, tls: ssl.SSLContext | None = None, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.replies: list[Reply] = []
        self.requests: list[Received] = []
        self.server_names: list[str | None] = []
        self.most_at_once = 0  # requests being answered at the same time, at most
        self._at_once = 0
        self._lock = threading.Lock()
        self._released = threading.Event()  # stops every hanging answer
        self._server = ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        self._server.daemon_threads = True
        if tls is not None:
            tls.sni_callback = lambda sock, name, context: self.server_names.append(name)
            self._server.socket = tls.wrap_socket(self._server.socket, server_side=True)
        scheme = "https" if tls is not None else "http"
        self.url = f"{scheme}://{host}:{self._server.server_address[1]}{PATH}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._released.set()
        self._server.shutdown()
        self._server.server_close()

    def _answer(self, request: Received) -> Reply:
        with self._lock:
            self.requests.append(request)
            self._at_once += 1
            self.most_at_once = max(self.most_at_once, self._at_once)
            return self.replies.pop(0) if self.replies else Reply()

    def _done(self) -> None:
        with self._lock:
            self._at_once -= 1

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                headers = {k.lower(): v for k, v in self.headers.items()}
                reply = receiver._answer(Received(self.path, headers, body))
                try:
                    if reply.hang:
                        receiver._released.wait(reply.hang)
                    self.send_response(reply.status)
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(reply.body)))
                    self.end_headers()
                    self.wfile.write(reply.body)
                finally:
                    receiver._done()

            def log_message(self, format: str, *args: Any) -> None:
                pass  # the test says what matters

        return Handler
