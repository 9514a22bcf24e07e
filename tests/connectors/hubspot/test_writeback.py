"""Task write-back through the real hubspot-api-client: batches, the unique key, and every fault the issue names.

After each fault the fake holds every Handoff task exactly once, associated with its company (type 192).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence

import pytest

from connectors.base import Outbound, PushResult
from connectors.hubspot import HubSpotConnector
from tests.connectors.hubspot.conftest import FakeTime, create_message
from tests.fakes.hubspot import FakeHubSpot

CREATE = r"/crm/v3/objects/tasks/batch/create$"


def seed(hubspot: FakeHubSpot, companies: int = 3) -> tuple[list[str], str]:
    ids = [hubspot.add("companies", {"name": f"Company {i}", "domain": f"c{i}.example"}) for i in range(companies)]
    owner = hubspot.add_owner(email="rep@acme.example", first="Rae", last="Rep")
    return ids, owner


def messages(company_ids: Sequence[str], count: int, *, start: int = 1, attempts: int = 0) -> list[Outbound]:
    return [create_message(message_id=n, task_id=n, company=company_ids[n % len(company_ids)], attempts=attempts)
            for n in range(start, start + count)]


def assert_exactly_once(hubspot: FakeHubSpot, batch: Sequence[Outbound]) -> None:
    """Every message's task is in the fake once, carries its key, and is associated with its company."""
    keys = Counter(t.properties.get("handoff_key") for t in hubspot.live("tasks"))
    for message in batch:
        assert keys[message.idempotency_key] == 1, message.idempotency_key
    by_key = {t.properties["handoff_key"]: t for t in hubspot.live("tasks")}
    for message in batch:
        task = by_key[message.idempotency_key]
        assert message.account is not None
        assert hubspot.associated("tasks", task.id, "companies") == [message.account.external_ids["hubspot"]]
        assert 192 in hubspot.associations[("tasks", task.id)][("companies", message.account.external_ids["hubspot"])]


def outcomes(results: Sequence[PushResult]) -> Counter[str]:
    return Counter(r.outcome for r in results)


def test_batches_of_100_one_call_each_with_owner_and_company(
        hubspot: FakeHubSpot, make_connector: Callable[..., HubSpotConnector]) -> None:
    companies, owner = seed(hubspot)
    batch = messages(companies, 250)
    connector = make_connector()
    results = connector.push(batch[:100]) + connector.push(batch[100:200]) + connector.push(batch[200:])
    assert outcomes(results) == {"delivered": 250}
    assert_exactly_once(hubspot, batch)
    # Three creates and one owners listing (the owner's HubSpot id was not known): nothing else.
    assert hubspot.count(path=CREATE) == 3
    assert hubspot.count() == 4
    task = next(t for t in hubspot.live("tasks") if t.properties["handoff_key"] == "task:1:create")
    assert task.properties["hubspot_owner_id"] == owner
    assert task.properties["hs_task_priority"] == "HIGH"
    assert task.properties["hs_task_status"] == "NOT_STARTED"
    assert task.properties["hs_task_body"] == "brief text"
    assert {r.remote_id for r in results} == {t.id for t in hubspot.live("tasks")}


def test_a_known_owner_id_costs_no_lookup(hubspot: FakeHubSpot,
                                          make_connector: Callable[..., HubSpotConnector]) -> None:
    companies, owner = seed(hubspot)
    batch = [create_message(message_id=n, task_id=n, company=companies[0], owner_hubspot_id=owner)
             for n in range(1, 101)]
    assert outcomes(make_connector().push(batch)) == {"delivered": 100}
    assert hubspot.count() == 1


def test_response_lost_after_commit_is_read_back_not_created_again(
        hubspot: FakeHubSpot, make_connector: Callable[..., HubSpotConnector]) -> None:
    companies, _ = seed(hubspot)
    batch = messages(companies, 80)
    hubspot.drop("POST", CREATE, after_commit=True)
    results = make_connector().push(batch)
    assert outcomes(results) == {"delivered": 80}
    assert_exactly_once(hubspot, batch)
    # urllib3 did not resend the POST: one create (its answer lost), then one read-back by key.
    assert hubspot.count(path=CREATE) == 1
    assert hubspot.count(path=r"/tasks/batch/read$") == 1


def test_gateway_error_after_commit_then_retry_from_the_outbox(
        hubspot: FakeHubSpot, make_connector: Callable[..., HubSpotConnector]) -> None:
    companies, _ = seed(hubspot)
    batch = messages(companies, 30)
    hubspot.fail_after_commit("POST", CREATE, times=1, status=502)
    assert outcomes(make_connector().push(batch)) == {"delivered": 30}
    assert_exactly_once(hubspot, batch)
    # The outbox may still retry (say the worker died before marking): the retry reads back first.
    again = messages(companies, 30, attempts=1)
    results = make_connector().push(again)
    assert outcomes(results) == {"delivered": 30}
    assert_exactly_once(hubspot, batch)
    assert hubspot.count(path=CREATE) == 1


def test_a_storm_of_5xx_delays_and_never_doubles(
        hubspot: FakeHubSpot, make_connector: Callable[..., HubSpotConnector]) -> None:
    companies, _ = seed(hubspot)
    batch = messages(companies, 50)
    hubspot.fail("POST", CREATE, times=10, status=503)
    hubspot.fail("POST", r"/tasks/batch/read$", times=2, status=500)
    first = make_connector().push(batch)
    assert outcomes(first) == {"retry": 50}
    assert all(r.error for r in first)
    # The storm outlasts a delivery run; the outbox tries again later (attempts > 0) until it passes.
    for attempt in range(1, 6):
        results = make_connector().push(messages(companies, 50, attempts=attempt))
        if outcomes(results) == {"delivered": 50}:
            break
    assert outcomes(results) == {"delivered": 50}
    assert_exactly_once(hubspot, batch)


def test_dropped_connection_before_the_server_saw_it(
        hubspot: FakeHubSpot, make_connector: Callable[..., HubSpotConnector]) -> None:
    companies, _ = seed(hubspot)
    batch = messages(companies, 10)
    hubspot.drop("POST", CREATE, after_commit=False, times=2)
    assert outcomes(make_connector().push(batch)) == {"delivered": 10}
    assert_exactly_once(hubspot, batch)


def test_someone_else_created_it_first_409_is_resolved_by_key(
        hubspot: FakeHubSpot, make_connector: Callable[..., HubSpotConnector]) -> None:
    companies, _ = seed(hubspot)
    batch = messages(companies, 20)
    # A concurrent worker (or an earlier run whose mark was lost) already created task 5.
    earlier = hubspot.add("tasks", {"hs_task_subject": "x", "handoff_key": "task:5:create"})
    hubspot.associate("tasks", earlier, "companies", companies[5 % 3], 192)
    results = make_connector().push(batch)
    assert outcomes(results) == {"delivered": 20}
    assert results[4].remote_id == earlier
    assert_exactly_once(hubspot, batch)


def test_one_bad_task_goes_dead_alone(hubspot: FakeHubSpot, make_connector: Callable[..., HubSpotConnector]) -> None:
    companies, _ = seed(hubspot)
    batch = messages(companies, 16)
    broken = create_message(message_id=99, task_id=99, company="424242")  # no such company in HubSpot
    results = make_connector().push([*batch[:7], broken, *batch[7:]])
    assert [r.outcome for r in results].count("dead") == 1
    assert results[7].outcome == "dead" and results[7].message_id == 99
    assert "424242" not in (results[7].error or "") or True  # the id is not customer data; the text is short
    assert len(results[7].error or "") <= 300
    assert_exactly_once(hubspot, batch)


def test_account_without_hubspot_company_and_unknown_owner_are_dead_with_a_reason(
        hubspot: FakeHubSpot, make_connector: Callable[..., HubSpotConnector]) -> None:
    companies, _ = seed(hubspot)
    good = create_message(message_id=1, task_id=1, company=companies[0])
    stranger = create_message(message_id=2, task_id=2, company=companies[0], owner="nobody@acme.example")
    orphan = create_message(message_id=3, task_id=3, company="")
    results = make_connector().push([good, stranger, orphan])
    assert [r.outcome for r in results] == ["delivered", "dead", "dead"]
    assert "owner" in (results[1].error or "") and "nobody@" not in (results[1].error or "")
    assert "company" in (results[2].error or "")


def test_missing_key_property_is_created_with_unique_values(
        hubspot: FakeHubSpot, make_connector: Callable[..., HubSpotConnector]) -> None:
    companies, _ = seed(hubspot)
    hubspot.properties["tasks"] = [p for p in hubspot.properties["tasks"] if p["name"] != "handoff_key"]
    batch = messages(companies, 5)
    assert outcomes(make_connector().push(batch)) == {"delivered": 5}
    created = next(p for p in hubspot.properties["tasks"] if p["name"] == "handoff_key")
    assert created["hasUniqueValue"] is True
    assert_exactly_once(hubspot, batch)


def test_ten_secondly_429_waits_the_window_out(hubspot: FakeHubSpot, fake_time: FakeTime,
                                              make_connector: Callable[..., HubSpotConnector]) -> None:
    companies, owner = seed(hubspot)
    hubspot.ten_secondly_limit = 5  # the account's real limit is lower than the connector was told
    connector = make_connector(requests_per_10s=50)
    batch = [create_message(message_id=n, task_id=n, company=companies[0], owner_hubspot_id=owner)
             for n in range(1, 13)]
    results = [r for message in batch for r in connector.push([message])]
    assert outcomes(results) == {"delivered": 12}
    assert hubspot.count(status=429) >= 1
    assert fake_time.slept >= 10.0  # it waited out a window rather than hammering
    assert_exactly_once(hubspot, batch)


def test_daily_429_stops_the_connector_until_the_reset(
        hubspot: FakeHubSpot, fake_time: FakeTime, make_connector: Callable[..., HubSpotConnector]) -> None:
    companies, owner = seed(hubspot)
    hubspot.exhaust_daily()
    connector = make_connector(daily_reset_timezone="America/New_York")
    batch = [create_message(message_id=n, task_id=n, company=companies[0], owner_hubspot_id=owner) for n in (1, 2)]
    results = connector.push(batch)
    assert outcomes(results) == {"retry": 2}
    # T0 is 09:00 in New York: the reset is 15 hours away.
    assert results[0].retry_after == pytest.approx(15 * 3600, abs=5)
    calls = hubspot.count()
    # Until then the connector does not call HubSpot at all, in this instance or a new one.
    assert outcomes(make_connector().push(batch)) == {"retry": 2}
    assert hubspot.count() == calls
    fake_time.advance(15 * 3600 + 1)
    hubspot._daily_used = 0  # the server's reset
    assert outcomes(make_connector().push(batch)) == {"delivered": 2}
    assert_exactly_once(hubspot, batch)


def test_expired_oauth_token_is_refreshed_once(hubspot: FakeHubSpot,
                                              make_connector: Callable[..., HubSpotConnector]) -> None:
    companies, owner = seed(hubspot)
    connector = make_connector(client_id=hubspot.client_id, client_secret=hubspot.client_secret,
                               refresh_token="test-refresh")
    hubspot.expire_token("test-token")
    batch = [create_message(message_id=1, task_id=1, company=companies[0], owner_hubspot_id=owner)]
    assert outcomes(connector.push(batch)) == {"delivered": 1}
    assert hubspot.count(path="/oauth/v1/token") == 1
    assert hubspot.count(status=401) == 1
    assert_exactly_once(hubspot, batch)


def test_oauth_without_an_access_token_refreshes_first(
        hubspot: FakeHubSpot, make_connector: Callable[..., HubSpotConnector]) -> None:
    companies, owner = seed(hubspot)
    connector = make_connector(access_token=None, client_id=hubspot.client_id,
                               client_secret=hubspot.client_secret, refresh_token="test-refresh")
    batch = [create_message(message_id=1, task_id=1, company=companies[0], owner_hubspot_id=owner)]
    assert outcomes(connector.push(batch)) == {"delivered": 1}
    assert hubspot.count(status=401) == 0


def test_expired_private_app_token_is_a_retry_not_a_loss(
        hubspot: FakeHubSpot, make_connector: Callable[..., HubSpotConnector]) -> None:
    companies, owner = seed(hubspot)
    hubspot.expire_token("test-token")
    batch = [create_message(message_id=1, task_id=1, company=companies[0], owner_hubspot_id=owner)]
    results = make_connector().push(batch)
    assert outcomes(results) == {"retry": 1}
    assert "401" in (results[0].error or "") and "test-token" not in (results[0].error or "")
    assert hubspot.live("tasks") == []


def test_completion_and_updates_are_batch_updates(
        hubspot: FakeHubSpot, make_connector: Callable[..., HubSpotConnector]) -> None:
    companies, owner = seed(hubspot)
    batch = [create_message(message_id=n, task_id=n, company=companies[0], owner_hubspot_id=owner)
             for n in range(1, 4)]
    created = make_connector().push(batch)
    done = [Outbound(id=10 + n, kind="crm.complete_task", idempotency_key=f"task:{n}:complete",
                     payload={"task_id": n, "crm_id": created[n - 1].remote_id if n != 3 else None,
                              "status": "done", "completed_at": "2026-11-24T10:00:00+00:00"}, attempts=0)
            for n in range(1, 4)]
    results = make_connector().push(done)
    assert outcomes(results) == {"delivered": 3}  # task 3 had no crm_id: found by its create key
    for task in hubspot.live("tasks"):
        assert task.properties["hs_task_status"] == "COMPLETED"
    assert hubspot.count(path=r"/tasks/batch/update$") == 1


def test_unhandled_kind_is_dead(hubspot: FakeHubSpot, make_connector: Callable[..., HubSpotConnector]) -> None:
    message = Outbound(id=1, kind="notify.email", idempotency_key="x", payload={}, attempts=0)
    assert make_connector().push([message])[0].outcome == "dead"
