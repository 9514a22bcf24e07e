"""Webhook signatures: HMAC-SHA256 over "<timestamp>.<body>", sent with the timestamp.

A receiver recomputes the HMAC with the shared secret, compares in constant time and
refuses a timestamp older than a few minutes (replay); the `Idempotency-Key` header
lets it drop a second copy of a delivery it already processed.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

__all__ = ["IDEMPOTENCY_HEADER", "SIGNATURE_HEADER", "TIMESTAMP_HEADER", "sign", "signed_headers", "verify"]

SIGNATURE_HEADER = "X-Handoff-Signature"
TIMESTAMP_HEADER = "X-Handoff-Timestamp"
IDEMPOTENCY_HEADER = "Idempotency-Key"


def sign(*, secret: str, timestamp: int, body: bytes) -> str:
    """The signature header value: `v1=<hex HMAC-SHA256 of "timestamp.body">`."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"v1={digest}"


def signed_headers(*, secret: str, timestamp: int, body: bytes, idempotency_key: str) -> dict[str, str]:
    """Every header a delivery carries besides Host and Content-Length."""
    return {
        "Content-Type": "application/json",
        "User-Agent": "Handoff-Webhook/1",
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: sign(secret=secret, timestamp=timestamp, body=body),
        IDEMPOTENCY_HEADER: idempotency_key,
    }


def verify(*, secret: str, headers: Mapping[str, str], body: bytes, now: int, tolerance: int = 300) -> bool:
    """True when the signature matches and the timestamp is within `tolerance` seconds (for receivers)."""
    lowered = {key.lower(): value for key, value in headers.items()}
    try:
        timestamp = int(lowered.get(TIMESTAMP_HEADER.lower(), ""))
    except ValueError:
        return False
    if abs(now - timestamp) > tolerance:
        return False
    expected = sign(secret=secret, timestamp=timestamp, body=body)
    return hmac.compare_digest(expected, lowered.get(SIGNATURE_HEADER.lower(), ""))
