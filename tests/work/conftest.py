"""SLA test helpers: a playbook with a three-rung chain, tasks made by the real engine, a sweep on the test session."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from orchestrator.models import SlaEvent, Task
from orchestrator.work.sweep import SweepReport, sweep_batch
from tests.engine.conftest import HEADER, Feeder, install_playbook

SLA_PLAYBOOK = """
    id: sla-test
    name: SLA test
    stage: acquire
""" + HEADER + """
    enroll:
      on: lead.created
      once_per: signal
    steps:
      - id: touch
        kind: human
        assign: {to: account.owner}
        task:
          title: "Touch {{ account.name }}"
          recommend: "Call them"
          brief: [trigger, account]
        sla:
          ack: 2 business hours
          due: 1 business day
          escalate:
            - {at: ack, raise_priority: true}
            - {at: due, notify: owner.manager}
            - {at: due + 2 business hours, reassign: {role: sdr, strategy: round_robin}}
      - id: done
        kind: exit
        reason: touched
"""


@pytest.fixture
def sla_playbook(session: Session):
    return install_playbook(session, SLA_PLAYBOOK, lint=False)


@pytest.fixture
def feed(session: Session, settings: Any, clock: Any) -> Feeder:
    return Feeder(session, settings, clock)


def make_task(feed: Feeder, account: Any) -> Task:
    """A task from the real engine: a lead.created signal through intake into the SLA playbook."""
    feed("lead.created", account)
    task = feed.session.scalars(select(Task).where(Task.account_id == account.id)
                                .order_by(Task.id.desc())).first()
    assert task is not None, "the engine created no task"
    return task


def sweep(session: Session, settings: Any, now: Any) -> SweepReport:
    """Sweep on the test's own session (the production sweep is this plus one transaction per batch)."""
    report = SweepReport()
    while True:
        claimed, failed = sweep_batch(session, settings=settings, now=now, limit=50, report=report)
        assert not failed, f"SLA checks failed for tasks {failed}"
        session.flush()
        if claimed < 50:
            return report


def events(session: Session, task: Task) -> list[tuple[str, int]]:
    return [(e.kind, e.level) for e in session.scalars(
        select(SlaEvent).where(SlaEvent.task_id == task.id).order_by(SlaEvent.at, SlaEvent.id))]
