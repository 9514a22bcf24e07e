"""A local webhook receiver (http.server in a thread) that counts deliveries by idempotency key.

Faults are queued and consumed one per request: `http:<status>` answers that status
(`http:429:<seconds>` adds Retry-After), `drop_after` reads and stores the request, then
closes the connection without answering (the sender cannot know it arrived), `redirect`
answers 302 to another path, `slow:<seconds>` waits before answering. `requests` is every
request read; `deliveries()` is what a receiver that deduplicates on the
`Idempotency-Key` header keeps: one per key.
"""

from __future__ import annotations

import json
import ssl
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def key(self) -> str:
        return self.headers.get("idempotency-key", "")

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class ReceiverState:
    requests: list[Request] = field(default_factory=list)
    faults: deque[str] = field(default_factory=deque)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def deliveries(self) -> dict[str, Request]:
        """First request per idempotency key, among those that were stored (all read ones)."""
        kept: dict[str, Request] = {}
        for request in self.requests:
            kept.setdefault(request.key, request)
        return kept


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass

    def do_POST(self) -> None:
        state = self.server.state
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        with state.lock:
            fault = state.faults.popleft() if state.faults else None
            if fault is None or fault == "drop_after" or fault.startswith("slow:"):
                state.requests.append(Request(path=self.path, body=body,
                                              headers={k.lower(): v for k, v in self.headers.items()}))
        if fault == "drop_after":
            self.close_connection = True
            return
        if fault and fault.startswith("slow:"):
            time.sleep(float(fault.split(":", 1)[1]))
        if fault == "redirect":
            return self._answer(302, b"", {"Location": "/elsewhere"})
        if fault and fault.startswith("http:"):
            parts = fault.split(":")
            headers = {"Retry-After": parts[2]} if len(parts) > 2 else {}
            return self._answer(int(parts[1]), b'{"error": "injected"}', headers)
        self._answer(200, b'{"ok": true}')

    def _answer(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    state: ReceiverState

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gave up (timeout) before the answer: expected in fault tests, not an error.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class WebhookReceiver:
    """`tls`: serve HTTPS with this context (certificates from trustme); `url(host=)` names the host."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.state = ReceiverState()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._scheme = "https" if tls is not None else "http"
        if tls is not None:
            self._server.socket = tls.wrap_socket(self._server.socket, server_side=True)
        self._server.state = self.state
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)

    def url(self, path: str = "/hook", *, host: str = "127.0.0.1") -> str:
        return f"{self._scheme}://{host}:{self._server.server_address[1]}{path}"

    def __enter__(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
