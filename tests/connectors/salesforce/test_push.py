"""Writing Tasks back to the fake org: upsert on the external-id field, exactly once through faults."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from connectors.base import AccountRef, Outbound, TaskRef
from tests.fakes.salesforce import FakeSalesforce


def _task_message(number: int, *, account_sf_id: str, owner_sf_id: str | None, owner_email: str = "rep0@acme.example",
                  **payload: Any) -> Outbound:
    body = {"task_id": number, "subject": f"Call about renewal {number}", "description": f"Brief {number}\nWhy: ...",
            "owner_email": owner_email, "due_date": "2026-12-04", "priority": "high", "status": "open",
            **payload}
    return Outbound(id=number, kind="crm.create_task", idempotency_key=f"task:{number}:create", payload=body,
                    attempts=0, account=AccountRef(id=1, name="Acme", domain="acme.example",
                                                   external_ids={"salesforce": account_sf_id}),
                    task=TaskRef(id=number, title=body["subject"], crm_id=None, crm_source=None,
                                 owner_email=owner_email,
                                 owner_external_ids={"salesforce": owner_sf_id} if owner_sf_id else {}))


@pytest.fixture
def sf_account(fake_sf: FakeSalesforce, sf_users: list[dict[str, Any]]) -> dict[str, Any]:
    return fake_sf.org.insert("Account", {"Name": "Acme", "OwnerId": sf_users[1]["Id"]})


def _tasks(fake_sf: FakeSalesforce) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for task in fake_sf.org.find("Task"):
        found.setdefault(task["Handoff_Key__c"], []).append(task)
    return found


def test_creates_tasks_in_one_collections_call_per_200(fake_sf, sf_users, sf_account, make_connector) -> None:
    messages = [_task_message(n, account_sf_id=sf_account["Id"], owner_sf_id=sf_users[1]["Id"]) for n in range(1, 201)]
    connector = make_connector()
    results = connector.push(messages)
    assert [r.outcome for r in results] == ["delivered"] * 200
    assert fake_sf.org.api_calls(method="PATCH", path=r"/composite/sobjects/Task/Handoff_Key__c$") == 1
    tasks = _tasks(fake_sf)
    assert len(tasks) == 200 and all(len(copies) == 1 for copies in tasks.values())
    first = tasks["task:1:create"][0]
    assert first["Description"] == "Brief 1\nWhy: ..." and first["Priority"] == "High"
    assert first["Status"] == "Not Started" and str(first["ActivityDate"]) == "2026-12-04"
    assert first["WhatId"] == sf_account["Id"] and first["OwnerId"] == sf_users[1]["Id"]
    assert results[0].remote_id == first["Id"]


def test_a_dropped_connection_after_the_commit_does_not_double_the_task(fake_sf, sf_users, sf_account,
                                                                        make_connector) -> None:
    fake_sf.org.inject("drop_after", method="PATCH", path="/composite/sobjects/Task/")
    messages = [_task_message(n, account_sf_id=sf_account["Id"], owner_sf_id=sf_users[1]["Id"]) for n in (1, 2)]
    results = make_connector().push(messages)
    assert [r.outcome for r in results] == ["delivered", "delivered"]
    statuses = [entry.status for entry in fake_sf.org.log if "/composite/" in entry.path]
    assert statuses == [0, 200]  # the first answer was lost after the org committed; the retry upserted
    tasks = _tasks(fake_sf)
    assert sorted(tasks) == ["task:1:create", "task:2:create"] and all(len(v) == 1 for v in tasks.values())
    assert results[0].remote_id == tasks["task:1:create"][0]["Id"]


def test_a_lost_answer_beyond_the_retries_is_retried_later_still_once(fake_sf, sf_users, sf_account,
                                                                      make_connector) -> None:
    fake_sf.org.inject("drop_after", times=4, method="PATCH")
    message = _task_message(7, account_sf_id=sf_account["Id"], owner_sf_id=sf_users[1]["Id"])
    connector = make_connector(retry_attempts=4)
    (first,) = connector.push([message])
    assert first.outcome == "retry" and "ConnectionError" in (first.error or "")
    (second,) = connector.push([message])  # the outbox's next attempt
    assert second.outcome == "delivered"
    assert len(_tasks(fake_sf)["task:7:create"]) == 1


def test_a_5xx_storm_is_ridden_out_with_backoff(fake_sf, sf_users, sf_account, make_connector) -> None:
    fake_sf.org.inject("status", times=3, status=503, code="SERVER_UNAVAILABLE")
    results = make_connector(retry_attempts=5).push(
        [_task_message(1, account_sf_id=sf_account["Id"], owner_sf_id=sf_users[1]["Id"])])
    assert results[0].outcome == "delivered"
    assert [entry.status for entry in fake_sf.org.log][-4:] == [503, 503, 503, 200]


def test_an_expired_session_is_refreshed_once_and_the_write_goes_through(fake_sf, sf_users, sf_account,
                                                                         make_connector) -> None:
    connector = make_connector()
    connector.push([_task_message(1, account_sf_id=sf_account["Id"], owner_sf_id=sf_users[1]["Id"])])
    fake_sf.org.expire_sessions()
    results = connector.push([_task_message(2, account_sf_id=sf_account["Id"], owner_sf_id=sf_users[1]["Id"])])
    assert results[0].outcome == "delivered"
    assert 401 in [entry.status for entry in fake_sf.org.log]
    assert len(_tasks(fake_sf)) == 2


def test_an_expired_access_token_waits_instead_of_failing_the_items(fake_sf, sf_users, sf_account,
                                                                    make_connector) -> None:
    connector = make_connector(auth="access_token", access_token=fake_sf.access_token(), instance_url=fake_sf.url)
    fake_sf.org.expire_sessions()
    (result,) = connector.push([_task_message(1, account_sf_id=sf_account["Id"], owner_sf_id=sf_users[1]["Id"])])
    assert result.outcome == "retry" and "cannot be refreshed" in (result.error or "")
    assert not _tasks(fake_sf)


def test_request_limit_exceeded_backs_off_until_the_budget_resets(fake_sf, sf_users, sf_account,
                                                                  make_connector) -> None:
    now = [datetime(2026, 12, 2, 9, 0, tzinfo=UTC)]
    connector = make_connector(clock=lambda: now[0], limit_backoff_seconds=600)
    fake_sf.org.api_limit = fake_sf.org.api_used  # the org's allocation is spent by someone else
    (result,) = connector.push([_task_message(1, account_sf_id=sf_account["Id"], owner_sf_id=sf_users[1]["Id"])])
    assert result.outcome == "retry" and result.retry_after == 600
    calls = len(fake_sf.org.log)
    (again,) = connector.push([_task_message(1, account_sf_id=sf_account["Id"], owner_sf_id=sf_users[1]["Id"])])
    assert again.outcome == "retry" and len(fake_sf.org.log) == calls  # not even asked: still backing off
    fake_sf.org.api_limit = 15000
    now[0] += timedelta(seconds=601)
    (done,) = connector.push([_task_message(1, account_sf_id=sf_account["Id"], owner_sf_id=sf_users[1]["Id"])])
    assert done.outcome == "delivered" and len(_tasks(fake_sf)["task:1:create"]) == 1


def test_the_client_side_budget_stops_short_of_the_org_allocation(fake_sf, sf_users, sf_account,
                                                                  make_connector) -> None:
    now = [datetime(2026, 12, 2, 9, 0, tzinfo=UTC)]
    connector = make_connector(api_budget=0.5, clock=lambda: now[0], limit_backoff_seconds=60)
    fake_sf.org.api_limit = 100
    fake_sf.org.api_used = 49
    assert connector.push([_task_message(1, account_sf_id=sf_account["Id"],
                                         owner_sf_id=sf_users[1]["Id"])])[0].outcome == "delivered"
    assert fake_sf.org.api_used == 50  # Sforce-Limit-Info told the client: 50/100
    (held,) = connector.push([_task_message(2, account_sf_id=sf_account["Id"], owner_sf_id=sf_users[1]["Id"])])
    assert held.outcome == "retry" and held.error == "salesforce API budget spent"
    assert fake_sf.org.api_used == 50 and "task:2:create" not in _tasks(fake_sf)
    fake_sf.org.api_used = 10  # the org's rolling 24 hours moved on
    now[0] += timedelta(seconds=61)
    assert connector.push([_task_message(2, account_sf_id=sf_account["Id"],
                                         owner_sf_id=sf_users[1]["Id"])])[0].outcome == "delivered"


def test_a_picklist_value_the_org_does_not_have_fails_that_item_only(fake_sf, sf_users, sf_account,
                                                                     make_connector) -> None:
    connector = make_connector(task_priority={"high": "Critical"})
    results = connector.push([
        _task_message(1, account_sf_id=sf_account["Id"], owner_sf_id=sf_users[1]["Id"], priority="high"),
        _task_message(2, account_sf_id=sf_account["Id"], owner_sf_id=sf_users[1]["Id"], priority="low")])
    assert [r.outcome for r in results] == ["dead", "delivered"]
    assert results[0].error == "salesforce INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST on Priority"
    assert "Critical" not in results[0].error  # no values in error texts
    assert any("task_priority.high: 'Critical' is not a Task Priority value" in p for p in connector.check())


def test_owner_found_by_email_and_an_inactive_user_is_never_assigned(fake_sf, sf_users, sf_account,
                                                                     make_connector) -> None:
    fake_sf.org.update("User", sf_users[2]["Id"], {"IsActive": False})
    results = make_connector().push([
        _task_message(1, account_sf_id=sf_account["Id"], owner_sf_id=None, owner_email="rep0@acme.example"),
        _task_message(2, account_sf_id=sf_account["Id"], owner_sf_id=None, owner_email="rep1@acme.example")])
    assert [r.outcome for r in results] == ["delivered", "dead"]
    assert results[1].error == "the owner has no active Salesforce user"
    assert _tasks(fake_sf)["task:1:create"][0]["OwnerId"] == sf_users[1]["Id"]


def test_completion_and_notes_update_the_same_task(fake_sf, sf_users, sf_account, make_connector) -> None:
    connector = make_connector()
    (created,) = connector.push([_task_message(1, account_sf_id=sf_account["Id"], owner_sf_id=sf_users[1]["Id"])])
    account = AccountRef(id=1, name="Acme", domain=None, external_ids={"salesforce": sf_account["Id"]})
    complete = Outbound(id=2, kind="crm.complete_task", idempotency_key="task:1:complete", attempts=0,
                        payload={"task_id": 1, "status": "done", "outcome": "done"}, account=account,
                        task=TaskRef(id=1, title="t", crm_id=None, crm_source=None, owner_email=None))
    escalate = Outbound(id=3, kind="crm.update_task", idempotency_key="task:1:escalate:1", attempts=0,
                        payload={"priority": "urgent", "crm_id": created.remote_id}, account=account, task=None)
    note = Outbound(id=4, kind="crm.create_note", idempotency_key="step-run:9:main", attempts=0,
                    payload={"args": {"body": "Spoke to the champion."}}, account=account)
    field = Outbound(id=5, kind="crm.update_field", idempotency_key="step-run:10:main", attempts=0,
                     payload={"args": {"field": "health", "value": 42}}, account=account)
    results = connector.push([complete, escalate, note, field])
    assert [r.outcome for r in results] == ["delivered"] * 4
    task = fake_sf.org.find("Task", Id=created.remote_id)[0]
    assert task["Status"] == "Completed" and task["IsClosed"] is True
    assert fake_sf.org.find("Task", Handoff_Key__c="step-run:9:main")[0]["Description"] == "Spoke to the champion."
    assert fake_sf.org.find("Account", Id=sf_account["Id"])[0]["Health_Score__c"] == 42.0
    assert len(_tasks(fake_sf)) == 2


def test_a_follow_up_before_the_task_exists_waits(fake_sf, sf_users, sf_account, make_connector) -> None:
    complete = Outbound(id=2, kind="crm.complete_task", idempotency_key="task:5:complete", attempts=0,
                        payload={"task_id": 5, "status": "done"},
                        account=AccountRef(id=1, name="Acme", domain=None,
                                           external_ids={"salesforce": sf_account["Id"]}))
    (result,) = make_connector().push([complete])
    assert result.outcome == "retry"
    assert not fake_sf.org.find("Task")


def test_check_reports_mapping_drift_and_a_missing_external_id_field(fake_sf, make_connector) -> None:
    assert make_connector().check() == []
    problems = make_connector(fields={"account": {"health": "Health__c"}}, task_external_id_field="Nope__c").check()
    assert "fields.account.health: Account has no field Health__c" in problems
    assert "task_external_id_field: Task has no field Nope__c" in problems


def test_check_names_a_task_picklist_value_the_org_does_not_have(fake_sf, make_connector) -> None:
    problems = make_connector(task_status={"open": "Open"}, task_priority={"urgent": "Critical"},
                              completed_statuses={"Approved": "approved"}).check()
    assert [p.split(":")[0] for p in problems] == ["task_status.open", "task_priority.urgent",
                                                   "completed_statuses.Approved"]
    assert problems[0].startswith("task_status.open: 'Open' is not a Task Status value in this org (has: ")
    assert "Not Started" in problems[0]


def test_bad_credentials_are_one_line_and_hold_the_items(fake_sf, sf_users, sf_account, make_connector) -> None:
    connector = make_connector(refresh_token="5Aep-wrong")
    (result,) = connector.push([_task_message(1, account_sf_id=sf_account["Id"], owner_sf_id=sf_users[1]["Id"])])
    assert result.outcome == "retry" and result.error == "salesforce login failed (invalid_grant)"
    assert connector.check() == ["salesforce login failed (invalid_grant)"]


def test_whoid_is_the_payload_s_salesforce_contact_and_nothing_else(fake_sf, sf_users, sf_account,
                                                                     make_connector) -> None:
    contact = fake_sf.org.insert("Contact", {"AccountId": sf_account["Id"], "LastName": "Champion"})
    owner = sf_users[1]["Id"]
    messages = [
        _task_message(1, account_sf_id=sf_account["Id"], owner_sf_id=owner,
                      contact_crm_ref={"salesforce": contact["Id"], "hubspot": "501"}),
        _task_message(2, account_sf_id=sf_account["Id"], owner_sf_id=owner, contact_crm_ref={"hubspot": "501"}),
        _task_message(3, account_sf_id=sf_account["Id"], owner_sf_id=owner,
                      contact_crm_ref={"salesforce": "00Q000000000001AAA"}),  # a Lead, not a Contact
    ]
    assert [r.outcome for r in make_connector().push(messages)] == ["delivered"] * 3
    tasks = _tasks(fake_sf)
    assert tasks["task:1:create"][0]["WhoId"] == contact["Id"]
    assert not tasks["task:2:create"][0].get("WhoId") and not tasks["task:3:create"][0].get("WhoId")
