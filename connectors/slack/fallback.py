"""The incoming-webhook fallback: one POST in the shape Slack, Teams or a plain JSON hook expects.

Incoming webhooks take no idempotency key and have no history to read: a lost answer
after the hook accepted means one duplicate message (at least once, not exactly once).
The plain style sends `Idempotency-Key` so a receiver of ours can deduplicate.
"""

from __future__ import annotations

import json
from collections.abc import Collection

from connectors.base import PermanentError, TransientError
from connectors.webhook import http
from connectors.webhook.ssrf import Refused, Unresolved, check_url, parse_allow_list

__all__ = ["fallback_document", "post_fallback"]


def fallback_document(*, style: str, email: str, text: str, idempotency_key: str) -> dict[str, object]:
    """The JSON body for the hook: Slack `{"text"}`, a Teams MessageCard, or plain fields."""
    if style == "teams":
        return {"@type": "MessageCard", "@context": "http://schema.org/extensions",
                "summary": "Handoff", "text": f"For {email}: {text}"}
    if style == "plain":
        return {"kind": "notify.chat", "to": email, "text": text, "idempotency_key": idempotency_key}
    return {"text": f"For {email}: {text}"}


def post_fallback(*, url: str, style: str, email: str, text: str, idempotency_key: str,
                  allow_hosts: Collection[str], timeout: float) -> None:
    """POST the message; TransientError to retry, PermanentError when it can never go there."""
    try:
        target = check_url(url, allow=parse_allow_list(allow_hosts))
    except Unresolved as exc:
        raise TransientError(f"chat fallback: {exc}") from None
    except Refused as exc:
        raise PermanentError(f"chat fallback: {exc}") from None
    body = json.dumps(fallback_document(style=style, email=email, text=text, idempotency_key=idempotency_key),
                      sort_keys=True).encode()
    headers = {"Content-Type": "application/json", "User-Agent": "Handoff-Chat/1",
               "Idempotency-Key": idempotency_key}
    try:
        response = http.post(target, body=body, headers=headers, connect_timeout=min(timeout, 10.0),
                             read_timeout=timeout)
    except http.HttpFailure as exc:
        raise TransientError(f"chat fallback: no answer ({exc})") from None
    result = http.outcome_for(0, response)
    if result.outcome == "retry":
        raise TransientError(f"chat fallback: {result.error}", retry_after=result.retry_after)
    if result.outcome == "dead":
        raise PermanentError(f"chat fallback: {result.error}")
