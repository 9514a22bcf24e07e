"""Fixtures: a fake Salesforce org over HTTPS and the real connector (simple-salesforce) pointed at it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from connectors.base import ConnectorContext
from connectors.salesforce import SalesforceConnector
from tests.fakes.salesforce import FakeSalesforce, seed_users

CLIENT_ID = "3MVG9-handoff-test"
CLIENT_SECRET = "s3cret-client"


@pytest.fixture
def fake_sf(tmp_path: Path) -> Iterator[FakeSalesforce]:
    with FakeSalesforce(tmp_dir=tmp_path) as fake:
        yield fake


@pytest.fixture
def sf_users(fake_sf: FakeSalesforce) -> list[dict[str, Any]]:
    return seed_users(fake_sf.org)


def base_config(fake: FakeSalesforce, **overrides: Any) -> dict[str, Any]:
    """A refresh-token configuration for the fake org; fast retries so fault tests stay quick."""
    raw: dict[str, Any] = {
        "auth": "refresh_token", "login_url": fake.url, "ca_bundle": str(fake.ca_bundle),
        "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
        "refresh_token": fake.register_refresh_token(client_id=CLIENT_ID, client_secret=CLIENT_SECRET),
        "retry_wait_seconds": 0.01, "retry_max_wait_seconds": 0.05, "timeout": 10,
        "fields": {"account": {"health": "Health_Score__c", "segment": "Segment__c",
                               "renewal_date": "Renewal_Date__c"}},
        "role_map": {"Customer Success": "csm"},
    }
    raw.update(overrides)
    return raw


@pytest.fixture
def make_connector(fake_sf: FakeSalesforce) -> Iterator[Callable[..., SalesforceConnector]]:
    """Build connectors whose config went through the real schema; closed after the test."""
    made: list[SalesforceConnector] = []

    def build(*, settings: Any = None, clock: Callable[[], Any] | None = None, **overrides: Any) -> SalesforceConnector:
        config = SalesforceConnector.config_schema().load(base_config(fake_sf, **overrides))
        context = ConnectorContext(name="salesforce", settings=settings, **({"clock": clock} if clock else {}))
        connector = SalesforceConnector(config=config, context=context)
        made.append(connector)
        return connector

    yield build
    for connector in made:
        connector.close()
