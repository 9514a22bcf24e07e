"""POST /webhooks/hubspot on SQLite and PostgreSQL: a signed request reaches the intake sync uses;
a replayed, tampered, stale or unsigned one is refused and stores nothing.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.engine import URL

from connectors.hubspot.webhooks import sign_v3
from orchestrator import schema
from orchestrator.api import create_app
from orchestrator.config import Settings
from orchestrator.db import unit_of_work
from orchestrator.models import Account, Deal, ExternalId, Owner, Signal, Task, WebhookReceipt
from orchestrator.runtime import Runtime, build_runtime
from orchestrator.work import sla as _sla  # noqa: F401  (installs the CRM-status pause, as the API does)
from tests.conftest import T0
from tests.connectors.hubspot.conftest import FakeTime
from tests.fakes.hubspot import FakeHubSpot

SECRET = "webhook-secret-for-tests"
URI = "http://localhost/webhooks/hubspot"


@dataclass
class Hooked:
    client: FlaskClient
    runtime: Runtime
    fake: FakeHubSpot
    time: FakeTime
    ids: dict[str, Any]

    def post(self, body: bytes, *, at: Any = None, secret: str = SECRET, headers: dict[str, str] | None = None,
             uri: str = URI) -> Any:
        stamp = str(int((at or self.time.now()).timestamp() * 1000))
        sent = {"X-HubSpot-Signature-v3": sign_v3(secret=secret, method="POST", uri=uri, body=body, timestamp=stamp),
                "X-HubSpot-Request-Timestamp": stamp, "Content-Type": "application/json"}
        sent.update(headers or {})
        return self.client.post("/webhooks/hubspot", data=body, headers=sent)

    def count(self, model: Any) -> int:
        with unit_of_work(self.runtime.sessions, read_only=True) as session:
            return int(session.scalar(select(func.count()).select_from(model)) or 0)

    def task(self) -> Task:
        with unit_of_work(self.runtime.sessions, read_only=True) as session:
            return session.get_one(Task, self.ids["task"])


@pytest.fixture
def hooked(fresh_database: URL, hubspot: FakeHubSpot, fake_time: FakeTime) -> Iterator[Hooked]:
    company = hubspot.add("companies", {"name": "Acme", "domain": "acme.example"}, modified=T0 - timedelta(days=3))
    deal = hubspot.add("deals", {"dealname": "Acme renewal", "dealstage": "contractsent"},
                       modified=T0 - timedelta(days=3))
    hubspot.associate("deals", deal, "companies", company, 5)
    remote_task = hubspot.add("tasks", {"hs_task_subject": "Call Acme", "hs_task_status": "NOT_STARTED"},
                              modified=T0 - timedelta(days=1))
    hubspot.associate("tasks", remote_task, "companies", company, 192)
    config = {"access_token": "test-token", "host": hubspot.url, "ca_bundle": hubspot.ca_path,
              "webhook_secret": SECRET}
    settings = Settings(database_url=fresh_database, exception_owner="ops-lead@example.com",
                        connectors={"hubspot": config},
                        calendars={"default": {"timezone": "America/New_York", "hours": "09:00-17:00"}})
    runtime = build_runtime(settings, fake_time)
    schema.upgrade(runtime.engine)
    with unit_of_work(runtime.sessions) as session:
        owner = Owner(email="rae@acme.example", name="Rae Rep", role="ae", working_hours={})
        session.add(owner)
        session.flush()
        account = Account(name="Acme", domain="acme.example", owner_id=owner.id, stage="adopt", stage_entered_at=T0)
        session.add(account)
        session.flush()
        row = Deal(account_id=account.id, name="Acme renewal", stage="contractsent")
        session.add(row)
        session.flush()
        task = Task(account_id=account.id, owner_id=owner.id, title="Call Acme", due_at=T0 + timedelta(days=2),
                    created_at=T0, crm_id=remote_task, crm_source="hubspot")
        session.add(task)
        session.flush()
        session.add_all([ExternalId(kind="account", local_id=account.id, source="hubspot", external_id=company),
                         ExternalId(kind="deal", local_id=row.id, source="hubspot", external_id=deal)])
        ids = {"company": company, "deal": deal, "remote_task": remote_task, "task": task.id, "account": account.id}
    app = create_app(runtime=runtime)
    app.testing = True
    try:
        yield Hooked(client=app.test_client(), runtime=runtime, fake=hubspot, time=fake_time, ids=ids)
    finally:
        runtime.close()


def events(hooked: Hooked, *items: dict[str, Any]) -> bytes:
    stamp = int((hooked.time.now() - timedelta(seconds=30)).timestamp() * 1000)
    return json.dumps([{"eventId": 500 + n, "subscriptionId": 7, "portalId": 62515, "appId": 1, "attemptNumber": 0,
                        "occurredAt": stamp, "changeSource": "CRM", **item} for n, item in enumerate(items)]).encode()


def deal_won(hooked: Hooked) -> bytes:
    return events(hooked, {"subscriptionType": "deal.propertyChange", "objectId": int(hooked.ids["deal"]),
                           "propertyName": "dealstage", "propertyValue": "closedwon"},
                  {"subscriptionType": "company.propertyChange", "objectId": int(hooked.ids["company"]),
                   "propertyName": "name", "propertyValue": "Acme Corp"})


def test_a_signed_webhook_reaches_the_intake(hooked: Hooked) -> None:
    response = hooked.post(deal_won(hooked))
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["signals_stored"] == 2
    with unit_of_work(hooked.runtime.sessions, read_only=True) as session:
        kinds = sorted(session.scalars(select(Signal.type).where(Signal.source == "hubspot")))
        assert kinds == ["deal.closed_won", "deal.stage_changed"]
        assert session.get_one(Account, hooked.ids["account"]).name == "Acme Corp"
        assert session.scalar(select(Deal.stage).where(Deal.account_id == hooked.ids["account"])) == "closedwon"
    assert hooked.count(WebhookReceipt) == 1


def test_a_waiting_task_status_pushed_by_hubspot_pauses_and_resumes_the_clock(hooked: Hooked) -> None:
    def status(value: str) -> bytes:
        return events(hooked, {"subscriptionType": "object.propertyChange", "objectTypeId": "0-27",
                               "objectId": int(hooked.ids["remote_task"]), "propertyName": "hs_task_status",
                               "propertyValue": value})

    assert hooked.post(status("WAITING")).status_code == 200
    assert hooked.task().paused_at is not None
    hooked.time.advance(3600)
    assert hooked.post(status("IN_PROGRESS")).status_code == 200
    task = hooked.task()
    assert task.paused_at is None and task.paused_seconds > 0


def test_a_replayed_webhook_is_refused_and_stores_nothing_more(hooked: Hooked) -> None:
    body = deal_won(hooked)
    stamp = hooked.time.now()
    assert hooked.post(body, at=stamp).status_code == 200
    calls = hooked.fake.count()
    signals = hooked.count(Signal)
    again = hooked.post(body, at=stamp)
    assert again.status_code == 409 and again.get_json()["type"] == "/problems/replay"
    assert hooked.count(Signal) == signals and hooked.count(WebhookReceipt) == 1
    assert hooked.fake.count() == calls  # refused before parsing asked HubSpot for the deal's company


@pytest.mark.parametrize("case", ["tampered", "wrong-secret", "stale", "unsigned", "other-uri"])
def test_a_bad_webhook_is_401_and_stores_nothing(hooked: Hooked, case: str) -> None:
    body = deal_won(hooked)
    if case == "tampered":
        stamp = str(int(hooked.time.now().timestamp() * 1000))
        signature = sign_v3(secret=SECRET, method="POST", uri=URI, body=body, timestamp=stamp)
        response = hooked.post(body.replace(b"closedwon", b"closedlost"),
                               headers={"X-HubSpot-Signature-v3": signature, "X-HubSpot-Request-Timestamp": stamp})
    elif case == "wrong-secret":
        response = hooked.post(body, secret="someone-else")
    elif case == "stale":
        response = hooked.post(body, at=hooked.time.now() - timedelta(minutes=5, seconds=1))
    elif case == "other-uri":
        response = hooked.post(body, uri="http://localhost/webhooks/elsewhere")
    else:
        response = hooked.client.post("/webhooks/hubspot", data=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 401, response.get_json()
    assert response.mimetype == "application/problem+json"
    assert hooked.count(Signal) == 0
    with unit_of_work(hooked.runtime.sessions, read_only=True) as session:
        assert session.get_one(Account, hooked.ids["account"]).name == "Acme"
    assert hooked.count(WebhookReceipt) == 0


def test_a_signed_but_malformed_body_is_400_and_leaves_no_receipt(hooked: Hooked) -> None:
    body = b'[{"subscriptionType": "deal.deletion", "objectId": "x", "occurredAt": 1}]'
    response = hooked.post(body)
    assert response.status_code == 400 and "objectId" in response.get_json()["detail"]
    assert hooked.count(WebhookReceipt) == 0


def test_without_a_hubspot_connector_the_endpoint_is_404(fresh_database: URL, fake_time: FakeTime) -> None:
    runtime = build_runtime(Settings(database_url=fresh_database, exception_owner="ops-lead@example.com"), fake_time)
    try:
        schema.upgrade(runtime.engine)
        app = create_app(runtime=runtime)
        response = app.test_client().post("/webhooks/hubspot", data=b"[]")
        assert response.status_code == 404
    finally:
        runtime.close()
