"""The email a message becomes: the same bytes-level identity on every attempt.

`Message-ID` and `Date` are derived from the outbox row (idempotency key, creation time),
so a retry after a dropped connection is the same message, and the receiving mail store
can recognise the second copy.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime

__all__ = ["build_email", "message_id"]


def message_id(*, idempotency_key: str, domain: str) -> str:
    """`<hash-of-key.handoff@domain>`: stable per outbox message, opaque (the key is not readable)."""
    digest = hashlib.sha256(idempotency_key.encode()).hexdigest()[:32]
    return f"<{digest}.handoff@{domain}>"


def build_email(*, sender: str, sender_name: str | None, to: str, subject: str, body: str,
                idempotency_key: str, domain: str, created_at: datetime, kind: str,
                reply_to: str | None = None, html: str | None = None) -> EmailMessage:
    """A plain-text email (with an HTML alternative if given) whose headers say it is automated (RFC 3834)."""
    email = EmailMessage()
    email["From"] = Address(display_name=sender_name or "", addr_spec=sender) if sender_name else sender
    email["To"] = to
    if reply_to:
        email["Reply-To"] = reply_to
    # Header injection: the email library refuses CR/LF in header values itself.
    email["Subject"] = subject
    email["Date"] = format_datetime(created_at)
    email["Message-ID"] = message_id(idempotency_key=idempotency_key, domain=domain)
    email["Auto-Submitted"] = "auto-generated"
    email["X-Handoff-Kind"] = kind
    email.set_content(body)
    if html:
        email.add_alternative(html, subtype="html")
    return email
