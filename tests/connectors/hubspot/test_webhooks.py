"""HubSpot webhook signature v3 and event parsing (the endpoint itself is the API's)."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta

import pytest

from connectors.base import WebhookRejected
from connectors.hubspot import HubSpotConnector
from connectors.hubspot.webhooks import sign_v3
from tests.conftest import T0
from tests.connectors.hubspot.conftest import FakeTime
from tests.fakes.hubspot import FakeHubSpot

URI = "https://handoff.acme.example/webhooks/hubspot?portal=62515"
SECRET = "fake-client-secret"


def signed(body: bytes, *, at: int | None = None, secret: str = SECRET, method: str = "POST",
           uri: str = URI) -> dict[str, str]:
    stamp = str(at if at is not None else int(T0.timestamp() * 1000))
    return {"X-HubSpot-Signature-v3": sign_v3(secret=secret, method=method, uri=uri, body=body, timestamp=stamp),
            "X-HubSpot-Request-Timestamp": stamp, "Content-Type": "application/json"}


def events(*items: dict[str, object]) -> bytes:
    return json.dumps([{"eventId": 100 + n, "subscriptionId": 7, "portalId": 62515, "appId": 1,
                        "attemptNumber": 0, "changeSource": "CRM", **item} for n, item in enumerate(items)]).encode()


@pytest.fixture
def connector(make_connector: Callable[..., HubSpotConnector]) -> HubSpotConnector:
    return make_connector(client_id="fake-client-id", client_secret=SECRET, refresh_token="test-refresh",
                          access_token="test-token")


def test_a_signed_webhook_is_accepted(connector: HubSpotConnector) -> None:
    body = events({"subscriptionType": "company.deletion", "objectId": 5, "occurredAt": 1})
    connector.verify_webhook(method="POST", uri=URI, body=body, headers=signed(body), now=T0 + timedelta(seconds=3))


def test_the_same_request_twice_is_a_replay(connector: HubSpotConnector) -> None:
    body = events({"subscriptionType": "company.deletion", "objectId": 6, "occurredAt": 1})
    headers = signed(body)
    connector.verify_webhook(method="POST", uri=URI, body=body, headers=headers, now=T0)
    with pytest.raises(WebhookRejected, match="replay"):
        connector.verify_webhook(method="POST", uri=URI, body=body, headers=headers, now=T0 + timedelta(seconds=1))


@pytest.mark.parametrize("change", ["body", "uri", "method", "secret", "timestamp"])
def test_tampered_requests_are_rejected(connector: HubSpotConnector, change: str) -> None:
    body = events({"subscriptionType": "deal.propertyChange", "objectId": 9, "occurredAt": 1,
                   "propertyName": "dealstage", "propertyValue": "closedwon"})
    headers = signed(body, secret="someone-else" if change == "secret" else SECRET)
    if change == "timestamp":
        headers["X-HubSpot-Request-Timestamp"] = str(int(headers["X-HubSpot-Request-Timestamp"]) + 1)
    with pytest.raises(WebhookRejected, match="signature"):
        connector.verify_webhook(method="PUT" if change == "method" else "POST",
                                 uri=URI + "&x=1" if change == "uri" else URI,
                                 body=body.replace(b"closedwon", b"closedlost") if change == "body" else body,
                                 headers=headers, now=T0)


def test_stale_and_future_requests_are_rejected(connector: HubSpotConnector) -> None:
    body = b"[]"
    with pytest.raises(WebhookRejected, match="older than 5 minutes"):
        connector.verify_webhook(method="POST", uri=URI, body=body, headers=signed(body),
                                 now=T0 + timedelta(minutes=5, seconds=1))
    with pytest.raises(WebhookRejected, match="future"):
        connector.verify_webhook(method="POST", uri=URI, body=body, headers=signed(body),
                                 now=T0 - timedelta(minutes=6))


def test_missing_headers_and_secret(connector: HubSpotConnector,
                                    make_connector: Callable[..., HubSpotConnector]) -> None:
    with pytest.raises(WebhookRejected, match="missing"):
        connector.verify_webhook(method="POST", uri=URI, body=b"[]", headers={}, now=T0)
    with pytest.raises(WebhookRejected, match="millisecond"):
        connector.verify_webhook(method="POST", uri=URI, body=b"[]",
                                 headers={"X-HubSpot-Signature-v3": "x", "X-HubSpot-Request-Timestamp": "soon"}, now=T0)
    with pytest.raises(WebhookRejected, match="no webhook secret"):
        make_connector().verify_webhook(method="POST", uri=URI, body=b"[]", headers=signed(b"[]"), now=T0)


def test_percent_escapes_hubspot_decodes_before_signing(connector: HubSpotConnector) -> None:
    # HubSpot signs the URI with e.g. %3A decoded; a proxy that re-encodes it must still verify.
    body = b"[]"
    headers = signed(body, uri="https://handoff.acme.example/webhooks/hubspot?at=12:30")
    connector.verify_webhook(method="POST", uri="https://handoff.acme.example/webhooks/hubspot?at=12%3A30",
                             body=body, headers=headers, now=T0)


def test_malformed_bodies_get_one_line(connector: HubSpotConnector) -> None:
    with pytest.raises(WebhookRejected, match="not JSON"):
        connector.parse_webhook(body=b"{nope")
    with pytest.raises(WebhookRejected, match="objectId"):
        connector.parse_webhook(body=events({"subscriptionType": "deal.deletion", "objectId": "x", "occurredAt": 1}))


def test_events_become_the_same_records_and_signals_as_sync(
        connector: HubSpotConnector, hubspot: FakeHubSpot, fake_time: FakeTime) -> None:
    company = hubspot.add("companies", {"name": "Acme", "domain": "acme.example"}, modified=T0 - timedelta(days=3))
    deal = hubspot.add("deals", {"dealname": "Big", "dealstage": "contractsent"}, modified=T0 - timedelta(days=3))
    hubspot.associate("deals", deal, "companies", company, 5)
    task = hubspot.add("tasks", {"hs_task_subject": "Call", "handoff_key": "task:7:create"},
                       modified=T0 - timedelta(days=1))
    hubspot.associate("tasks", task, "companies", company, 192)
    changed = T0 - timedelta(minutes=10)
    hubspot.update("deals", deal, {"dealstage": "closedwon"}, modified=changed)
    hubspot.update("tasks", task, {"hs_task_status": "COMPLETED"}, modified=changed)
    stamp = int(changed.timestamp() * 1000)
    body = events(
        {"subscriptionType": "deal.propertyChange", "objectId": int(deal), "occurredAt": stamp,
         "propertyName": "dealstage", "propertyValue": "closedwon"},
        {"subscriptionType": "object.propertyChange", "objectTypeId": "0-27", "objectId": int(task),
         "occurredAt": stamp, "propertyName": "hs_task_status", "propertyValue": "COMPLETED"},
        {"subscriptionType": "company.propertyChange", "objectId": int(company), "occurredAt": stamp,
         "propertyName": "name", "propertyValue": "Acme Corp"},
        {"subscriptionType": "contact.deletion", "objectId": 31, "occurredAt": stamp},
        {"subscriptionType": "ticket.creation", "objectId": 77, "occurredAt": stamp},
    )
    page = connector.parse_webhook(body=body)
    by_type = {s["type"]: s for s in page.signals}
    assert set(by_type) == {"deal.stage_changed", "deal.closed_won", "task.completed"}
    assert by_type["deal.closed_won"]["account"] == {"source": "hubspot", "external_id": company}
    assert by_type["task.completed"]["payload"]["crm_id"] == task
    assert {(r.kind, r.external_id, r.deleted) for r in page.records} == {
        ("contact", "31", True), ("account", company, False), ("deal", deal, False)}
    assert next(r for r in page.records if r.kind == "account").fields == {"name": "Acme Corp"}
    assert next(r for r in page.records if r.kind == "deal").fields == {"stage": "closedwon"}
    # A sync over the same change yields the same dedupe keys: intake stores each fact once.
    cursor = {k: {"since": (T0 - timedelta(days=1)).isoformat()} for k in ("companies", "contacts", "deals", "tasks")}
    synced = {s["dedupe_key"] for p in connector.pull(cursor=cursor) for s in p.signals}
    assert {s["dedupe_key"] for s in page.signals} <= synced
