"""Publishing a review with an edited draft: the edit goes out, the audit trail keeps both."""

from __future__ import annotations

from datetime import timedelta

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from orchestrator.cli import main
from orchestrator.db import unit_of_work
from orchestrator.models import AuditEvent, OutboxMessage, Task
from orchestrator.reports.catalog import run_report
from tests.api.journeys_setup import REVIEW, review_task, run_playbook


def _published(world):
    with unit_of_work(world.runtime.sessions, read_only=True) as session:
        events = session.scalars(select(AuditEvent).where(AuditEvent.action == "published")).all()
        emails = session.scalars(select(OutboxMessage).where(OutboxMessage.kind == "customer.email")).all()
        return [(e.actor, e.detail) for e in events], [m.payload["args"]["body"] for m in emails]


def test_an_edited_draft_is_what_goes_out_and_the_trail_keeps_both(world):
    task_id = review_task(world)
    edited = "Hi Sam's Co, could we book 20 minutes on Thursday?\n\nBest, Sam"
    response = world.call("POST", f"/tasks/{task_id}/decision", "sam", json={"outcome": "published", "text": edited})
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["outcome"] == "published"
    events, bodies = _published(world)
    assert events == [("sam@acme.example", {"task_id": task_id, "edited": True,
                                            "draft": "Hi Sam's Co, shall we book 20 minutes?",
                                            "published": edited})]
    assert bodies == [edited]
    with unit_of_work(world.runtime.sessions, read_only=True) as session:
        assert session.get(Task, task_id).draft == "Hi Sam's Co, shall we book 20 minutes?"  # the draft stays


def test_publishing_without_text_sends_the_draft_unedited(world):
    task_id = review_task(world)
    assert world.call("POST", f"/tasks/{task_id}/decision", "sam", json={"outcome": "published"}).status_code == 200
    events, bodies = _published(world)
    draft = "Hi Sam's Co, shall we book 20 minutes?"
    assert events == [("sam@acme.example", {"task_id": task_id, "edited": False, "draft": draft, "published": draft})]
    assert bodies == [draft]


@pytest.mark.parametrize(("body", "field"), [
    ({"outcome": "published", "text": ""}, "text"),
    ({"outcome": "published", "text": "   \n"}, "text"),
    ({"outcome": "published", "text": "a\x00b"}, "text"),
    ({"outcome": "published", "text": 42}, "text"),
    ({"outcome": "rejected", "text": "an edit on a rejection means nothing"}, "text"),
    ({"outcome": "published", "text": "x" * 100_001}, "text"),
])
def test_a_bad_edited_text_is_a_422_naming_text_and_nothing_is_decided(world, body, field):
    task_id = review_task(world)
    response = world.call("POST", f"/tasks/{task_id}/decision", "sam", json=body)
    assert response.status_code == 422, response.get_json()
    assert response.get_json()["field"] == field
    with unit_of_work(world.runtime.sessions, read_only=True) as session:
        assert session.get(Task, task_id).status == "open"
    assert _published(world) == ([], [])


def test_text_on_an_action_task_is_refused(world):
    sams = world.ids["sams_task"]
    response = world.call("POST", f"/tasks/{sams}/decision", "sam", json={"outcome": "done", "text": "hello"})
    assert (response.status_code, response.get_json()["field"]) == (422, "text")
    with unit_of_work(world.runtime.sessions, read_only=True) as session:
        assert session.get(Task, sams).status == "open"


def test_the_cli_publishes_a_file_or_stdin_and_refuses_a_file_that_is_not_text(world, tmp_path):
    task_id = review_task(world)
    env = {"HANDOFF_DATABASE_URL": world.runtime.settings.database_url.render_as_string(hide_password=False),
           "HANDOFF_EXCEPTION_OWNER": "ops@acme.example"}
    runner = CliRunner()
    binary = tmp_path / "draft.bin"
    binary.write_bytes(b"\xff\xfe\x00")
    refused = runner.invoke(main, ["tasks", "decide", str(task_id), "published", "--by", "sam@acme.example",
                                   "--text", str(binary)], env=env)
    assert refused.exit_code == 2 and "not UTF-8" in refused.output
    missing = runner.invoke(main, ["tasks", "decide", str(task_id), "published", "--by", "sam@acme.example",
                                   "--text", str(tmp_path / "nope.txt")], env=env)
    assert missing.exit_code == 2 and "cannot read" in missing.output
    assert _published(world) == ([], [])
    given = runner.invoke(main, ["tasks", "decide", str(task_id), "published", "--by", "sam@acme.example",
                                 "--text", "-"], env=env, input="Hi team, Thursday works?\n")
    assert given.exit_code == 0, given.output
    events, bodies = _published(world)
    assert [d["edited"] for _, d in events] == [True]
    assert bodies == ["Hi team, Thursday works?\n"]


def test_the_noise_report_counts_published_reviews_and_how_many_drafts_were_edited(world):
    run_playbook(world, REVIEW, "product.usage", "own")
    run_playbook(world, REVIEW, "product.usage", "other")
    with unit_of_work(world.runtime.sessions, read_only=True) as session:
        reviews = {t.account_id: t.id for t in session.scalars(select(Task).where(Task.kind == "review"))}
    edited_task, plain_task = reviews[world.ids["own"]], reviews[world.ids["other"]]
    assert world.call("POST", f"/tasks/{edited_task}/decision", "sam",
                      json={"outcome": "published", "text": "Hi, Thursday at 10?"}).status_code == 200
    # Rita sends the draft back as it stands: published, but not an edit.
    as_drafted = {"outcome": "published", "text": "Hi Rita's Co, shall we book 20 minutes?"}
    assert world.call("POST", f"/tasks/{plain_task}/decision", "rita", json=as_drafted).status_code == 200
    now = world.runtime.clock.now()
    rows = run_report("noise", sessions=world.runtime.sessions, since=now - timedelta(days=1),
                      until=now + timedelta(days=1))
    [review] = [row for row in rows if row["step"] == "rescue-email"]
    assert (review["tasks"], review["published"], review["edited"]) == (2, 2, 1)
    assert all((row["published"], row["edited"]) == (0, 0) for row in rows if row["step"] != "rescue-email")
    by_playbook = run_report("noise", sessions=world.runtime.sessions, since=now - timedelta(days=1),
                             until=now + timedelta(days=1), by="playbook")
    [rescue] = [row for row in by_playbook if row["playbook"] == "rescue"]
    assert (rescue["published"], rescue["edited"]) == (2, 1)
    until = (now + timedelta(days=1)).isoformat().replace("+00:00", "Z")
    api = world.call("GET", f"/reports/noise?until={until}", "leader")
    assert api.status_code == 200, api.get_json()
    [over_http] = [row for row in api.get_json()["rows"] if row["step"] == "rescue-email"]
    assert (over_http["published"], over_http["edited"]) == (2, 1)
