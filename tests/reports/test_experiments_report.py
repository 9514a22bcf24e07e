"""The experiments report over the shipped expansion-first-touch playbook run by the engine, against answers
worked out by hand, on both databases."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from orchestrator.models import Journey, StageChange, Task, TaskFeedback
from orchestrator.reports.catalog import run_report
from orchestrator.reports.scope import Scope
from tests.conftest import T0
from tests.factories import AccountFactory, OwnerFactory
from tests.reports.engine_world import decide, only_task, world
from tests.reports.fixture import SINCE, UNTIL

EXPERIMENT = "expansion-first-touch-q4"
# The variant each domain's hash bucket gives (experiments.assign_variant), checked on the journeys below.
AUTOMATED = ("x2.example", "x3.example", "x4.example", "x8.example")
HUMAN = ("x1.example", "x5.example", "x6.example", "x7.example")


def seed_experiment(session: Any, feed: Any, clock: Any) -> None:
    """Eight accounts through expansion-first-touch in the period (four per variant), one before."""
    clock.set(T0)
    csm = OwnerFactory(team="red")
    accounts = {}
    for domain in AUTOMATED + HUMAN:
        accounts[domain] = account = AccountFactory(domain=domain, stage="expand", owner=csm, csm=csm)
        feed("expansion.signal", account, {"reason": "Asked about more seats"})
    for domain in AUTOMATED + HUMAN:
        (journey,) = session.scalars(select(Journey).where(Journey.account_id == accounts[domain].id)).all()
        assert journey.context["variants"][EXPERIMENT] == ("automated" if domain in AUTOMATED else "human")

    def moved(domain: str, to: str, hours: int) -> None:
        session.add(StageChange(account_id=accounts[domain].id, from_stage="expand", to_stage=to,
                                at=T0 + timedelta(hours=hours)))

    moved("x2.example", "renew", 1)      # converted, 1/24 day after entering
    moved("x3.example", "renew", 5)      # converted, 5/24 day after
    moved("x4.example", "adopt", 1)      # back to adopt: no conversion
    moved("x8.example", "renew", 48)     # after the period's end: not yet
    moved("x1.example", "renew", 3)      # converted, 3/24 day after
    moved("x5.example", "renew", 0)      # converted at the moment it entered
    moved("x7.example", "renew", -1)     # before it entered: not a result of the play
    decide(session, feed, only_task(session, accounts["x1.example"]), "done")
    session.add(TaskFeedback(task_id=session.scalars(select(Task.id).where(
        Task.account_id == accounts["x1.example"].id)).one(), by="csm@acme.example", useful=True))
    x5 = only_task(session, accounts["x5.example"])
    session.add_all([TaskFeedback(task_id=x5.id, by="csm@acme.example", useful=False),
                     TaskFeedback(task_id=x5.id, by="vp@acme.example", useful=True)])  # one not useful: not
    feed("account.churned", accounts["x6.example"])   # dropped: the journey exits
    clock.set(SINCE - timedelta(minutes=1))
    feed("expansion.signal", AccountFactory(domain="x9.example", stage="expand", owner=csm, csm=csm))  # before


@pytest.fixture
def sessions(migrated: Any) -> Any:
    db, factory = migrated
    with world(db, "expand/expansion-first-touch") as (session, feed, clock):
        seed_experiment(session, feed, clock)
    return factory


def test_per_experiment_and_variant(sessions: Any) -> None:
    common = {"playbook": "expansion-first-touch", "experiment": EXPERIMENT, "journeys": 4, "stalled": 0}
    assert run_report("experiments", sessions=sessions, since=SINCE, until=UNTIL) == [
        {**common, "variant": "automated", "completed": 4, "dropped": 0, "open": 0, "converted": 2,
         "conversion_rate": 0.5, "convert_median_days": 0.0417, "tasks": 0, "rated": 0, "useful": 0,
         "not_useful": 0},
        {**common, "variant": "human", "completed": 1, "dropped": 1, "open": 2, "converted": 2,
         "conversion_rate": 0.5, "convert_median_days": 0.0, "tasks": 4, "rated": 2, "useful": 1,
         "not_useful": 1},
    ]


def test_scope_and_no_grouping(sessions: Any) -> None:
    assert run_report("experiments", sessions=sessions, since=SINCE, until=UNTIL, scope=Scope(team="blue")) == []
    assert len(run_report("experiments", sessions=sessions, since=SINCE, until=UNTIL, scope=Scope(stage="expand"))) \
        == 2
    with pytest.raises(ValueError, match="one fixed grouping"):
        run_report("experiments", sessions=sessions, since=SINCE, until=UNTIL, by="team")
