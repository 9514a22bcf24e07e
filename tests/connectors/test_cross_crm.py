"""Identity across CRMs, end to end through `handoff sync` on both fake servers (SQLite and PostgreSQL).

Salesforce and HubSpot both claim one company but disagree about which Handoff account it is (the
HubSpot company carries one account's Salesforce id and the other account's domain): nothing is
merged or relinked, and an `identity_conflict` exception item with an owner holds both sides.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import URL

from connectors.sync import sync
from orchestrator import schema
from orchestrator.clock import FrozenClock
from orchestrator.config import ExceptionCategory, Settings
from orchestrator.models import Account, ExceptionItem, ExternalId
from orchestrator.runtime import Runtime, build_runtime
from tests.connectors.salesforce.conftest import base_config
from tests.fakes.hubspot import FakeHubSpot
from tests.fakes.salesforce import FakeSalesforce, seed_users


@pytest.fixture
def both(fresh_database: URL, tmp_path: Path) -> Iterator[tuple[Runtime, FakeSalesforce, FakeHubSpot]]:
    hubspot = FakeHubSpot()
    (tmp_path / "sf").mkdir()
    hubspot.start(ca_dir=tmp_path)
    hubspot.add_property("tasks", "handoff_key", unique=True)
    hubspot.add_property("companies", "salesforce_account_id")
    with FakeSalesforce(tmp_dir=tmp_path / "sf") as salesforce:
        settings = Settings(
            database_url=fresh_database, exception_owner="ops-lead@example.com",
            calendars={"default": {"timezone": "America/New_York", "hours": "09:00-17:00"}},
            exception_categories={"identity_conflict": ExceptionCategory(owner="data-steward@example.com")},
            connectors={"salesforce": base_config(salesforce),
                        "hubspot": {"access_token": "test-token", "host": hubspot.url, "ca_bundle": hubspot.ca_path,
                                    "match": "external_id", "match_property": "salesforce_account_id"}})
        runtime = build_runtime(settings, FrozenClock(datetime.now(UTC).replace(microsecond=0)))
        schema.upgrade(runtime.engine)
        try:
            yield runtime, salesforce, hubspot
        finally:
            runtime.close()
            hubspot.stop()


def test_two_crms_claiming_one_company_for_different_accounts_is_an_exception_item_with_both_sides(
        both: tuple[Runtime, FakeSalesforce, FakeHubSpot]) -> None:
    runtime, salesforce, hubspot = both
    users = seed_users(salesforce.org)
    hooli = salesforce.org.insert("Account", {"Name": "Hooli", "Website": "hooli.example", "OwnerId": users[1]["Id"]})
    salesforce.org.insert("Account", {"Name": "Hooli XYZ", "Website": "hooli-xyz.example", "OwnerId": users[2]["Id"]})
    sync(runtime=runtime, name="salesforce")
    hubspot_owner = hubspot.add_owner(email="other@acme.example", first="Otto", last="Other")
    company = hubspot.add("companies", {"name": "Hooli", "domain": "hooli-xyz.example",
                                        "salesforce_account_id": hooli["Id"], "hubspot_owner_id": hubspot_owner})
    report = sync(runtime=runtime, name="hubspot")
    assert any("belong to different accounts" in problem for problem in report.problems)

    with runtime.sessions() as session:
        accounts = {a.domain: a for a in session.scalars(select(Account))}
        assert set(accounts) == {"hooli.example", "hooli-xyz.example"}  # nothing merged, nothing new
        assert session.scalar(select(func.count()).select_from(ExternalId).where(
            ExternalId.source == "hubspot", ExternalId.kind == "account")) == 0  # linked to neither
        (item,) = session.scalars(select(ExceptionItem).where(ExceptionItem.category == "identity_conflict"))
        assert item.owner == "data-steward@example.com" and item.status == "open"
        assert f"hubspot:{company}" in item.message
        sides = {side["account_id"]: side for side in item.detail["accounts"]}
        assert set(sides) == {accounts["hooli.example"].id, accounts["hooli-xyz.example"].id}
        assert sides[accounts["hooli.example"].id]["external_ids"] == {"salesforce": hooli["Id"]}
        assert {side["owner_id"] for side in sides.values()} == \
            {accounts["hooli.example"].owner_id, accounts["hooli-xyz.example"].owner_id}
        assert item.detail["record"]["external_id"] == company

    # The next sync meets the same conflict: counted on the one open item, not queued again.
    sync(runtime=runtime, name="hubspot", full=True)
    with runtime.sessions() as session:
        (item,) = session.scalars(select(ExceptionItem).where(ExceptionItem.category == "identity_conflict"))
        assert item.occurrences == 2 and item.group_key and "identity_conflict" in item.group_key
