"""Report tests over what the real engine records: shipped playbooks driven by signals through intake."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from orchestrator.clock import FrozenClock
from orchestrator.config import Settings
from orchestrator.journeys import engine as journeys
from orchestrator.models import Task
from orchestrator.resources import shipped_playbooks_dir
from tests import factories
from tests.conftest import T0
from tests.engine.conftest import Feeder, install_playbook


@contextmanager
def world(db: Engine, *playbooks: str) -> Iterator[tuple[Session, Feeder, FrozenClock]]:
    """A committing session on `db` with the shipped `playbooks` (e.g. "adopt/ticket-triage") installed,
    a feeder and its clock at T0; committed when the block ends."""
    settings = Settings(database_url=db.url, exception_owner="ops-lead@example.com",
                        calendars={"default": {"timezone": "America/New_York", "hours": "09:00-17:00",
                                               "holidays": "US"}})
    clock = FrozenClock(T0)
    session = Session(bind=db, expire_on_commit=False)
    factories.bind(session)
    try:
        for name in playbooks:
            install_playbook(session, (shipped_playbooks_dir() / f"{name}.yaml").read_text(), f"{name}.yaml")
        yield session, Feeder(session, settings, clock), clock
        session.commit()
    finally:
        factories.bind(None)
        session.close()


def decide(session: Session, feeder: Feeder, task: Task, outcome: str) -> None:
    """Close `task` as its owner would, through the engine."""
    journeys.decide_task(session=session, settings=feeder.settings, task_id=task.id, outcome=outcome,
                         actor="csm@acme.example", now=feeder.clock.now())
    session.flush()


def only_task(session: Session, account: Any) -> Task:
    (task,) = session.scalars(select(Task).where(Task.account_id == account.id, Task.completed_at.is_(None))).all()
    return task
