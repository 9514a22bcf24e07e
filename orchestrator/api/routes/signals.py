"""POST /signals: one signal or a batch of up to 1,000, idempotent by dedupe key, a result per item."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import request
from flask_smorest import Blueprint
from marshmallow import Schema, fields
from sqlalchemy.orm import Session

from orchestrator.api.access import roles
from orchestrator.api.app import runtime
from orchestrator.api.problems import problem
from orchestrator.apikeys import Role
from orchestrator.db import unit_of_work
from orchestrator.intake.signals import IntakeResult, IntakeStatus, ingest_many
from orchestrator.intake.values import JSONError, parse_json

blp = Blueprint("signals", __name__, url_prefix="/signals", description="Facts about accounts that drive journeys.")

MAX_BATCH = 1000


class SignalResult(Schema):
    index = fields.Integer(required=True)
    status = fields.String(required=True, metadata={"enum": [s.value for s in IntakeStatus]})
    signal_id = fields.Integer(allow_none=True)
    field = fields.String(allow_none=True)
    reason = fields.String()


class SignalBatchResult(Schema):
    accepted = fields.Integer(required=True)
    duplicates = fields.Integer(required=True)
    rejected = fields.Integer(required=True)
    results = fields.List(fields.Nested(SignalResult), required=True)


_BODY = {"required": True, "content": {"application/json": {"schema": {
    "oneOf": [{"type": "object"}, {"type": "array", "items": {"type": "object"}, "maxItems": MAX_BATCH}]}}},
    "description": "A signal as `handoff signals ingest` reads it, or a JSON array of up to 1,000."}


@blp.route("", methods=["POST"])
@blp.doc(requestBody=_BODY, responses={"422": {"description": "the signal is malformed"}})
@blp.response(200, SignalBatchResult)
@roles(Role.ADMIN, Role.INGEST)
def post_signals() -> Any:
    """Store signals (the engine evaluates them on its next pass); malformed ones are refused, naming the field."""
    return ingest_body(request.get_data(cache=False), source="api")


def ingest_body(raw: bytes, *, source: str, first: Callable[[Session], Any] | None = None) -> Any:
    """Parse one signal or a batch and store each; the answer for a single or a batch request.

    `first` runs in the same transaction before any signal is stored (a webhook's replay
    check); what it returns, if anything, is the answer instead, and nothing is kept.
    """
    try:
        # The intake's own parser: bounded nesting, and NaN or 1e400 kept as placeholders so the
        # rejection names the field they sit in, exactly as `handoff signals ingest` does.
        body = parse_json(raw.decode("utf-8") or "null")
    except UnicodeDecodeError:
        return problem(status=400, title="Bad Request", detail="the body is not UTF-8 text")
    except JSONError as exc:
        return problem(status=400, title="Bad Request", detail=f"the body is not valid JSON: {exc}")
    items = body if isinstance(body, list) else [body]
    if len(items) > MAX_BATCH:
        return problem(status=413, title="Payload Too Large", detail=f"at most {MAX_BATCH} signals per request")
    rt = runtime()
    results: list[IntakeResult]
    with unit_of_work(rt.sessions) as session:
        refusal = first(session) if first is not None else None
        if refusal is not None:
            session.rollback()
            return refusal
        results = ingest_many(session=session, raws=items, source=source, now=rt.clock.now(),
                              settings=rt.settings)
        single_rejected = not isinstance(body, list) and results[0].status == IntakeStatus.REJECTED
        if single_rejected:
            session.rollback()  # nothing of a refused request is kept (a webhook's receipt included)
    if single_rejected:
        return problem(status=422, title="Unprocessable Entity", detail=results[0].reason, field=results[0].field,
                       type_="/problems/invalid")
    return SignalBatchResult().dump({
        "accepted": sum(r.status == IntakeStatus.ACCEPTED for r in results),
        "duplicates": sum(r.status == IntakeStatus.DUPLICATE for r in results),
        "rejected": sum(r.status == IntakeStatus.REJECTED for r in results),
        "results": [{"index": n, "status": r.status.value, "signal_id": r.signal_id, "field": r.field,
                     "reason": r.reason} for n, r in enumerate(results)],
    })
