"""Webhooks a source pushes (HubSpot): verified, parsed, refused when replayed, applied as a sync page.

The order matters. The connector verifies the signature and age first (nothing is read or
written for a forged or stale request); it parses the events next, which may call the source
(a deal's company), outside any transaction; then one transaction records the signature in
`webhook_receipts` and applies the page through `sync.apply_page`, the intake every pulled page
takes, so a webhook and a sync that see the same change store one signal. A signature already in
`webhook_receipts` is a replay: refused, nothing stored. The receipts table, not process memory,
is the guard, so every API worker refuses a replay another one accepted.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.orm import Session

from connectors.base import WebhookConnector, WebhookRejected
from connectors.registry import build_connector, enabled_names, load_registry
from connectors.sync import SyncReport, apply_page
from orchestrator.db import dialect_insert, unit_of_work
from orchestrator.errors import HandoffError
from orchestrator.models import WebhookReceipt

if TYPE_CHECKING:
    from orchestrator.runtime import Runtime

__all__ = ["NoWebhookSource", "WebhookMalformed", "WebhookReplay", "receive_webhook"]

class NoWebhookSource(HandoffError):
    """No enabled connector of that name takes webhooks."""

    status = 404
    problem = "/problems/not-found"


class WebhookMalformed(HandoffError):
    """Signed, but the body is not the events it should be."""

    status = 400
    problem = "/problems/invalid"


class WebhookReplay(HandoffError):
    """This signed request was accepted before."""

    status = 409
    problem = "/problems/replay"


def _seen(session: Session, signature: str) -> bool:
    return session.scalar(select(WebhookReceipt.id).where(WebhookReceipt.signature == signature)) is not None


def _connector(runtime: Runtime, name: str) -> WebhookConnector:
    registry = load_registry()
    if name not in enabled_names(settings=runtime.settings, registry=registry):
        raise NoWebhookSource(f"no webhook source {name!r} is enabled")
    built = build_connector(name=name, settings=runtime.settings, registry=registry, clock=runtime.clock.now,
                            sessions=runtime.sessions)
    if not isinstance(built, WebhookConnector):
        built.close()
        raise NoWebhookSource(f"connector {name} does not take webhooks")
    return built


def receive_webhook(*, runtime: Runtime, name: str, method: str, uri: str, body: bytes,
                    headers: Mapping[str, str]) -> SyncReport:
    """Verify, parse and apply one webhook request to connector `name`; what it stored.

    Raises WebhookRejected (bad signature, too old), WebhookMalformed (signed, but not events),
    WebhookReplay (seen before) or NoWebhookSource; in each case nothing is stored. A TransientError while parsing
    (the source did not answer) stores nothing either, so the sender's retry is applied.
    """
    connector = _connector(runtime, name)
    try:
        signature = connector.verify_webhook(method=method, uri=uri, body=body, headers=headers,
                                             now=runtime.clock.now(), remember=False)
        with unit_of_work(runtime.sessions, read_only=True) as session:
            if _seen(session, signature):  # spare the source the calls a replay's parsing would make
                raise WebhookReplay("this signed request was already received (replay)")
        try:
            page = connector.parse_webhook(body=body)
        except WebhookRejected as exc:
            raise WebhookMalformed(exc.reason) from None
    finally:
        connector.close()
    report = SyncReport(name=name)
    now = runtime.clock.now()
    with unit_of_work(runtime.sessions) as session:
        fresh = session.execute(
            dialect_insert(session, WebhookReceipt).values(source=name[:40], signature=signature, received_at=now)
            .on_conflict_do_nothing(index_elements=["signature"]).returning(WebhookReceipt.id)).scalar()
        if fresh is None:  # another worker took the same request meanwhile
            raise WebhookReplay("this signed request was already received (replay)")
        apply_page(session, settings=runtime.settings, name=name, page=page, now=now, report=report)
    return report
