"""The webhook connector: `notify.webhook` and `customer.in_app_message` as signed JSON POSTs.

Every delivery carries `Idempotency-Key` (the outbox key), `X-Handoff-Timestamp` and
`X-Handoff-Signature` (HMAC-SHA256 of "timestamp.body"). The body is the same bytes on
every attempt; only the timestamp and signature change. A receiver that drops a second
request with a key it already processed sees each message exactly once, even when a
response was lost and Handoff sent again.

Every URL passes the SSRF guard first: loopback, link-local (cloud metadata), private
and reserved addresses are refused, as a dead message with the reason, unless the host
is in `allow_hosts`. Redirects are never followed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from marshmallow import Schema, fields, validate

from connectors.base import ConnectorContext, DeliveryConnector, Outbound, PushResult
from connectors.recipients import action_args
from connectors.webhook import http
from connectors.webhook.signing import signed_headers
from connectors.webhook.ssrf import Refused, Unresolved, check_url, parse_allow_list

__all__ = ["WebhookConfig", "WebhookConnector", "document_for"]


class WebhookConfig(Schema):
    signing_secret = fields.String(required=True, validate=validate.Length(min=16),
                                   metadata={"secret": True})
    # Host names (or IPs / CIDR ranges) that may be internal: refused otherwise.
    allow_hosts = fields.List(fields.String(), load_default=list)
    # Where customer.in_app_message goes (the product's in-app messaging endpoint).
    in_app_url = fields.String(load_default=None)
    connect_timeout = fields.Float(load_default=5.0, validate=validate.Range(min=0.1, max=60))
    read_timeout = fields.Float(load_default=10.0, validate=validate.Range(min=0.1, max=120))
    ca_file = fields.String(load_default=None)


def _account(message: Outbound) -> dict[str, Any] | None:
    account = message.account
    if account is None:
        return None
    return {"id": account.id, "name": account.name, "domain": account.domain,
            "external_ids": dict(account.external_ids)}


def document_for(message: Outbound) -> tuple[str | None, Any]:
    """(url from the message or None, the JSON document to send) for one outbox message."""
    args = action_args(message.payload)
    envelope = {"kind": message.kind, "idempotency_key": message.idempotency_key,
                "created_at": message.created_at.isoformat(), "account": _account(message),
                "step_id": message.payload.get("step_id")}
    if message.kind == "customer.in_app_message":
        return None, {**envelope, "body": args.get("body"), "audience": args.get("audience")}
    url = args.get("url")
    payload = args.get("payload")
    # A given payload is the body itself (the shape a Slack or Teams hook wants).
    return (str(url) if url is not None else None), (payload if payload is not None else envelope)


class WebhookConnector(DeliveryConnector):
    """Signed JSON POSTs to internal endpoints and the product's in-app messaging."""

    slug: ClassVar[str] = "webhook"
    title: ClassVar[str] = "Webhooks (signed JSON POST)"
    config_schema: ClassVar[type[Schema]] = WebhookConfig
    handles: ClassVar[frozenset[str]] = frozenset({"notify.webhook", "customer.in_app_message"})
    max_batch: ClassVar[int] = 20

    def __init__(self, *, config: Mapping[str, Any], context: ConnectorContext) -> None:
        super().__init__(config=config, context=context)
        self._allow = parse_allow_list(config.get("allow_hosts") or [])

    def check(self) -> list[str]:
        """The in-app URL passes the SSRF guard (when configured)."""
        url = self.config.get("in_app_url")
        if not url:
            return []
        try:
            check_url(str(url), allow=self._allow)
        except Refused as exc:
            return [f"in_app_url: {exc}"]
        return []

    def push(self, messages: Sequence[Outbound]) -> list[PushResult]:
        """One POST per message, each judged on its own."""
        return [self._deliver(message) for message in messages]

    def _deliver(self, message: Outbound) -> PushResult:
        url, document = document_for(message)
        if message.kind == "customer.in_app_message":
            url = self.config.get("in_app_url")
            if not url:
                return PushResult(message_id=message.id, outcome="dead",
                                  error="no in_app_url in [connectors.webhook]; in-app messages have nowhere to go")
        if not url:
            return PushResult(message_id=message.id, outcome="dead", error="the webhook has no url")
        try:
            target = check_url(str(url), allow=self._allow)
        except Unresolved as exc:
            return PushResult(message_id=message.id, outcome="retry", error=str(exc))
        except Refused as exc:
            return PushResult(message_id=message.id, outcome="dead", error=str(exc))
        try:
            body = json.dumps(document, sort_keys=True, separators=(",", ":"), default=str).encode()
        except (TypeError, ValueError):
            return PushResult(message_id=message.id, outcome="dead", error="the payload is not JSON")
        timestamp = int(self.context.clock().timestamp())
        headers = signed_headers(secret=str(self.config["signing_secret"]), timestamp=timestamp, body=body,
                                 idempotency_key=message.idempotency_key)
        try:
            response = http.post(target, body=body, headers=headers,
                                 connect_timeout=float(self.config.get("connect_timeout", 5.0)),
                                 read_timeout=float(self.config.get("read_timeout", 10.0)),
                                 ca_file=self.config.get("ca_file"))
        except http.HttpFailure as exc:
            # Perhaps after the receiver read it: the retry carries the same Idempotency-Key.
            return PushResult(message_id=message.id, outcome="retry", error=f"no answer from the endpoint ({exc})")
        return http.outcome_for(message.id, response, remote_id=f"{target.host}:{response.status}")
