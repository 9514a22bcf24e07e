"""Batch limits, the due_before filter and the account timeline ("which version, which rule, why") over HTTP."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select

from orchestrator.db import unit_of_work
from orchestrator.models import Signal, Task
from tests.api.journeys_setup import override_run, review_task

SIGNAL = {"type": "product.usage", "account": {"domain": "sams.example"}, "occurred_at": "2026-11-23T14:00:00Z",
          "payload": {"active_users": 3}}


def _api_signals(world) -> int:
    with unit_of_work(world.runtime.sessions, read_only=True) as session:
        return session.scalar(select(func.count()).select_from(Signal).where(Signal.source == "api"))


def test_a_batch_of_1000_is_taken_and_1001_is_refused_whole(world):
    batch = [{**SIGNAL, "dedupe_key": f"k{n}"} for n in range(1001)]
    refused = world.call("POST", "/signals", "ingest", json=batch)
    assert refused.status_code == 413
    assert refused.mimetype == "application/problem+json"
    assert "at most 1000" in refused.get_json()["detail"]
    assert _api_signals(world) == 0  # nothing of a refused batch is kept
    taken = world.call("POST", "/signals", "ingest", json=batch[:1000])
    assert taken.status_code == 200, taken.get_json()
    assert (taken.get_json()["accepted"], len(taken.get_json()["results"])) == (1000, 1000)
    assert _api_signals(world) == 1000


def test_tasks_filter_by_due_before(world):
    ids = world.ids
    with unit_of_work(world.runtime.sessions) as session:
        soon = session.get(Task, ids["sams_task"]).due_at
        session.get(Task, ids["ritas_task"]).due_at = soon + timedelta(days=3)
    cut = (soon + timedelta(hours=1)).isoformat().replace("+00:00", "Z")

    def listed(query: str, key: str = "admin") -> set[int]:
        response = world.call("GET", f"/tasks?{query}", key)
        assert response.status_code == 200, response.get_json()
        return {item["id"] for item in response.get_json()["items"]}

    assert listed(f"due_before={cut}") == {ids["sams_task"], ids["approval"]}
    assert listed(f"due_before={cut}", key="rita") == set()  # her only task is due later
    assert ids["ritas_task"] in listed("due_before=2030-01-01T00:00:00Z")
    naive = world.call("GET", "/tasks?due_before=2026-11-24T00:00:00", "admin")
    assert (naive.status_code, naive.get_json()["field"]) == (422, "due_before")


def test_the_timeline_says_which_playbook_version_which_rule_and_why_in_one_call(world):
    review_task(world)
    override_run(world)
    response = world.call("GET", f"/accounts/{world.ids['own']}/timeline?limit=500", "sam")
    assert response.status_code == 200, response.get_json()
    items = response.get_json()["items"]
    assert all(item["reason"] and item["rule"] for item in items), items
    seen = {(i["action"], i["playbook_id"], i["playbook_version"], i["step_id"], i["rule"]) for i in items}
    # A signal, an enrollment, a task and an automated action, each with its version, rule and reason.
    assert ("signal_received", None, None, None, "intake") in seen
    assert ("enrolled", "rescue", 1, None, "enroll.on: product.usage") in seen
    assert ("task_created", "rescue", 1, "rescue-email", "rescue/rescue-email") in seen
    flag = [i for i in items if i["playbook_id"] == "flag" and i["step_id"] == "flag-health"]
    assert flag and all(i["playbook_version"] == 1 for i in flag), items
    task = next(i for i in items if i["action"] == "task_created")
    assert "review task for Sam Rep <sam@acme.example>" in task["reason"]
    # Another rep's key gets nothing of it.
    assert world.call("GET", f"/accounts/{world.ids['own']}/timeline", "rita").status_code == 404
