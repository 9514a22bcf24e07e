"""Pulling from the fake org through simple-salesforce: paging, cursors with overlap, deletions, signals."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from connectors.base import Page
from orchestrator.playbook.catalog import shipped_catalog
from tests.fakes.salesforce import FakeSalesforce, iter_accounts


def _pull(connector: Any, cursors: dict[str, Any] | None = None, *, full: bool = False) -> tuple[list[Page], dict]:
    pages = list(connector.pull(cursor=cursors, full=full))
    stored = dict(cursors or {})
    for page in pages:
        if page.cursor is not None:
            stored[page.object_type] = dict(page.cursor)
    return pages, stored


def _records(pages: list[Page], kind: str) -> list[Any]:
    return [record for page in pages for record in page.records if record.kind == kind]


def _signals(pages: list[Page], kind: str) -> list[dict[str, Any]]:
    return [signal for page in pages for signal in page.signals if signal["type"] == kind]


def test_pages_past_2000_rows_through_next_records_url(fake_sf: FakeSalesforce, sf_users, make_connector) -> None:
    for values in iter_accounts(4321, [u["Id"] for u in sf_users]):
        fake_sf.org.insert("Account", values)
    connector = make_connector()
    pages, cursors = _pull(connector)
    account_pages = [page for page in pages if page.object_type == "Account"]
    assert [len(page.records) for page in account_pages] == [2000, 2000, 321]
    assert len({record.external_id for page in account_pages for record in page.records}) == 4321
    assert fake_sf.org.api_calls(path=r"/query/01g") >= 2  # the two follow-up pages came via nextRecordsUrl
    first = account_pages[0].records[0]
    assert first.fields["domain"] == "customer0.example" and first.fields["owner"] == sf_users[0]["Id"]
    assert first.fields["health"] == 0 and first.fields["segment"] == "Mid-Market"  # custom fields, mapped
    # cursors advance page by page, so an interrupted sync resumes from the last stored page
    stamps = [page.cursor["since"] for page in account_pages]
    assert stamps == sorted(stamps) and cursors["Account"]["since"] == stamps[-1]


def test_owners_carry_manager_role_time_zone_and_active_flag(fake_sf: FakeSalesforce, sf_users, make_connector) -> None:
    fake_sf.org.update("User", sf_users[2]["Id"], {"IsActive": False})
    fake_sf.org.insert("User", {"LastName": "Integration", "IsActive": True, "Username": "int@acme.example"})
    pages, _ = _pull(make_connector())
    owners = {record.external_id: record.fields for record in _records(pages, "owner")}
    assert len(owners) == len(sf_users)  # the user without a mailbox is not a person to assign
    rep = owners[sf_users[1]["Id"]]
    assert rep["manager"] == sf_users[0]["Id"] and rep["role"] == "csm" and rep["timezone"] == "America/Chicago"
    assert rep["email"] == "rep0@acme.example" and rep["active"] is True
    assert owners[sf_users[2]["Id"]]["active"] is False


def test_incremental_pull_catches_a_change_committed_late_during_the_sync(fake_sf, sf_users, make_connector) -> None:
    org = fake_sf.org
    org.clock_offset = timedelta(hours=-2)  # the org's history: long before this sync
    ids = [org.insert("Account", values)["Id"] for values in iter_accounts(2500, [sf_users[1]["Id"]])]
    org.clock_offset = timedelta(0)
    connector = make_connector(overlap_seconds=60)
    _, cursors = _pull(connector)
    org.update("Account", ids[0], {"Name": "Renamed once"})
    late: dict[str, Any] = {}

    def commit_late(sobject: str, offset: int) -> None:
        # A long transaction commits while we page: its stamp is earlier than rows we already saw.
        if sobject == "Account" and offset == 0 and "done" not in late:
            late["done"] = True
            org.update("Account", ids[1], {"Name": "Committed late"},
                       stamp=org.now() - timedelta(seconds=5))

    org.on_page.append(commit_late)
    org.update("Account", ids[2], {"Name": "Changed before"})
    pages, cursors = _pull(connector, cursors)
    org.on_page.clear()
    seen = {record.external_id: record.fields.get("name") for record in _records(pages, "account")}
    assert seen[ids[0]] == "Renamed once" and seen[ids[2]] == "Changed before"
    assert seen.get(ids[1]) != "Committed late"  # not visible when the query ran
    pages, _ = _pull(connector, cursors)
    again = {record.external_id: record.fields.get("name") for record in _records(pages, "account")}
    assert again[ids[1]] == "Committed late"  # the overlap window caught it
    assert len(again) < 10  # incremental: not the whole org again


def test_without_overlap_the_late_commit_is_missed(fake_sf, sf_users, make_connector) -> None:
    # The failure the overlap window exists for, shown with overlap 0.
    org = fake_sf.org
    first = org.insert("Account", {"Name": "A", "OwnerId": sf_users[1]["Id"]})
    connector = make_connector(overlap_seconds=0)
    _, cursors = _pull(connector)
    org.update("Account", first["Id"], {"Name": "late"}, stamp=org.now() - timedelta(seconds=5))
    pages, _ = _pull(connector, cursors)
    assert first["Id"] not in {record.external_id for record in _records(pages, "account")}


def test_deletions_come_through_query_all(fake_sf, sf_users, make_connector) -> None:
    org = fake_sf.org
    account = org.insert("Account", {"Name": "Gone soon", "OwnerId": sf_users[1]["Id"]})
    contact = org.insert("Contact", {"AccountId": account["Id"], "LastName": "Doe", "Email": "doe@c.example"})
    connector = make_connector()
    _, cursors = _pull(connector)
    org.delete("Contact", contact["Id"])
    pages, _ = _pull(connector, cursors)
    deleted = [record for record in _records(pages, "contact") if record.deleted]
    assert [record.external_id for record in deleted] == [contact["Id"]]
    assert fake_sf.org.api_calls(path=r"/queryAll/") >= 1


def test_derived_signals_have_dedupe_keys_from_id_and_modstamp(fake_sf, sf_users, make_connector) -> None:
    org = fake_sf.org
    account = org.insert("Account", {"Name": "Deals", "OwnerId": sf_users[1]["Id"],
                                     "Renewal_Date__c": (datetime.now(UTC) + timedelta(days=30)).date()})
    connector = make_connector(history_days=1)
    opportunity = org.insert("Opportunity", {"AccountId": account["Id"], "Name": "Big", "StageName": "Prospecting",
                                             "Amount": 1000.0, "CloseDate": date(2027, 1, 31)})
    org.update("Opportunity", opportunity["Id"], {"Amount": 2000.0})  # history row, same stage
    org.update("Opportunity", opportunity["Id"], {"StageName": "Closed Won"})
    org.update("Account", account["Id"], {"OwnerId": sf_users[2]["Id"]})
    pages, cursors = _pull(connector)
    changes = _signals(pages, "deal.stage_changed")
    assert [(s["payload"]["from_stage"], s["payload"]["stage"]) for s in changes] == [
        (None, "Prospecting"), ("Prospecting", "Closed Won")]
    won = _signals(pages, "deal.closed_won")
    assert len(won) == 1 and won[0]["deal"] == {"source": "salesforce", "external_id": opportunity["Id"]}
    owner = _signals(pages, "owner.changed")
    assert owner[0]["payload"]["to_owner"]["external_id"] == sf_users[2]["Id"]
    renewal = _signals(pages, "renewal.upcoming")
    assert renewal and renewal[0]["payload"]["days_to_renewal"] in (29, 30)
    # Playbooks read payload fields by the catalog's names (the shipped renewal review: days_to_renewal).
    catalogued = shipped_catalog().signal("renewal.upcoming")
    assert catalogued is not None and set(renewal[0]["payload"]) <= set(catalogued.fields)
    keys = [s["dedupe_key"] for page in pages for s in page.signals]
    assert len(keys) == len(set(keys))
    # the overlap window reads the same rows again: the same keys, so intake stores them once
    pages_again, _ = _pull(connector, cursors)
    again = {s["dedupe_key"] for page in pages_again for s in page.signals}
    assert {s["dedupe_key"] for s in changes + won} <= again


def test_a_lost_deal_becomes_a_stage_change_and_one_closed_lost(fake_sf, sf_users, make_connector) -> None:
    org = fake_sf.org
    account = org.insert("Account", {"Name": "Lost Co", "OwnerId": sf_users[1]["Id"]})
    connector = make_connector(history_days=1)
    opportunity = org.insert("Opportunity", {"AccountId": account["Id"], "Name": "Gone", "StageName": "Negotiation",
                                             "Amount": 500.0, "CloseDate": date(2027, 1, 31)})
    org.update("Opportunity", opportunity["Id"], {"StageName": "Closed Lost"})
    pages, cursors = _pull(connector)
    changes = _signals(pages, "deal.stage_changed")
    assert [(s["payload"]["from_stage"], s["payload"]["stage"]) for s in changes] == [
        (None, "Negotiation"), ("Negotiation", "Closed Lost")]
    assert not _signals(pages, "deal.closed_won")
    (lost,) = _signals(pages, "deal.closed_lost")
    assert lost["deal"] == {"source": "salesforce", "external_id": opportunity["Id"]}
    assert lost["account"] == {"source": "salesforce", "external_id": account["Id"]}
    assert lost["dedupe_key"].endswith(":deal.closed_lost") and lost["dedupe_key"] != changes[-1]["dedupe_key"]
    again, _ = _pull(connector, cursors)  # the overlap reads it again: same key, stored once by intake
    assert [s["dedupe_key"] for s in _signals(again, "deal.closed_lost")] == [lost["dedupe_key"]]


def test_a_full_resync_reads_everything_again(fake_sf, sf_users, make_connector) -> None:
    fake_sf.org.clock_offset = timedelta(hours=-1)
    for values in iter_accounts(5, [sf_users[1]["Id"]]):
        fake_sf.org.insert("Account", values)
    fake_sf.org.clock_offset = timedelta(0)
    fake_sf.org.insert("Account", {"Name": "Newest", "OwnerId": sf_users[1]["Id"]})
    connector = make_connector(overlap_seconds=0)
    _, cursors = _pull(connector)
    pages, _ = _pull(connector, cursors)
    # SOQL datetimes have whole seconds: only rows of the cursor's own second come again
    assert [r.fields["name"] for r in _records(pages, "account")] == ["Newest"]
    pages, _ = _pull(connector, cursors, full=True)
    assert len(_records(pages, "account")) == 6


def test_unmapped_canonical_names_land_in_attributes(fake_sf, sf_users, make_connector) -> None:
    fake_sf.org.insert("Account", {"Name": "Typed", "Type": "Customer", "OwnerId": sf_users[1]["Id"]})
    pages, _ = _pull(make_connector(fields={"account": {"tier": "Type", "industry": ""}}))
    (account,) = _records(pages, "account")
    assert account.fields["attributes"] == {"tier": "Customer"} and "industry" not in account.fields


def test_soql_is_built_with_format_soql_quoting(fake_sf, sf_users, make_connector) -> None:
    # A quote in configuration values cannot break out of the statement.
    fake_sf.org.insert("User", {"LastName": "O'Brien", "Email": "o'brien@acme.example", "IsActive": True,
                                "Username": "ob@acme.example"})
    pages, _ = _pull(make_connector())
    assert "o'brien@acme.example" in {r.fields["email"] for r in _records(pages, "owner")}
