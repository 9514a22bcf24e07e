"""A fake Slack Web API on 127.0.0.1, written from Slack's public method docs.

What it keeps from the real API (https://api.slack.com/web):
- every method is `POST|GET /api/<method>`, arguments as query string, form or JSON body;
- a bot token in `Authorization: Bearer ...` (missing: `not_authed`, wrong: `invalid_auth`);
- answers are HTTP 200 with `{"ok": true, ...}` or `{"ok": false, "error": "<code>"}`;
- rate limiting is HTTP 429 with a `Retry-After` header (seconds) and `"error": "ratelimited"`;
- `users.lookupByEmail` (`users_not_found`), `conversations.open` (a `D...` IM channel),
  `chat.postMessage` (`channel_not_found`, `no_text`; answers `channel` and `ts`; keeps
  `metadata` {event_type, event_payload}), `conversations.history` (newest first; metadata
  only with `include_all_metadata`).

Faults are queued per method: `ratelimited:<seconds>`, `error:<code>`, `http:<status>`,
`drop_before` (close without doing anything) and `drop_after` (do the work, then close the
connection without answering: the "Slack accepted, the response was lost" case) and
`hang_after` (do the work, then hold the answer until the server stops: a worker can be
killed between Slack's post and its own bookkeeping).
"""

from __future__ import annotations

import json
import sys
import threading
from collections import defaultdict, deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

TOKEN = "xoxb-test-token"


@dataclass
class Posted:
    channel: str
    ts: str
    text: str
    metadata: dict[str, Any] | None
    user: str  # the bot user that posted


@dataclass
class SlackState:
    users: dict[str, str] = field(default_factory=dict)             # email -> user id
    messages: list[Posted] = field(default_factory=list)            # every chat.postMessage done
    calls: list[str] = field(default_factory=list)                  # method names, in order
    faults: dict[str, deque[str]] = field(default_factory=lambda: defaultdict(deque))
    ts_counter: int = 0
    # Sent as `x-oauth-scopes` on every answer, as Slack does for the token's granted scopes.
    scopes: str = "users:read,users:read.email,im:write,chat:write,im:history"
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add_user(self, email: str, user_id: str) -> None:
        self.users[email.lower()] = user_id

    def fail(self, method: str, *faults: str) -> None:
        self.faults[method].extend(faults)

    def in_channel(self, channel: str) -> list[Posted]:
        return [m for m in self.messages if m.channel == channel]


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet test output
        pass

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def _arguments(self) -> dict[str, Any]:
        parts = urlsplit(self.path)
        args: dict[str, Any] = dict(parse_qsl(parts.query))
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        kind = (self.headers.get("Content-Type") or "").split(";")[0].strip()
        if body and kind == "application/json":
            args.update(json.loads(body))
        elif body:
            args.update(parse_qsl(body.decode()))
        return args

    def _reply(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("x-oauth-scopes", self.server.state.scopes)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _drop(self) -> None:
        self.close_connection = True

    def _handle(self) -> None:
        state = self.server.state
        method = urlsplit(self.path).path.removeprefix("/api/")
        args = self._arguments()
        with state.lock:
            state.calls.append(method)
            fault = state.faults[method].popleft() if state.faults[method] else None
        if fault == "drop_before":
            return self._drop()
        if fault and fault.startswith("ratelimited:"):
            return self._reply(429, {"ok": False, "error": "ratelimited"},
                               {"Retry-After": fault.split(":", 1)[1]})
        if fault and fault.startswith("error:"):
            return self._reply(200, {"ok": False, "error": fault.split(":", 1)[1]})
        if fault and fault.startswith("http:"):
            return self._reply(int(fault.split(":", 1)[1]), {"ok": False, "error": "fatal_error"})
        auth = self.headers.get("Authorization") or ""
        if not auth:
            return self._reply(200, {"ok": False, "error": "not_authed"})
        if auth != f"Bearer {TOKEN}":
            return self._reply(200, {"ok": False, "error": "invalid_auth"})
        handler = _METHODS.get(method)
        if handler is None:
            return self._reply(200, {"ok": False, "error": "unknown_method"})
        with state.lock:
            body = handler(state, args)
        if fault == "drop_after":
            return self._drop()
        if fault == "hang_after":
            self.server.stopping.wait(120)
            return self._drop()
        self._reply(200, body)


def _auth_test(state: SlackState, args: dict[str, Any]) -> dict[str, Any]:
    return {"ok": True, "url": "https://fake.slack.test/", "team": "Fake", "user": "handoff",
            "team_id": "T0001", "user_id": "UBOT", "bot_id": "B0001"}


def _lookup_by_email(state: SlackState, args: dict[str, Any]) -> dict[str, Any]:
    email = str(args.get("email") or "").lower()
    if not email:
        return {"ok": False, "error": "invalid_arguments"}
    user_id = state.users.get(email)
    if user_id is None:
        return {"ok": False, "error": "users_not_found"}
    return {"ok": True, "user": {"id": user_id, "name": email.split("@")[0], "profile": {"email": email}}}


def _open(state: SlackState, args: dict[str, Any]) -> dict[str, Any]:
    users = str(args.get("users") or "")
    if not users or users not in state.users.values():
        return {"ok": False, "error": "user_not_found"}
    return {"ok": True, "channel": {"id": "D" + users.removeprefix("U")}}


def _known_channel(state: SlackState, channel: str) -> bool:
    return channel.startswith("C") or channel.removeprefix("D") in {u.removeprefix("U") for u in state.users.values()}


def _post(state: SlackState, args: dict[str, Any]) -> dict[str, Any]:
    channel = str(args.get("channel") or "")
    text = str(args.get("text") or "")
    if not _known_channel(state, channel):
        return {"ok": False, "error": "channel_not_found"}
    if not text and not args.get("blocks"):
        return {"ok": False, "error": "no_text"}
    metadata = args.get("metadata")
    if isinstance(metadata, str):
        metadata = json.loads(metadata)
    state.ts_counter += 1
    ts = f"1700000000.{state.ts_counter:06d}"
    state.messages.append(Posted(channel=channel, ts=ts, text=text, metadata=metadata, user="UBOT"))
    return {"ok": True, "channel": channel, "ts": ts,
            "message": {"type": "message", "text": text, "ts": ts, "user": "UBOT"}}


def _history(state: SlackState, args: dict[str, Any]) -> dict[str, Any]:
    channel = str(args.get("channel") or "")
    if not _known_channel(state, channel):
        return {"ok": False, "error": "channel_not_found"}
    limit = int(args.get("limit") or 100)
    with_metadata = str(args.get("include_all_metadata") or "").lower() in ("1", "true")
    found = list(reversed(state.in_channel(channel)))[:limit]
    messages = []
    for posted in found:
        message: dict[str, Any] = {"type": "message", "text": posted.text, "ts": posted.ts, "user": posted.user}
        if with_metadata and posted.metadata:
            message["metadata"] = posted.metadata
        messages.append(message)
    return {"ok": True, "messages": messages, "has_more": len(state.in_channel(channel)) > limit}


_METHODS = {
    "auth.test": _auth_test,
    "users.lookupByEmail": _lookup_by_email,
    "conversations.open": _open,
    "chat.postMessage": _post,
    "conversations.history": _history,
}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    state: SlackState
    stopping: threading.Event

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gave up (timeout) before the answer: expected in fault tests, not an error.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)
    stopping: threading.Event


class FakeSlack:
    """A running fake: `base_url` for WebClient(base_url=...), `state` to seed users and read messages."""

    def __init__(self) -> None:
        self.state = SlackState()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.state = self.state
        self._server.stopping = threading.Event()
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/api/"

    def __enter__(self) -> FakeSlack:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.stopping.set()
        self._server.shutdown()
        self._server.server_close()
