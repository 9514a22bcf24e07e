"""A local OpenAI-compatible chat completions endpoint (http.server in a thread, 127.0.0.1).

`mode` decides each answer: "ok" answers a completion whose content is `reply` (with the
request's model), "slow" waits `delay` seconds first, "error" answers 503, "garbage" answers
200 with a body that is no completion. Every request is kept in `requests` (path, headers, JSON).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class FakeChat:
    url: str = ""
    mode: str = "ok"
    reply: str = "Hi team, a draft from the model."
    delay: float = 2.0
    requests: list[dict[str, Any]] = field(default_factory=list)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass

    def do_POST(self) -> None:
        fake = self.server.fake
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        fake.requests.append({"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()},
                              "json": json.loads(body)})
        if fake.mode == "slow":
            time.sleep(fake.delay)
        if fake.mode == "error":
            self._answer(503, b'{"error": {"message": "overloaded"}}')
        elif fake.mode == "garbage":
            self._answer(200, b'{"nothing": []}')
        else:
            model = json.loads(body).get("model")
            self._answer(200, json.dumps({"id": "chatcmpl-1", "object": "chat.completion", "model": model,
                                          "choices": [{"index": 0, "finish_reason": "stop",
                                                       "message": {"role": "assistant", "content": fake.reply}}]
                                          }).encode())

    def _answer(self, status: int, body: bytes) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except OSError:
            pass  # the client gave up (a timeout test)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    fake: FakeChat


@contextmanager
def chat_server() -> Iterator[FakeChat]:
    server = _Server(("127.0.0.1", 0), _Handler)
    server.fake = FakeChat(url=f"http://127.0.0.1:{server.server_address[1]}/v1")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.fake
    finally:
        server.shutdown()
        server.server_close()
