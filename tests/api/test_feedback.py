"""Task feedback: useful or not, with a note, by the people entitled to the task; one per person, audited."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from orchestrator.cli import main
from orchestrator.db import unit_of_work
from orchestrator.models import AuditEvent, TaskFeedback


def _feedback(world):
    with unit_of_work(world.runtime.sessions, read_only=True) as session:
        rows = session.scalars(select(TaskFeedback).order_by(TaskFeedback.id))
        return [(f.task_id, f.by, f.useful, f.note) for f in rows]


def _audited(world):
    with unit_of_work(world.runtime.sessions, read_only=True) as session:
        return [(e.actor, e.detail) for e in session.scalars(
            select(AuditEvent).where(AuditEvent.action == "task_feedback").order_by(AuditEvent.id))]


def test_the_owner_gives_feedback_and_a_second_verdict_replaces_the_first_both_audited(world):
    sams = world.ids["sams_task"]
    first = world.call("POST", f"/tasks/{sams}/feedback", "sam", json={"useful": True})
    assert first.status_code == 200, first.get_json()
    assert (first.get_json()["by"], first.get_json()["useful"], first.get_json()["note"]) == (
        "sam@acme.example", True, "")
    second = world.call("POST", f"/tasks/{sams}/feedback", "sam",
                        json={"useful": False, "note": "  the account had already churned  "})
    assert second.status_code == 200, second.get_json()
    assert _feedback(world) == [(sams, "sam@acme.example", False, "the account had already churned")]
    assert _audited(world) == [
        ("sam@acme.example", {"task_id": sams, "useful": True, "note": "", "previous": None}),
        ("sam@acme.example", {"task_id": sams, "useful": False, "note": "the account had already churned",
                              "previous": True}),
    ]


def test_the_owner_and_an_admin_key_each_give_their_own_verdict_even_on_a_closed_task(world):
    sams = world.ids["sams_task"]
    assert world.call("POST", f"/tasks/{sams}/decision", "sam", json={"outcome": "done"}).status_code == 200
    assert world.call("POST", f"/tasks/{sams}/feedback", "sam", json={"useful": False}).status_code == 200
    assert world.call("POST", f"/tasks/{sams}/feedback", "admin", json={"useful": True}).status_code == 200
    # A rep key sees its own tasks only, even a manager's: Mia's verdict on Sam's task goes through the CLI.
    assert world.call("POST", f"/tasks/{sams}/feedback", "mia", json={"useful": True}).status_code == 404
    assert _feedback(world) == [(sams, "sam@acme.example", False, ""), (sams, "apikey:revops", True, "")]


def test_a_peer_gets_404_a_leader_and_ingest_403_and_the_requester_403_nothing_stored(world):
    ritas, approval = world.ids["ritas_task"], world.ids["approval"]
    assert world.call("POST", f"/tasks/{ritas}/feedback", "sam", json={"useful": False}).status_code == 404
    assert world.call("POST", f"/tasks/{ritas}/feedback", "leader", json={"useful": False}).status_code == 403
    assert world.call("POST", f"/tasks/{ritas}/feedback", "ingest", json={"useful": False}).status_code == 403
    assert world.call("POST", f"/tasks/{ritas}/feedback", None, json={"useful": False}).status_code == 401
    with unit_of_work(world.runtime.sessions) as session:
        from orchestrator.apikeys import create_key
        from orchestrator.models import Owner
        sam = session.scalars(select(Owner).where(Owner.email == "sam@acme.example")).one()
        world.keys["sams_admin"] = create_key(session, name="sam-admin", role="admin", owner=sam,
                                              now=world.runtime.clock.now())
    refused = world.call("POST", f"/tasks/{approval}/feedback", "sams_admin", json={"useful": False})
    assert refused.status_code == 403 and "requested" in refused.get_json()["detail"]
    assert _feedback(world) == [] and _audited(world) == []


@pytest.mark.parametrize(("body", "field"), [
    ({}, "useful"),
    ({"useful": "maybe"}, "useful"),
    ({"useful": None}, "useful"),
    ({"useful": True, "note": "x" * 2001}, "note"),
    ({"useful": True, "note": 7}, "note"),
    ({"useful": True, "colour": "red"}, "colour"),
])
def test_a_malformed_feedback_body_is_a_422_naming_the_field_and_nothing_is_stored(world, body, field):
    response = world.call("POST", f"/tasks/{world.ids['sams_task']}/feedback", "sam", json=body)
    assert response.status_code == 422, response.get_json()
    assert response.mimetype == "application/problem+json"
    assert response.get_json()["field"] == field
    assert _feedback(world) == [] and _audited(world) == []


def test_the_cli_records_feedback_by_a_known_entitled_person_only(world):
    sams = world.ids["sams_task"]
    env = {"HANDOFF_DATABASE_URL": world.runtime.settings.database_url.render_as_string(hide_password=False),
           "HANDOFF_EXCEPTION_OWNER": "ops@acme.example"}
    runner = CliRunner()

    def run(*args: str):
        return runner.invoke(main, ["tasks", "feedback", str(sams), *args], env=env)

    stranger = run("--not-useful", "--by", "random.person@gmail.com")
    assert stranger.exit_code != 0 and "not a known owner" in stranger.output
    peer = run("--not-useful", "--by", "rita@acme.example")
    assert peer.exit_code != 0 and "neither the assignee" in peer.output
    assert run("--by", "sam@acme.example").exit_code == 2  # a verdict is required
    with unit_of_work(world.runtime.sessions, read_only=True) as session:
        assert session.scalar(select(func.count()).select_from(TaskFeedback)) == 0
    given = run("--not-useful", "--note", "duplicate of yesterday's", "--by", "Sam@acme.example")
    assert given.exit_code == 0, given.output
    assert given.output == f"task {sams}: not useful, by sam@acme.example\n"
    assert _feedback(world) == [(sams, "sam@acme.example", False, "duplicate of yesterday's")]
    assert run("--useful", "--by", "mia@acme.example").exit_code == 0
    assert len(_feedback(world)) == 2


def test_the_cli_refuses_by_an_inactive_owner_on_any_decision(world):
    sams = world.ids["sams_task"]
    env = {"HANDOFF_DATABASE_URL": world.runtime.settings.database_url.render_as_string(hide_password=False),
           "HANDOFF_EXCEPTION_OWNER": "ops@acme.example"}
    runner = CliRunner()
    for args in (["tasks", "ack", str(sams)], ["tasks", "decide", str(sams), "done"],
                 ["tasks", "feedback", str(sams), "--useful"]):
        refused = runner.invoke(main, [*args, "--by", "gone@acme.example"], env=env)
        assert refused.exit_code != 0 and "gone@acme.example is inactive" in refused.output, (args, refused.output)
    with unit_of_work(world.runtime.sessions, read_only=True) as session:
        from orchestrator.models import Task
        task = session.get(Task, sams)
        assert (task.status, task.acknowledged_at) == ("open", None)
        assert session.scalar(select(func.count()).select_from(TaskFeedback)) == 0
