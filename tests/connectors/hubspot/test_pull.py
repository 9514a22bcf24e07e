"""Pulling from the fake HubSpot through the real client: list and search paging, the 10,000 cap,
archived records, associations, derived signals, and zero 429s at the default limits."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from connectors.base import Page
from connectors.hubspot import HubSpotConnector
from orchestrator.playbook.catalog import shipped_catalog
from tests.conftest import T0
from tests.connectors.hubspot.conftest import FakeTime
from tests.fakes.hubspot import FakeHubSpot

SINCE = (T0 - timedelta(days=1)).isoformat()


def run(connector: HubSpotConnector, cursor: dict[str, Any] | None = None, full: bool = False) -> list[Page]:
    return list(connector.pull(cursor=cursor, full=full))


def records(pages: list[Page], kind: str) -> list[Any]:
    return [r for p in pages for r in p.records if r.kind == kind]


def signals(pages: list[Page], type_: str | None = None) -> list[Any]:
    return [s for p in pages for s in p.signals if type_ is None or s["type"] == type_]


def cursors(pages: list[Page]) -> dict[str, Any]:
    return {p.object_type: p.cursor for p in pages if p.cursor is not None}


def test_first_sync_lists_everything_with_associations(hubspot: FakeHubSpot,
                                                      make_connector: Callable[..., HubSpotConnector]) -> None:
    owner = hubspot.add_owner(email="Rae@Acme.example", first="Rae", last="Rep")
    companies = [hubspot.add("companies", {"name": f"Co {i}", "domain": f"CO{i}.example", "hubspot_owner_id": owner,
                                           "annualrevenue": "1200"}) for i in range(250)]
    contact = hubspot.add("contacts", {"firstname": "Ada", "lastname": "Lee", "email": "ada@co1.example"})
    hubspot.associate("contacts", contact, "companies", companies[1], 1)
    loner = hubspot.add("contacts", {"firstname": "No", "lastname": "Company"})
    deal = hubspot.add("deals", {"dealname": "Renewal", "amount": "5000", "dealstage": "closedwon"})
    hubspot.associate("deals", deal, "companies", companies[2], 5)
    pages = run(make_connector())
    accounts = records(pages, "account")
    assert len(accounts) == 250 and len({a.external_id for a in accounts}) == 250
    first = next(a for a in accounts if a.external_id == companies[0])
    assert first.fields == {"name": "Co 0", "domain": "co0.example", "arr": "1200", "owner": owner, "industry": None}
    assert [o.fields for o in records(pages, "owner")] == [{"email": "rae@acme.example", "name": "Rae Rep",
                                                            "role": "ae"}]
    [person] = records(pages, "contact")
    assert person.external_id == contact and person.fields["account"] == {"source": "hubspot",
                                                                          "external_id": companies[1]}
    assert loner not in {c.external_id for c in records(pages, "contact")}
    [sale] = records(pages, "deal")
    assert sale.fields["account"]["external_id"] == companies[2]
    assert sale.fields["is_won"] is True and sale.fields["stage"] == "closedwon"
    assert set(cursors(pages)) == {"owners", "companies", "contacts", "deals", "tasks"}
    assert sum(p.api_calls for p in pages) == hubspot.count()
    # 250 companies: three list pages, then the archived list.
    assert hubspot.count(method="GET", path=r"/objects/companies$") == 4


def test_incremental_reads_only_the_window_and_moves_the_cursor(
        hubspot: FakeHubSpot, fake_time: FakeTime, make_connector: Callable[..., HubSpotConnector]) -> None:
    old = hubspot.add("companies", {"name": "Old", "domain": "old.example"}, modified=T0 - timedelta(days=3))
    new = hubspot.add("companies", {"name": "New", "domain": "new.example"}, modified=T0 - timedelta(hours=1))
    pages = run(make_connector(), {"companies": {"since": SINCE}, "contacts": {"since": SINCE},
                                   "deals": {"since": SINCE}, "tasks": {"since": SINCE}})
    assert [a.external_id for a in records(pages, "account")] == [new]
    assert old != new
    assert cursors(pages)["companies"] == {"since": T0.isoformat()}
    assert hubspot.count(path=r"/objects/companies/search$") == 1
    # Changed after the cursor, or inside the overlap before it: read again.
    fake_time.advance(60)
    hubspot.update("companies", old, {"name": "Old but renamed"})
    fake_time.advance(1)
    again = run(make_connector(), cursors(pages))
    assert [a.fields["name"] for a in records(again, "account")] == ["Old but renamed"]


@pytest.mark.parametrize("cap, count", [
    (1_000, 2_500),  # the same mechanism at a tenth of the size, to keep the suite fast
    pytest.param(10_000, 12_500, marks=pytest.mark.slow),  # HubSpot's real cap
])
def test_a_window_over_the_cap_is_split_in_halves(
        hubspot: FakeHubSpot, fake_time: FakeTime, make_connector: Callable[..., HubSpotConnector],
        cap: int, count: int) -> None:
    hubspot.search_cap = cap
    start = T0 - timedelta(hours=10)
    step = timedelta(hours=9) / count
    for i in range(count):
        hubspot.add("companies", {"name": f"Co {i}", "domain": f"c{i}.example"}, modified=start + step * i)
    template = make_connector()
    connector = HubSpotConnector(config=template.config, context=template.context, monotonic=fake_time.monotonic,
                                 sleep=fake_time.sleep, search_cap=cap)
    pages = run(connector, {"companies": {"since": (start + timedelta(minutes=5)).isoformat()},
                            "contacts": {"since": SINCE}, "deals": {"since": SINCE}, "tasks": {"since": SINCE}})
    connector.close()
    seen = Counter(a.external_id for a in records(pages, "account"))
    assert len(seen) == count  # the overlap (5 minutes) reaches back to the very first one
    assert max(seen.values()) == 1
    assert hubspot.count(status=400) == 0  # never asked past the cap
    assert hubspot.count(status=429) == 0
    searches = hubspot.count(path=r"/companies/search$")
    assert searches <= count // 200 + 2 * (count // cap + 1) * 2  # pages plus a probe per split


def test_the_fake_refuses_paging_past_the_cap(hubspot: FakeHubSpot,
                                             make_connector: Callable[..., HubSpotConnector]) -> None:
    # What a naive pager meets, so the split above is what avoids it.
    hubspot.search_cap = 400
    for i in range(500):
        hubspot.add("companies", {"name": f"Co {i}"})
    api = make_connector().transport.api("companies.search")
    body = {"filterGroups": [], "limit": 200, "after": "400"}
    try:
        api.do_search(public_object_search_request=body)
    except Exception as exc:  # the client's ApiException
        assert getattr(exc, "status", None) == 400
    else:
        raise AssertionError("paging past the cap was accepted")


def test_more_than_the_cap_in_one_millisecond_is_walked_by_id(
        hubspot: FakeHubSpot, fake_time: FakeTime, make_connector: Callable[..., HubSpotConnector]) -> None:
    hubspot.search_cap = 300
    moment = T0 - timedelta(hours=1)
    for i in range(700):
        hubspot.add("companies", {"name": f"Co {i}"}, modified=moment)
    connector = HubSpotConnector(config=make_connector().config, context=make_connector().context,
                                 monotonic=fake_time.monotonic, sleep=fake_time.sleep, search_cap=300)
    pages = run(connector, {"companies": {"since": SINCE}, "contacts": {"since": SINCE},
                            "deals": {"since": SINCE}, "tasks": {"since": SINCE}})
    seen = Counter(a.external_id for a in records(pages, "account"))
    assert len(seen) == 700 and max(seen.values()) == 1
    assert hubspot.count(status=400) == 0
    connector.close()


def test_archived_records_come_from_the_list_endpoint(
        hubspot: FakeHubSpot, make_connector: Callable[..., HubSpotConnector]) -> None:
    gone = hubspot.add("companies", {"name": "Gone"}, modified=T0 - timedelta(days=5))
    hubspot.archive("companies", gone, at=T0 - timedelta(hours=2))
    long_gone = hubspot.add("companies", {"name": "Long gone"}, modified=T0 - timedelta(days=50))
    hubspot.archive("companies", long_gone, at=T0 - timedelta(days=40))
    pages = run(make_connector(), {"companies": {"since": SINCE}, "contacts": {"since": SINCE},
                                   "deals": {"since": SINCE}, "tasks": {"since": SINCE}})
    deleted = [a for a in records(pages, "account") if a.deleted]
    assert [a.external_id for a in deleted] == [gone]
    assert hubspot.count(method="GET", path=r"/objects/companies$") == 1


def test_deal_stage_history_becomes_signals_with_stable_dedupe_keys(
        hubspot: FakeHubSpot, fake_time: FakeTime, make_connector: Callable[..., HubSpotConnector]) -> None:
    company = hubspot.add("companies", {"name": "Acme", "domain": "acme.example"}, modified=T0 - timedelta(days=9))
    deal = hubspot.add("deals", {"dealname": "Expansion", "amount": "9000", "dealstage": "appointmentscheduled"},
                       modified=T0 - timedelta(days=9))
    hubspot.associate("deals", deal, "companies", company, 5)
    hubspot.update("deals", deal, {"dealstage": "contractsent"}, modified=T0 - timedelta(hours=3))
    hubspot.update("deals", deal, {"dealstage": "closedwon"}, modified=T0 - timedelta(hours=2))
    cursor = {"companies": {"since": SINCE}, "contacts": {"since": SINCE}, "deals": {"since": SINCE},
              "tasks": {"since": SINCE}}
    pages = run(make_connector(), cursor)
    changes = signals(pages, "deal.stage_changed")
    assert [(s["payload"]["from"], s["payload"]["to"]) for s in changes] == [
        ("appointmentscheduled", "contractsent"), ("contractsent", "closedwon")]
    [won] = signals(pages, "deal.closed_won")
    assert won["account"] == {"source": "hubspot", "external_id": company}
    assert won["deal"] == {"source": "hubspot", "external_id": deal}
    assert won["payload"]["amount"] == 9000.0
    assert won["occurred_at"] == (T0 - timedelta(hours=2)).isoformat()
    # The same changes read again (overlap, a second run) carry the same keys: intake stores them once.
    again = run(make_connector(), cursor)
    assert {s["dedupe_key"] for s in signals(again)} == {s["dedupe_key"] for s in signals(pages)}


def test_a_lost_deal_becomes_one_closed_lost_and_no_closed_won(
        hubspot: FakeHubSpot, make_connector: Callable[..., HubSpotConnector]) -> None:
    company = hubspot.add("companies", {"name": "Lost Co"}, modified=T0 - timedelta(days=9))
    deal = hubspot.add("deals", {"dealname": "Gone", "amount": "500", "dealstage": "contractsent"},
                       modified=T0 - timedelta(days=9))
    hubspot.associate("deals", deal, "companies", company, 5)
    hubspot.update("deals", deal, {"dealstage": "closedlost"}, modified=T0 - timedelta(hours=1))
    cursor = {"companies": {"since": SINCE}, "contacts": {"since": SINCE}, "deals": {"since": SINCE},
              "tasks": {"since": SINCE}}
    pages = run(make_connector(), cursor)
    assert not signals(pages, "deal.closed_won")
    [lost] = signals(pages, "deal.closed_lost")
    assert lost["deal"] == {"source": "hubspot", "external_id": deal}
    assert lost["account"] == {"source": "hubspot", "external_id": company}
    assert lost["payload"] == {"stage": "closedlost", "amount": 500.0}
    assert [s["dedupe_key"] for s in signals(run(make_connector(), cursor), "deal.closed_lost")] == [lost["dedupe_key"]]


def test_owner_change_and_renewal_upcoming(hubspot: FakeHubSpot,
                                          make_connector: Callable[..., HubSpotConnector]) -> None:
    company = hubspot.add("companies", {"name": "Acme", "hubspot_owner_id": "11",
                                        "renewal_date": (T0 + timedelta(days=30)).date().isoformat()},
                          modified=T0 - timedelta(days=9))
    hubspot.add_property("companies", "renewal_date")
    hubspot.update("companies", company, {"hubspot_owner_id": "12"}, modified=T0 - timedelta(hours=1))
    pages = run(make_connector(renewal_property="renewal_date"),
                {"companies": {"since": SINCE}, "contacts": {"since": SINCE}, "deals": {"since": SINCE},
                 "tasks": {"since": SINCE}})
    [change] = signals(pages, "account.owner_changed")
    assert change["payload"]["from_owner"] == "11" and change["payload"]["to_owner"] == "12"
    [renewal] = signals(pages, "renewal.upcoming")
    assert renewal["payload"]["days_to_renewal"] == 30
    # Playbooks read payload fields by the catalog's names (the shipped renewal review: days_to_renewal).
    catalogued = shipped_catalog().signal("renewal.upcoming")
    assert catalogued is not None and set(renewal["payload"]) <= set(catalogued.fields)
    assert renewal["dedupe_key"].endswith((T0 + timedelta(days=30)).date().isoformat())


def test_a_rep_completing_a_handoff_task_becomes_task_completed(
        hubspot: FakeHubSpot, make_connector: Callable[..., HubSpotConnector]) -> None:
    company = hubspot.add("companies", {"name": "Acme"}, modified=T0 - timedelta(days=9))
    ours = hubspot.add("tasks", {"hs_task_subject": "Call", "hs_task_status": "NOT_STARTED",
                                 "handoff_key": "task:42:create"}, modified=T0 - timedelta(days=2))
    hubspot.associate("tasks", ours, "companies", company, 192)
    theirs = hubspot.add("tasks", {"hs_task_subject": "Rep's own", "hs_task_status": "NOT_STARTED"},
                         modified=T0 - timedelta(days=2))
    hubspot.associate("tasks", theirs, "companies", company, 192)
    for task in (ours, theirs):
        hubspot.update("tasks", task, {"hs_task_status": "COMPLETED"}, modified=T0 - timedelta(minutes=30))
    pages = run(make_connector(), {"companies": {"since": SINCE}, "contacts": {"since": SINCE},
                                   "deals": {"since": SINCE}, "tasks": {"since": SINCE}})
    [done] = signals(pages, "task.completed")
    assert done["payload"] == {"crm_id": ours, "task_id": 42, "outcome": "done", "source": "hubspot"}
    assert done["account"] == {"source": "hubspot", "external_id": company}


def test_steady_state_sync_and_write_back_never_see_a_429(
        hubspot: FakeHubSpot, fake_time: FakeTime, make_connector: Callable[..., HubSpotConnector]) -> None:
    """Default limits on both sides (100 per 10 s; search 4/s against HubSpot's 5/s): hundreds of calls, no 429."""
    from tests.connectors.hubspot.conftest import create_message

    owner = hubspot.add_owner(email="rep@acme.example")
    companies = [hubspot.add("companies", {"name": f"Co {i}"}, modified=T0 - timedelta(minutes=i % 600))
                 for i in range(3_000)]
    for i, company in enumerate(companies[:400]):
        deal = hubspot.add("deals", {"dealname": f"D{i}", "dealstage": "contractsent"},
                           modified=T0 - timedelta(minutes=i))
        hubspot.associate("deals", deal, "companies", company, 5)
    connector = make_connector()
    cursor: dict[str, Any] = {k: {"since": (T0 - timedelta(hours=12)).isoformat()}
                              for k in ("companies", "contacts", "deals", "tasks")}
    for _ in range(3):
        pages = run(connector, cursor)
        cursor = {**cursor, **cursors(pages)}
        for n in range(0, 70):
            connector.push([create_message(message_id=n, task_id=len(hubspot.live("tasks")) + 1,
                                           company=companies[n], owner_hubspot_id=owner)])
        fake_time.advance(1)
    calls = hubspot.count()
    assert calls > 250
    assert hubspot.count(status=429) == 0
    # Paced, not bursting: that many calls took at least this long on the shared clock.
    assert fake_time.slept >= (calls // 100 - 1) * 10


def test_check_compares_the_field_mapping_with_the_properties_api(
        hubspot: FakeHubSpot, make_connector: Callable[..., HubSpotConnector]) -> None:
    assert make_connector().check() == []
    problems = make_connector(company_fields={"attributes.plan": "plan_tier"}, renewal_property="renewal_on").check()
    assert problems == ["companies: attributes.plan maps to 'plan_tier', which HubSpot does not have",
                        "companies: property 'renewal_on' (configured) does not exist"]
    hubspot.properties["tasks"] = [p for p in hubspot.properties["tasks"] if p["name"] != "handoff_key"]
    hubspot.add_property("tasks", "handoff_key", unique=False)
    assert make_connector().check() == ["tasks: 'handoff_key' must have unique values"]
    fields = make_connector().describe_fields()
    assert {"name", "domain", "annualrevenue"} <= {f.name for f in fields["companies"]}


def test_properties_mapped_as_attributes_are_described_with_their_label_and_kind(
        hubspot: FakeHubSpot, make_connector: Callable[..., HubSpotConnector]) -> None:
    hubspot.add_property("companies", "plan_tier")
    hubspot.add_property("deals", "seats_bought", type_="number")
    connector = make_connector(company_fields={"attributes.plan": "plan_tier", "attributes.gone": "no_such"},
                               deal_fields={"attributes.seats": "seats_bought"})
    described = connector.describe_attributes()
    # name, domain... are Handoff columns (already in the dictionary); no_such is not in the portal.
    assert {entity: [(a.name, a.kind, a.format) for a in found] for entity, found in described.items()} == {
        "account": [("plan", "text", "text")], "deal": [("seats", "number", "number")]}
    assert all(a.label for found in described.values() for a in found)
