"""Task routes beyond ack and decide: wait on the customer and resume; the SLA report to leaders only."""

from __future__ import annotations

import csv
import io
import threading
from datetime import timedelta

from sqlalchemy import select, update

from orchestrator.db import unit_of_work
from orchestrator.models import AuditEvent, SlaEvent, Task
from tests.conftest import T0


def test_waiting_stops_the_clock_with_a_reason_and_resuming_moves_the_deadline(world):
    sams = world.ids["sams_task"]
    with unit_of_work(world.runtime.sessions, read_only=True) as session:
        due_before = session.get(Task, sams).due_at
    waiting = world.call("POST", f"/tasks/{sams}/wait", "sam", json={"reason": "customer is on holiday"})
    assert waiting.status_code == 200, waiting.get_json()
    assert (waiting.get_json()["sla_state"], waiting.get_json()["paused_at"] is not None) == ("paused", True)
    assert world.call("POST", f"/tasks/{sams}/wait", "sam", json={"reason": "again"}).status_code == 409
    world.runtime.clock.advance(timedelta(hours=2))  # type: ignore[attr-defined]
    resumed = world.call("POST", f"/tasks/{sams}/resume", "sam")
    assert resumed.status_code == 200, resumed.get_json()
    assert resumed.get_json()["paused_at"] is None
    assert world.call("POST", f"/tasks/{sams}/resume", "sam").status_code == 409
    with unit_of_work(world.runtime.sessions, read_only=True) as session:
        task = session.get(Task, sams)
        assert task.due_at > due_before and task.paused_seconds > 0
        kinds = [e.kind for e in session.scalars(select(SlaEvent).where(SlaEvent.task_id == sams))]
        assert kinds == ["paused", "resumed"]
        paused = session.scalars(select(AuditEvent).where(AuditEvent.action == "task_paused")).one()
        assert paused.actor == "sam@acme.example" and "customer is on holiday" in paused.reason


def test_a_wait_without_a_reason_is_refused_naming_the_field_and_nothing_changes(world):
    sams = world.ids["sams_task"]
    response = world.call("POST", f"/tasks/{sams}/wait", "sam", json={"reason": ""})
    assert (response.status_code, response.get_json()["field"]) == (422, "reason")
    with unit_of_work(world.runtime.sessions, read_only=True) as session:
        assert session.get(Task, sams).paused_at is None


def test_a_rep_cannot_pause_another_reps_task_and_a_leader_cannot_pause_at_all(world):
    ritas = world.ids["ritas_task"]
    assert world.call("POST", f"/tasks/{ritas}/wait", "sam", json={"reason": "x"}).status_code == 404
    assert world.call("POST", f"/tasks/{ritas}/wait", "leader", json={"reason": "x"}).status_code == 403
    with unit_of_work(world.runtime.sessions, read_only=True) as session:
        assert session.get(Task, ritas).paused_at is None


def test_two_concurrent_waits_on_one_task_one_wins_the_other_gets_409(world):
    sams = world.ids["sams_task"]
    barrier, codes = threading.Barrier(2), []
    clients = [world.client.application.test_client() for _ in range(2)]

    def pause(client, key):
        barrier.wait(10)
        response = client.post(f"/tasks/{sams}/wait", json={"reason": "waiting on the customer"},
                               headers={"Authorization": f"Bearer {world.keys[key]}"})
        codes.append(response.status_code)

    threads = [threading.Thread(target=pause, args=pair) for pair in zip(clients, ["sam", "admin"], strict=True)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(codes) == [200, 409]
    with unit_of_work(world.runtime.sessions, read_only=True) as session:
        assert len(session.scalars(select(AuditEvent).where(AuditEvent.action == "task_paused")).all()) == 1


def test_the_sla_report_as_json_and_csv_counts_the_tasks(world):
    with unit_of_work(world.runtime.sessions) as session:  # created on the app's clock, inside the period
        session.execute(update(Task).values(created_at=T0))
    report = world.call("GET", "/reports/sla?by=owner", "leader")
    assert report.status_code == 200, report.get_json()
    rows = {row["group"]: row["tasks"] for row in report.get_json()["rows"]}
    assert rows == {"mia@acme.example": 1, "sam@acme.example": 1, "rita@acme.example": 1}
    as_csv = world.call("GET", "/reports/sla?format=csv", "admin")
    assert as_csv.mimetype == "text/csv"
    parsed = {row["group"]: int(row["tasks"]) for row in csv.DictReader(io.StringIO(as_csv.get_data(as_text=True)))}
    assert parsed == rows
    bad = world.call("GET", "/reports/sla?since=yesterday", "admin")
    assert (bad.status_code, bad.get_json()["field"]) == (422, "since")
    assert world.call("GET", "/reports/sla", "sam").status_code == 403


def test_tasks_filter_by_sla_state_as_of_now(world):
    ids = world.ids
    with unit_of_work(world.runtime.sessions) as session:
        now = world.runtime.clock.now()
        session.get(Task, ids["sams_task"]).due_at = now - timedelta(minutes=1)  # breached, not yet swept
        session.get(Task, ids["ritas_task"]).sla_state = "at_risk"
    assert world.call("POST", f"/tasks/{ids['approval']}/wait", "mia", json={"reason": "customer"}).status_code == 200

    def listed(state, key="admin"):
        response = world.call("GET", f"/tasks?sla_state={state}", key)
        assert response.status_code == 200, response.get_json()
        return {item["id"] for item in response.get_json()["items"]}

    assert listed("breached") == {ids["sams_task"]}
    assert listed("at_risk") == {ids["ritas_task"]}
    assert listed("paused") == {ids["approval"]}
    assert listed("on_track") == set()
    assert listed("at_risk", key="sam") == set()  # a rep's filter stays within their own tasks
    assert world.call("GET", "/tasks?sla_state=late", "admin").get_json()["field"] == "sla_state"


def test_an_admin_reassigns_an_open_task_audited_and_the_crm_hears_of_it(world):
    from orchestrator.models import OutboxMessage
    sams = world.ids["sams_task"]
    body = {"owner_email": "rita@acme.example", "reason": "Sam is out"}
    assert world.call("POST", f"/tasks/{sams}/reassign", "sam", json=body).status_code == 403  # not his manager
    moved = world.call("POST", f"/tasks/{sams}/reassign", "admin", json=body)
    assert moved.status_code == 200, moved.get_json()
    again = world.call("POST", f"/tasks/{sams}/reassign", "admin", json=body)
    assert again.status_code == 409
    gone = world.call("POST", f"/tasks/{sams}/reassign", "admin", json={"owner_email": "gone@acme.example",
                                                                          "reason": "x"})
    assert gone.status_code == 403
    with unit_of_work(world.runtime.sessions, read_only=True) as session:
        task = session.get(Task, sams)
        assert task.owner.email == "rita@acme.example"
        event = session.scalars(select(AuditEvent).where(AuditEvent.action == "task_reassigned")).one()
        assert (event.actor, event.detail["from"], event.detail["to"]) == (
            "apikey:revops", "sam@acme.example", "rita@acme.example")
        updates = session.scalars(select(OutboxMessage).where(OutboxMessage.kind == "crm.update_task")).all()
        assert [m.payload["owner_email"] for m in updates] == ["rita@acme.example"]
    assert world.call("GET", f"/tasks/{sams}", "sam").status_code == 404  # no longer his


def _at_once(world, *requests):
    """Send each (method, path, key, kwargs) from its own thread and client at the same moment; the codes, in order."""
    barrier, codes = threading.Barrier(len(requests)), [0] * len(requests)
    clients = [world.client.application.test_client() for _ in requests]

    def send(n, client, method, path, key, kwargs):
        headers = {"Authorization": f"Bearer {world.keys[key]}", **kwargs.pop("headers", {})}
        barrier.wait(10)
        codes[n] = client.open(path, method=method, headers=headers, **kwargs).status_code

    threads = [threading.Thread(target=send, args=(n, client, *request))
               for n, (client, request) in enumerate(zip(clients, requests, strict=True))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return codes


def _events(world, action):
    with unit_of_work(world.runtime.sessions, read_only=True) as session:
        return session.scalars(select(AuditEvent).where(AuditEvent.action == action)).all()


def test_two_concurrent_reassignments_to_one_person_one_wins_the_other_gets_409(world):
    sams = world.ids["sams_task"]
    body = {"json": {"owner_email": "rita@acme.example", "reason": "cover"}}
    codes = _at_once(world, ("POST", f"/tasks/{sams}/reassign", "admin", dict(body)),
                     ("POST", f"/tasks/{sams}/reassign", "admin", dict(body)))
    assert sorted(codes) == [200, 409]
    assert len(_events(world, "task_reassigned")) == 1


def test_two_concurrent_changes_sent_with_one_etag_one_wins_the_other_gets_412(world):
    sams = world.ids["sams_task"]
    tag = {"If-Match": world.call("GET", f"/tasks/{sams}", "admin").headers["ETag"]}
    codes = _at_once(
        world,
        ("POST", f"/tasks/{sams}/reassign", "admin", {"json": {"owner_email": "rita@acme.example", "reason": "a"},
                                                      "headers": dict(tag)}),
        ("POST", f"/tasks/{sams}/reassign", "admin", {"json": {"owner_email": "mia@acme.example", "reason": "b"},
                                                      "headers": dict(tag)}))
    assert sorted(codes) == [200, 412]
    (moved,) = _events(world, "task_reassigned")
    with unit_of_work(world.runtime.sessions, read_only=True) as session:
        assert session.get(Task, sams).owner.email == moved.detail["to"]


def test_a_decision_and_a_reassignment_sent_with_one_etag_at_once_only_one_happens(world):
    sams = world.ids["sams_task"]
    tag = {"If-Match": world.call("GET", f"/tasks/{sams}", "admin").headers["ETag"]}
    codes = _at_once(
        world,
        ("POST", f"/tasks/{sams}/decision", "sam", {"json": {"outcome": "done"}, "headers": dict(tag)}),
        ("POST", f"/tasks/{sams}/reassign", "admin", {"json": {"owner_email": "rita@acme.example", "reason": "a"},
                                                      "headers": dict(tag)}))
    completed, reassigned = len(_events(world, "task_completed")), len(_events(world, "task_reassigned"))
    assert completed + reassigned == 1
    decision, reassign = codes
    if completed:
        assert (decision, reassign) == (200, 412)
    else:  # the task went to rita first: for sam it is no longer his to see (404), whatever his ETag says
        assert (reassign, decision) in ((200, 404), (200, 412))
