"""A real SMTP server (aiosmtpd) on 127.0.0.1 in the test process, with faults on demand.

Faults are queued and consumed one per transaction: `rcpt:4xx` refuses the recipient
with 450 (`rcpt:5xx`: 550, no such user), `data:4xx` answers the message with 451 (nothing stored), `data:5xx` with 554,
and `drop_after` stores the message and closes the connection before answering 250 (the
sender cannot know it was accepted). `received` is every message the server accepted;
`mailbox()` is what a mail store shows a reader: one copy per (recipient, Message-ID), as
mail systems collapse duplicates by Message-ID.
"""

from __future__ import annotations

import socket
import ssl
import threading
from collections import deque
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

USER, PASSWORD = "handoff", "s3cret-smtp"


@dataclass
class Received:
    sender: str
    recipients: list[str]
    message: EmailMessage
    authenticated: bool
    tls: bool


@dataclass
class MailHandler:
    received: list[Received] = field(default_factory=list)
    faults: deque[str] = field(default_factory=deque)
    transactions: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def _next_fault(self, *kinds: str) -> str | None:
        with self.lock:
            if self.faults and self.faults[0] in kinds:
                return self.faults.popleft()
        return None

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          rcpt_options: list[str]) -> str:
        fault = self._next_fault("rcpt:4xx", "rcpt:5xx")
        if fault == "rcpt:4xx":
            return "450 4.2.1 Mailbox temporarily unavailable"
        if fault == "rcpt:5xx":
            return "550 5.1.1 No such user here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            self.transactions += 1
        fault = self._next_fault("data:4xx", "data:5xx", "drop_after")
        if fault == "data:4xx":
            return "451 4.3.0 Temporary local problem, try again"
        if fault == "data:5xx":
            return "554 5.6.0 Message rejected"
        message = message_from_bytes(envelope.content, policy=policy.SMTP)
        assert isinstance(message, EmailMessage)
        with self.lock:
            self.received.append(Received(sender=envelope.mail_from, recipients=list(envelope.rcpt_tos),
                                          message=message, authenticated=bool(session.authenticated),
                                          tls=session.ssl is not None))
        if fault == "drop_after":
            # Accepted and stored, but the 250 never reaches the sender.
            server.transport.abort()
        return "250 Message accepted for delivery"

    def mailbox(self, recipient: str) -> list[EmailMessage]:
        """What the recipient's mail store shows: duplicates by Message-ID collapsed."""
        seen: dict[str, EmailMessage] = {}
        for item in self.received:
            if recipient in item.recipients:
                seen.setdefault(str(item.message["Message-ID"]), item.message)
        return list(seen.values())


def _authenticator(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and auth_data.login == USER.encode() \
        and auth_data.password == PASSWORD.encode()
    return AuthResult(success=ok, handled=False)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class SmtpServer:
    """Start with `with SmtpServer(...) as smtp:`; `smtp.port`, `smtp.handler` for faults and mail."""

    def __init__(self, *, tls_context: ssl.SSLContext | None = None, require_auth: bool = False) -> None:
        self.handler = MailHandler()
        self.port = free_port()
        kwargs: dict[str, Any] = {}
        if tls_context is not None:
            kwargs.update(tls_context=tls_context, require_starttls=True)
        if require_auth:
            kwargs.update(authenticator=_authenticator, auth_required=True,
                          auth_require_tls=tls_context is not None)
        self._controller = Controller(self.handler, hostname="127.0.0.1", port=self.port,
                                      server_hostname="mail.test", **kwargs)

    def __enter__(self) -> SmtpServer:
        self._controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._controller.stop()
