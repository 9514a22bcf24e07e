"""HubSpot connector fixtures: the fake server, a shared fake time, and connectors driving the real client.

The fake server and the connector's token bucket read the same `FakeTime`: when the bucket waits, it
advances that time instead of sleeping, so rate-limit tests run in milliseconds and still show what a
real run would do against HubSpot's rolling windows.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from connectors.base import AccountRef, ConnectorContext, Outbound, TaskRef
from connectors.hubspot import HubSpotConnector
from orchestrator.config import Settings
from tests.conftest import T0
from tests.fakes.hubspot import FakeHubSpot


class FakeTime:
    """Monotonic seconds and a wall clock that move together, only when someone sleeps or advances."""

    def __init__(self, start: datetime = T0) -> None:
        self._start = start
        self._offset = 0.0
        self._lock = threading.Lock()
        self.slept = 0.0

    def monotonic(self) -> float:
        with self._lock:
            return 1_000.0 + self._offset

    def now(self) -> datetime:
        with self._lock:
            return self._start + timedelta(seconds=self._offset)

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self._offset += max(0.0, seconds)
            self.slept += max(0.0, seconds)

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._offset += seconds


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


@pytest.fixture(autouse=True)
def _fresh_process_state() -> Iterator[None]:
    """Each test starts without the connector's process-wide state: DAILY pauses, replay guards, tokens.

    A DAILY pause is keyed by connector name and host, and a fake server's host is a port the
    system may hand out again: a pause left by an earlier test (on its own clock, fake or real)
    would otherwise hold an unrelated later test's connector, now and then.
    """
    from connectors.hubspot import connector, transport

    def clear() -> None:
        with connector._STATE_LOCK:
            connector._PAUSED.clear()
            connector._REPLAYS.clear()
        with transport._TOKENS_LOCK:
            transport._TOKENS.clear()

    clear()
    yield
    clear()


@pytest.fixture
def hubspot(fake_time: FakeTime, tmp_path: Any) -> Iterator[FakeHubSpot]:
    fake = FakeHubSpot(clock=fake_time.monotonic, wall=fake_time.now)
    fake.start(ca_dir=tmp_path)
    fake.add_property("tasks", "handoff_key", unique=True)
    try:
        yield fake
    finally:
        fake.stop()


def plain_settings(database_url: Any = None) -> Settings:
    return Settings(database_url=database_url or make_url("sqlite://"), exception_owner="ops-lead@example.com",
                    calendars={"default": {"timezone": "America/New_York", "hours": "09:00-17:00"}})


@pytest.fixture
def make_connector(hubspot: FakeHubSpot, fake_time: FakeTime) -> Callable[..., HubSpotConnector]:
    built: list[HubSpotConnector] = []

    def make(settings: Settings | None = None, **config: Any) -> HubSpotConnector:
        base = {"access_token": "test-token", "host": hubspot.url, "ca_bundle": hubspot.ca_path}
        context = ConnectorContext(name="hubspot", settings=settings or plain_settings(), clock=fake_time.now,
                                   timeout=5.0)
        connector = HubSpotConnector(config={**base, **config}, context=context, monotonic=fake_time.monotonic,
                                     sleep=fake_time.sleep)
        built.append(connector)
        return connector

    yield make
    for connector in built:
        connector.close()


def create_message(*, message_id: int, task_id: int, company: str, owner: str = "rep@acme.example",
                   owner_hubspot_id: str | None = None, attempts: int = 0, **payload: Any) -> Outbound:
    """A crm.create_task message shaped as the outbox builds it."""
    body = {"task_id": task_id, "subject": f"Call about renewal {task_id}", "description": "brief text",
            "owner_email": owner, "due_at": (T0 + timedelta(days=2)).isoformat(), "priority": "high",
            "status": "open", **payload}
    return Outbound(id=message_id, kind="crm.create_task", idempotency_key=f"task:{task_id}:create", payload=body,
                    attempts=attempts,
                    account=AccountRef(id=task_id, name="Acme", domain="acme.example",
                                       external_ids={"hubspot": company}),
                    task=TaskRef(id=task_id, title=body["subject"], crm_id=None, crm_source=None, owner_email=owner,
                                 owner_external_ids={"hubspot": owner_hubspot_id} if owner_hubspot_id else {}),
                    target="crm", connector="hubspot", created_at=T0)
