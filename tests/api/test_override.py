"""Overriding an on-the-loop step through the API: entitled people only, inside the window, audited."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from orchestrator.db import unit_of_work
from orchestrator.models import AuditEvent, OutboxMessage, StepRun
from tests.api.journeys_setup import WELCOME, override_run


def _state(world, run_id):
    with unit_of_work(world.runtime.sessions, read_only=True) as session:
        notes = session.scalar(select(func.count()).select_from(OutboxMessage)
                               .where(OutboxMessage.kind == "crm.create_note"))
        events = [(e.actor, e.reason) for e in session.scalars(
            select(AuditEvent).where(AuditEvent.action == "overridden"))]
        return session.get(StepRun, run_id).status, notes, events


def test_the_account_owner_overrides_inside_the_window_once_audited_and_compensated(world):
    journey_id, run_id = override_run(world)
    listed = world.call("GET", f"/journeys/{journey_id}/steps?overridable=true", "sam")
    assert listed.status_code == 200, listed.get_json()
    assert [item["id"] for item in listed.get_json()["items"]] == [run_id]
    assert listed.get_json()["items"][0]["override_until"] is not None

    done = world.call("POST", f"/journeys/{journey_id}/steps/{run_id}/override", "sam",
                      json={"reason": "wrong account"})
    assert done.status_code == 200, done.get_json()
    assert (done.get_json()["status"], done.get_json()["override_until"]) == ("overridden", None)
    status, notes, events = _state(world, run_id)
    assert (status, notes) == ("overridden", 1)
    assert len(events) == 1 and events[0][0] == "sam@acme.example" and "wrong account" in events[0][1]

    again = world.call("POST", f"/journeys/{journey_id}/steps/{run_id}/override", "sam", json={})
    assert (again.status_code, again.get_json()["type"]) == (409, "/problems/conflict")
    assert _state(world, run_id) == (status, notes, events)
    assert world.call("GET", f"/journeys/{journey_id}/steps?overridable=true", "sam").get_json()["items"] == []


def test_others_are_refused_and_nothing_changes(world):
    journey_id, run_id = override_run(world)
    path = f"/journeys/{journey_id}/steps/{run_id}/override"
    assert world.call("POST", path, "rita", json={}).status_code == 404  # not her account: not even there
    assert world.call("GET", f"/journeys/{journey_id}/steps", "rita").status_code == 404
    assert world.call("POST", path, "leader", json={}).status_code == 403
    assert world.call("POST", path, "ingest", json={}).status_code == 403
    assert world.call("POST", path, None, json={}).status_code == 401
    # A run id from another journey is not found under this one.
    other = world.call("POST", f"/journeys/{world.ids['journey']}/steps/{run_id}/override", "admin", json={})
    assert other.status_code == 404
    assert _state(world, run_id) == ("done", 0, [])


def test_an_override_after_the_window_closed_is_409_and_changes_nothing(world):
    journey_id, run_id = override_run(world)
    world.runtime.clock.advance(timedelta(hours=5))  # type: ignore[attr-defined]
    late = world.call("POST", f"/journeys/{journey_id}/steps/{run_id}/override", "admin", json={})
    assert late.status_code == 409 and "no open override window" in late.get_json()["detail"]
    assert _state(world, run_id) == ("done", 0, [])


def test_an_admin_key_overrides_as_itself(world):
    journey_id, run_id = override_run(world)
    done = world.call("POST", f"/journeys/{journey_id}/steps/{run_id}/override", "admin", json={})
    assert done.status_code == 200, done.get_json()
    assert _state(world, run_id)[2][0][0] == "apikey:revops"


@pytest.mark.parametrize(("body", "field"), [
    ({"reason": "x" * 1001}, "reason"),
    ({"reason": 5}, "reason"),
    ({"because": "typo"}, "because"),
])
def test_a_malformed_override_body_is_a_422_naming_the_field_and_nothing_changes(world, body, field):
    journey_id, run_id = override_run(world)
    response = world.call("POST", f"/journeys/{journey_id}/steps/{run_id}/override", "sam", json=body)
    assert (response.status_code, response.get_json()["field"]) == (422, field)
    assert _state(world, run_id) == ("done", 0, [])


def test_overriding_a_held_customer_email_cancels_it_before_it_leaves(world):
    journey_id, run_id = override_run(world, text=WELCOME, signal_type="expansion.signal")
    with unit_of_work(world.runtime.sessions, read_only=True) as session:
        (held,) = session.scalars(select(OutboxMessage).where(OutboxMessage.kind == "customer.email")).all()
        assert held.status == "pending" and held.next_attempt_at > world.runtime.clock.now()
    done = world.call("POST", f"/journeys/{journey_id}/steps/{run_id}/override", "sam", json={"reason": "too soon"})
    assert done.status_code == 200, done.get_json()
    with unit_of_work(world.runtime.sessions, read_only=True) as session:
        assert session.get(OutboxMessage, held.id).status == "cancelled"
        assert session.get(StepRun, run_id).status == "overridden"
