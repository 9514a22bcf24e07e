"""HubSpot's DAILY 429: the connector stops until the reset and opens one exception item (both databases)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from sqlalchemy import select
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session, sessionmaker

from connectors.base import ConnectorContext
from connectors.hubspot import HubSpotConnector
from orchestrator import schema
from orchestrator.db import make_engine, make_session_factory
from orchestrator.models import ExceptionItem
from tests.connectors.hubspot.conftest import FakeTime, create_message, plain_settings
from tests.fakes.hubspot import FakeHubSpot


@pytest.fixture
def sessions(fresh_database: URL) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(fresh_database)
    schema.upgrade(engine)
    yield make_session_factory(engine)
    engine.dispose()


def test_daily_limit_opens_one_exception_item_and_waits(
        sessions: sessionmaker[Session], fresh_database: URL, hubspot: FakeHubSpot, fake_time: FakeTime,
        make_connector: Callable[..., HubSpotConnector]) -> None:
    company = hubspot.add("companies", {"name": "Acme"})
    owner = hubspot.add_owner(email="rep@acme.example")
    hubspot.exhaust_daily()
    settings = plain_settings(fresh_database)
    template = make_connector(settings)

    def connector() -> HubSpotConnector:
        context = ConnectorContext(name="hubspot", settings=settings, clock=fake_time.now, sessions=sessions)
        return HubSpotConnector(config=template.config, context=context, monotonic=fake_time.monotonic,
                                sleep=fake_time.sleep)

    batch = [create_message(message_id=n, task_id=n, company=company, owner_hubspot_id=owner) for n in (1, 2)]
    for _ in range(3):  # three delivery runs during the day: one item, not three
        results = connector().push(batch)
        assert [r.outcome for r in results] == ["retry", "retry"]
        assert all((r.retry_after or 0) > 3600 for r in results)
    with sessions() as session:
        items = session.scalars(select(ExceptionItem)).all()
        assert len(items) == 1
        assert items[0].category == "configuration" and items[0].detail["reason"] == "hubspot_daily_limit"
        assert items[0].owner == "ops-lead@example.com"
    assert hubspot.count(status=429) == 1  # after the first answer the connector stopped calling
    assert hubspot.live("tasks") == []
