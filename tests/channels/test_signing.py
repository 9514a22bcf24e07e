"""Webhook signatures: HMAC-SHA256 over timestamp and body, checked in constant time with a freshness window."""

from __future__ import annotations

import hashlib
import hmac

from connectors.webhook.signing import sign, signed_headers, verify

SECRET = "whsec-0123456789abcdef"


def test_the_signature_is_hmac_sha256_of_timestamp_dot_body():
    expected = hmac.new(SECRET.encode(), b"1700000000.{\"a\":1}", hashlib.sha256).hexdigest()
    assert sign(secret=SECRET, timestamp=1700000000, body=b'{"a":1}') == f"v1={expected}"


def test_a_receiver_accepts_a_fresh_signed_body_and_refuses_tampering_staleness_and_other_secrets():
    body = b'{"kind":"notify.webhook"}'
    headers = signed_headers(secret=SECRET, timestamp=1700000000, body=body, idempotency_key="k-1")
    assert headers["Idempotency-Key"] == "k-1"
    assert verify(secret=SECRET, headers=headers, body=body, now=1700000100)
    assert not verify(secret=SECRET, headers=headers, body=body + b" ", now=1700000100)
    assert not verify(secret=SECRET, headers=headers, body=body, now=1700000000 + 301)
    assert not verify(secret="another-secret-value", headers=headers, body=body, now=1700000100)
    assert not verify(secret=SECRET, headers={**headers, "X-Handoff-Timestamp": "soon"}, body=body, now=1700000100)
