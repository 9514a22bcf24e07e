"""Signed pushes: POST /webhooks/signals/{source} (signals from a product or support system) and
POST /webhooks/hubspot (HubSpot's CRM events, signature v3), each refused when stale, forged or replayed.

The sender signs `"{timestamp}." + body` with HMAC-SHA256 and the source's shared secret
(`HANDOFF_WEBHOOK_SECRET_<SOURCE>`, e.g. HANDOFF_WEBHOOK_SECRET_PRODUCT), and sends
`X-Handoff-Timestamp: <unix seconds>` and `X-Handoff-Signature: sha256=<hex>`. A request
older (or newer) than 5 minutes, with a wrong signature, or seen before is refused, and
nothing of it is stored. No API key is needed: the signature is the credential.

HubSpot's requests are verified, parsed and applied by `connectors.inbound` (the same intake a
sync's pages take); this module only maps its refusals to answers.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from typing import Any

from flask import request
from flask_smorest import Blueprint
from marshmallow import Schema, fields
from sqlalchemy.orm import Session

from connectors.base import TransientError, WebhookRejected
from connectors.inbound import receive_webhook
from orchestrator.api.app import runtime
from orchestrator.api.problems import problem
from orchestrator.api.routes.signals import SignalBatchResult, ingest_body
from orchestrator.db import dialect_insert
from orchestrator.models import WebhookReceipt

blp = Blueprint("webhooks", __name__, url_prefix="/webhooks", description="Signed pushes from other systems.")

MAX_SKEW_SECONDS = 300
_SOURCE = re.compile(r"^[a-z][a-z0-9_-]{0,39}$")


def _secret(source: str) -> bytes | None:
    value = os.environ.get("HANDOFF_WEBHOOK_SECRET_" + re.sub(r"[^A-Z0-9]", "_", source.upper()))
    return value.encode() if value else None


def signature(*, secret: bytes, timestamp: str, body: bytes) -> str:
    """The value of X-Handoff-Signature for this body and timestamp."""
    return "sha256=" + hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


@blp.route("/signals/<string:source>", methods=["POST"])
@blp.doc(security=[], parameters=[
    {"in": "header", "name": "X-Handoff-Timestamp", "required": True, "schema": {"type": "string"}},
    {"in": "header", "name": "X-Handoff-Signature", "required": True, "schema": {"type": "string"}}],
    requestBody={"required": True, "content": {"application/json": {"schema": {"type": "object"}}}})
@blp.response(200, SignalBatchResult)
def signals_webhook(source: str) -> Any:
    """Ingest signed signals from SOURCE (one signal or a batch), exactly as POST /signals does."""
    secret = _secret(source) if _SOURCE.match(source) else None
    if secret is None:
        return problem(status=404, title="Not Found", detail=f"no webhook source {source!r} is configured")
    body = request.get_data(cache=False)
    stamp = request.headers.get("X-Handoff-Timestamp", "")
    sent = request.headers.get("X-Handoff-Signature", "")
    now = runtime().clock.now().timestamp()
    if not stamp.isdigit() or abs(now - int(stamp)) > MAX_SKEW_SECONDS:
        return problem(status=401, title="Unauthorized", detail="timestamp missing or older than 5 minutes")
    expected = signature(secret=secret, timestamp=stamp, body=body)
    if not hmac.compare_digest(expected, sent):
        return problem(status=401, title="Unauthorized", detail="signature does not match")

    def not_a_replay(session: Session) -> Any:
        fresh = session.execute(
            dialect_insert(session, WebhookReceipt)
            .values(source=source, signature=expected[7:], received_at=runtime().clock.now())
            .on_conflict_do_nothing(index_elements=["signature"]).returning(WebhookReceipt.id)).scalar()
        if fresh is None:
            return problem(status=409, title="Conflict", detail="this signed request was already received (replay)",
                           type_="/problems/replay")
        return None

    return ingest_body(body, source=f"webhook:{source}", first=not_a_replay)


class CrmWebhookResult(Schema):
    records = fields.Integer(required=True, metadata={"description": "records created, updated or deleted"})
    signals_stored = fields.Integer(required=True, metadata={"description": "new signals (duplicates are not)"})
    signals_rejected = fields.Integer(required=True)
    skipped = fields.Integer(required=True)


@blp.route("/hubspot", methods=["POST"])
@blp.doc(security=[], parameters=[
    {"in": "header", "name": "X-HubSpot-Signature-v3", "required": True, "schema": {"type": "string"}},
    {"in": "header", "name": "X-HubSpot-Request-Timestamp", "required": True, "schema": {"type": "string"}}],
    requestBody={"required": True, "content": {"application/json": {"schema": {
        "type": "array", "items": {"type": "object"}}}}})
@blp.response(200, CrmWebhookResult)
def hubspot_webhook() -> Any:
    """Apply HubSpot's CRM events (signed v3) to the accounts, deals and tasks they name, as a sync would."""
    try:
        report = receive_webhook(runtime=runtime(), name="hubspot", method=request.method, uri=request.url,
                                 body=request.get_data(cache=False), headers=dict(request.headers))
    except WebhookRejected as exc:
        return problem(status=401, title="Unauthorized", detail=exc.reason)
    except TransientError as exc:
        # HubSpot retries a request that failed: nothing was stored, so the retry is applied whole.
        return problem(status=503, title="Service Unavailable", detail=f"HubSpot did not answer: {exc}")
    return CrmWebhookResult().dump({
        "records": report.created + report.updated + report.deleted, "signals_stored": report.signals_stored,
        "signals_rejected": report.signals_rejected, "skipped": report.skipped})
