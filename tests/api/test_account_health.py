"""GET /accounts/{id}/health on SQLite and PostgreSQL: the score the recompute job kept, each measure's
contribution and the history, for those who may see the account; the CRM field when no model scored it."""

from __future__ import annotations

from datetime import timedelta

from orchestrator.db import unit_of_work
from orchestrator.models import Account
from orchestrator.worker.jobs import all_jobs, run_at
from tests.conftest import T0
from tests.engine.conftest import HEADER, install_playbook

MODEL = """
    id: health-model
    name: Health model
    stage: adopt
""" + HEADER + """
    health:
      measures:
        - {id: tickets, label: Tickets, on: support.ticket_opened, measure: count, over: 30d, weight: 3, worst: 2,
           best: 0}
        - {id: runway, label: Days to renewal, value: account.days_to_renewal, weight: 1, worst: 0, best: 100}
    enroll: {on: health.dropped}
    steps:
      - {id: done, kind: exit, reason: seen}
"""


def test_the_health_route_shows_score_contributions_and_history_to_those_who_see_the_account(world):
    own, other = world.ids["own"], world.ids["other"]
    with unit_of_work(world.runtime.sessions) as session:
        session.get(Account, other).health = 64  # a CRM field only: no model scores it below
    response = world.call("GET", f"/accounts/{other}/health", "admin").get_json()
    assert (response["score"], response["source"], response["history"]) == (64, "crm_field", [])

    with unit_of_work(world.runtime.sessions) as session:
        install_playbook(session, MODEL, "adopt/health-model.yaml")
        session.get(Account, own).renewal_date = T0 + timedelta(days=25)
        session.get(Account, other).churned_at = T0  # churned accounts are not rescored
    (recompute,) = [job for job in all_jobs(world.runtime) if job.id == "health.recompute"]
    assert run_at(recompute, runtime=world.runtime, now=T0).items == 1

    # No tickets: 75 of 75 points; 25 of 100 days to renewal: a quarter of 25; 81.25 -> 81.
    body = world.call("GET", f"/accounts/{own}/health", "sam").get_json()
    assert (body["score"], body["source"], body["model"]) == (81, "computed", "health-model")
    assert [(c["id"], c["value"], c["max_points"], c["points"]) for c in body["contributions"]] == [
        ("tickets", 0.0, 75.0, 75.0), ("runway", 25.0, 25.0, 6.25)]
    assert body["reasons"] == ["Days to renewal: 25 (6.2 of 25 points)"]
    assert [(h["score"], h["previous"], h["trigger"]) for h in body["history"]] == [(81, None, "scheduler")]

    assert run_at(recompute, runtime=world.runtime, now=T0 + timedelta(days=5)).items == 1  # 20 days: 80
    body = world.call("GET", f"/accounts/{own}/health?limit=1", "sam").get_json()
    assert [(h["score"], h["previous"]) for h in body["history"]] == [(80, 81)]

    assert world.call("GET", f"/accounts/{other}/health", "sam").status_code == 404  # Rita's account
    bad = world.call("GET", f"/accounts/{own}/health?limit=0", "admin")
    assert (bad.status_code, bad.get_json()["field"]) == (422, "limit")
