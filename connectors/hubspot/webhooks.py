"""HubSpot webhook requests: signature v3 verification, and the events they carry.

v3 (HubSpot's "Validating requests"): base64(HMAC-SHA256(client secret, method + URI + body +
timestamp)), the URI with a fixed set of percent-escapes decoded; requests older than 5 minutes are
refused. The comparison is constant-time; a signature seen once within the window is a replay.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from connectors.base import WebhookRejected

__all__ = ["MAX_AGE", "Event", "ReplayGuard", "parse_events", "sign_v3", "verify_v3"]

MAX_AGE = timedelta(minutes=5)
MAX_BODY_BYTES = 1024 * 1024  # HubSpot sends at most 100 events a request; anything far larger is refused
# HubSpot decodes exactly these escapes in the URI before signing.
_DECODED = {"%3A": ":", "%2F": "/", "%3F": "?", "%40": "@", "%21": "!", "%24": "$", "%27": "'", "%28": "(",
            "%29": ")", "%2A": "*", "%2C": ",", "%3B": ";"}


def _canonical_uri(uri: str) -> str:
    for escaped, plain in _DECODED.items():
        uri = uri.replace(escaped, plain).replace(escaped.lower(), plain)
    return uri


def sign_v3(*, secret: str, method: str, uri: str, body: bytes, timestamp: str) -> str:
    """The X-HubSpot-Signature-v3 value HubSpot would send for this request."""
    source = method.upper().encode() + _canonical_uri(uri).encode() + body + timestamp.encode()
    return base64.b64encode(hmac.new(secret.encode(), source, hashlib.sha256).digest()).decode()


def _header(headers: Mapping[str, str], name: str) -> str | None:
    wanted = name.lower()
    for key, value in headers.items():
        if key.lower() == wanted:
            return value
    return None


class ReplayGuard:
    """Signatures accepted in the last MAX_AGE, bounded in size (oldest forgotten first)."""

    def __init__(self, *, capacity: int = 100_000) -> None:
        self.capacity = capacity
        self._seen: OrderedDict[str, datetime] = OrderedDict()
        self._lock = threading.Lock()

    def first_time(self, signature: str, *, at: datetime, now: datetime) -> bool:
        with self._lock:
            while self._seen and (next(iter(self._seen.values())) < now - MAX_AGE
                                  or len(self._seen) >= self.capacity):
                self._seen.popitem(last=False)
            if signature in self._seen:
                return False
            self._seen[signature] = at
            return True


def verify_v3(*, secret: str, method: str, uri: str, body: bytes, headers: Mapping[str, str], now: datetime,
              replays: ReplayGuard | None = None) -> str:
    """The request's signature; WebhookRejected unless it is signed with `secret`, fresh, and not seen before."""
    signature = _header(headers, "X-HubSpot-Signature-v3")
    stamp = _header(headers, "X-HubSpot-Request-Timestamp")
    if not signature or not stamp:
        raise WebhookRejected("missing X-HubSpot-Signature-v3 or X-HubSpot-Request-Timestamp")
    if not stamp.isdigit():
        raise WebhookRejected("X-HubSpot-Request-Timestamp is not a millisecond timestamp")
    if len(body) > MAX_BODY_BYTES:
        raise WebhookRejected(f"the body is larger than {MAX_BODY_BYTES} bytes")
    sent_at = datetime.fromtimestamp(int(stamp) / 1000, UTC)
    if now - sent_at > MAX_AGE:
        raise WebhookRejected("the request is older than 5 minutes")
    if sent_at - now > MAX_AGE:
        raise WebhookRejected("the request timestamp is in the future")
    expected = sign_v3(secret=secret, method=method, uri=uri, body=body, timestamp=stamp)
    if not hmac.compare_digest(expected.encode(), signature.strip().encode()):
        raise WebhookRejected("the signature does not match")
    if replays is not None and not replays.first_time(signature.strip(), at=sent_at, now=now):
        raise WebhookRejected("the request was already received (replay)")
    return signature.strip()


@dataclass(frozen=True)
class Event:
    """One webhook event (HubSpot sends a JSON array of them)."""

    object_type: str  # companies, contacts, deals, tasks
    object_id: str
    change: str  # creation, deletion, propertyChange, ...
    property_name: str | None
    property_value: str | None
    occurred_at: datetime
    event_id: str


_TYPE_IDS = {"0-1": "contacts", "0-2": "companies", "0-3": "deals", "0-27": "tasks"}
_PREFIXES = {"contact": "contacts", "company": "companies", "deal": "deals", "task": "tasks"}


def parse_events(body: bytes) -> list[Event]:
    """The events of a webhook body; a malformed body is refused with one line saying why."""
    try:
        raw = json.loads(body or b"[]")
    except (ValueError, UnicodeDecodeError) as exc:
        raise WebhookRejected(f"the body is not JSON ({type(exc).__name__})") from None
    if isinstance(raw, dict):
        raw = [raw]
    if not isinstance(raw, list):
        raise WebhookRejected("the body is not a JSON array of events")
    events: list[Event] = []
    for index, item in enumerate(raw):
        if not isinstance(item, dict):
            raise WebhookRejected(f"event {index} is not an object")
        subscription = str(item.get("subscriptionType") or "")
        prefix, _, change = subscription.partition(".")
        object_type = _PREFIXES.get(prefix) or _TYPE_IDS.get(str(item.get("objectTypeId") or ""))
        if object_type is None or not change:
            continue  # a subscription Handoff does not use
        try:
            object_id = str(int(item["objectId"]))
            occurred = datetime.fromtimestamp(int(item["occurredAt"]) / 1000, UTC)
        except (KeyError, TypeError, ValueError):
            raise WebhookRejected(f"event {index}: objectId and occurredAt must be numbers") from None
        value = item.get("propertyValue")
        events.append(Event(object_type=object_type, object_id=object_id, change=change,
                            property_name=item.get("propertyName"),
                            property_value=None if value is None else str(value), occurred_at=occurred,
                            event_id=str(item.get("eventId") or "")))
    return events


def event_properties(events: list[Event]) -> dict[tuple[str, str], dict[str, Any]]:
    """Property changes grouped per (object type, id), latest value winning."""
    grouped: dict[tuple[str, str], dict[str, Any]] = {}
    for event in sorted(events, key=lambda e: e.occurred_at):
        if event.change == "propertyChange" and event.property_name:
            grouped.setdefault((event.object_type, event.object_id), {})[event.property_name] = event.property_value
    return grouped
