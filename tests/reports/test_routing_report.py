"""The routing report over the shipped ticket-triage playbook run by the engine, against answers worked
out by hand, on both databases."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from click.testing import CliRunner

from orchestrator.api import create_app
from orchestrator.apikeys import create_key
from orchestrator.cli import main
from orchestrator.clock import FrozenClock
from orchestrator.config import Settings
from orchestrator.db import unit_of_work
from orchestrator.reports.catalog import run_report
from orchestrator.reports.scope import Scope
from orchestrator.runtime import Runtime
from tests.conftest import T0
from tests.factories import AccountFactory, OwnerFactory
from tests.reports.engine_world import decide, only_task, world
from tests.reports.fixture import SINCE, UNTIL

REFUND = {"subject": "Refund for a double charge", "body": "We were charged twice; please refund the invoice."}
DOUBTFUL = {"subject": "Invoice page shows a password prompt"}  # billing 1 hit, login 1: score 0.25
SSO = {"subject": "SSO question"}                                 # login, one hit: 0.5
NOVEL = {"subject": "Our data residency contract terms"}          # no keyword at all: unscored
HOW_TO = {"subject": "How do I export a report? Is there a tutorial on how to?"}  # how_to, four hits


def seed_tickets(session: Any, feed: Any, clock: Any) -> None:
    """Seven tickets through ticket-triage: six in the period (two automated, four to a person), one before."""
    clock.set(T0)
    red, blue = OwnerFactory(team="red"), OwnerFactory(team="blue")

    def ticket(owner: Any, n: int, payload: dict[str, str]) -> Any:
        account = AccountFactory(stage="adopt", owner=owner, csm=owner)
        feed("support.ticket_opened", account, {"ticket_id": f"T-{n}", **payload})
        return account

    ticket(red, 1, REFUND)                                    # automated
    decide(session, feed, only_task(session, ticket(red, 2, DOUBTFUL)), "rejected")  # overturned
    decide(session, feed, only_task(session, ticket(red, 3, SSO)), "approved")       # confirmed
    decide(session, feed, only_task(session, ticket(red, 4, NOVEL)), "done")         # nothing proposed
    ticket(red, 5, DOUBTFUL)                                  # proposed, not decided yet
    ticket(blue, 6, HOW_TO)                                   # automated
    clock.set(SINCE - timedelta(minutes=1))
    ticket(blue, 7, DOUBTFUL)                                 # before the period: counted nowhere


@pytest.fixture
def sessions(migrated: Any) -> Any:
    db, factory = migrated
    with world(db, "adopt/ticket-triage") as (session, feed, clock):
        seed_tickets(session, feed, clock)
    return factory


def test_per_route_step(sessions: Any) -> None:
    assert run_report("routing", sessions=sessions, since=SINCE, until=UNTIL) == [{
        "playbook": "ticket-triage", "step": "triage", "decisions": 6, "automated": 2, "human": 4,
        "human_share": 0.6667, "below_threshold": 3, "novel_category": 0, "unscored": 1,
        "proposed": 3, "confirmed": 1, "overturned": 1, "undecided": 1, "no_proposal": 1,
        "overturn_rate": 0.5}]


def test_per_team_and_within_a_scope(sessions: Any) -> None:
    blue, red = run_report("routing", sessions=sessions, since=SINCE, until=UNTIL, by="team")
    assert (blue["team"], blue["decisions"], blue["automated"], blue["human_share"], blue["overturn_rate"]) \
        == ("blue", 1, 1, 0.0, None)  # no proposal decided: no rate, not 0%
    assert (red["team"], red["decisions"], red["human"], red["overturned"]) == ("red", 5, 4, 1)
    [scoped] = run_report("routing", sessions=sessions, since=SINCE, until=UNTIL, scope=Scope(team="blue"))
    assert (scoped["decisions"], scoped["automated"]) == (1, 1)
    assert run_report("routing", sessions=sessions, since=SINCE, until=UNTIL, scope=Scope(stage="acquire")) == []
    with pytest.raises(ValueError, match="group by one of"):
        run_report("routing", sessions=sessions, since=SINCE, until=UNTIL, by="colour")


def test_the_cli_and_the_api_print_the_same_rows(sessions: Any, migrated: Any) -> None:
    db = migrated[0]
    expected = run_report("routing", sessions=sessions, since=SINCE, until=UNTIL)
    env = {"HANDOFF_DATABASE_URL": db.url.render_as_string(hide_password=False), "HANDOFF_CONFIG": None}
    # The command's period ends now (the wall clock): ten years back hold the early ticket too (T-7).
    printed = json.loads(CliRunner().invoke(main, ["report", "routing", "--since", "3650d", "--format", "json"],
                                            env=env, catch_exceptions=False).output)["rows"]
    assert (printed[0]["decisions"], printed[0]["below_threshold"]) == (7, 4)
    with unit_of_work(sessions) as session:
        key = create_key(session, name="vp", role="leader", now=T0)
    runtime = Runtime(settings=Settings(database_url=db.url, exception_owner="ops@acme.example"),
                      engine=db, sessions=sessions, clock=FrozenClock(UNTIL))
    client = create_app(runtime=runtime).test_client()
    answer = client.get(f"/reports/routing?since={SINCE.isoformat().replace('+00:00', 'Z')}",
                        headers={"Authorization": f"Bearer {key}"})
    assert answer.status_code == 200 and answer.get_json()["rows"] == expected
    csv_rows = client.get(f"/reports/routing?format=csv&since={SINCE.isoformat().replace('+00:00', 'Z')}",
                          headers={"Authorization": f"Bearer {key}"}).get_data(as_text=True).splitlines()
    assert csv_rows[0].startswith("playbook,step,decisions,automated,human,human_share")
