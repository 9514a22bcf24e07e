"""The operator commands (`handoff tasks`, `journeys`, `engine run`) against a real, migrated database.

The CLI reads the system clock, so time-dependent setups are made by running the engine
with a `now` in the past (an enrollment 30 days ago has a wait that expired long since).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import func, select
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session

from orchestrator import schema
from orchestrator.cli import main
from orchestrator.config import load_settings
from orchestrator.db import make_engine
from orchestrator.intake import signals
from orchestrator.journeys import engine
from orchestrator.models import Account, AuditEvent, ExceptionItem, Journey, OutboxMessage, StepRun, Task
from tests import factories
from tests.engine.conftest import HEADER, install_playbook
from tests.factories import AccountFactory, DealFactory, OwnerFactory

KICKOFF = """
    id: kickoff
    name: Kickoff
    stage: onboard
""" + HEADER + """
    enroll: {on: deal.closed_won, once_per: account}
    steps:
      - id: kickoff
        kind: human
        assign: {to: account.owner}
        task:
          title: "Kickoff with {{ account.name }}"
          recommend: "Book a kickoff call this week."
          brief: [trigger, account]
        sla: {ack: 4 business hours, due: 2 business days}
      - id: wait-usage
        kind: wait
        for: product.usage
        until: signal.active_users >= 5
        timeout: 14d
        on_timeout: {goto: activated}
      - id: activated
        kind: exit
        reason: activated
"""

TRIAL = """
    id: trial
    name: Trial
    stage: acquire
""" + HEADER + """
    enroll: {on: trial.started}
    steps:
      - id: wait-usage
        kind: wait
        for: product.usage
        timeout: 7d
        on_timeout: {goto: no-usage}
      - id: activated
        kind: exit
        reason: activated
      - id: no-usage
        kind: exit
        reason: no usage within the trial week
"""

FLAG = """
    id: flag
    name: Flag
    stage: adopt
""" + HEADER + """
    enroll: {on: product.usage}
    steps:
      - id: flag-health
        kind: automated
        oversight: on_the_loop
        risk: {error_cost: low, correction: fast}
        do: crm.update_field
        with: {field: health, value: "at risk"}
        override:
          window: 4h
          compensate: {do: crm.create_note, with: {body: "Health flag withdrawn."}}
      - id: flagged
        kind: exit
        reason: flagged
"""


class Operator:
    """A migrated database of its own, a way to set it up, and the CLI pointed at it."""

    def __init__(self, url: URL) -> None:
        self.env = {"HANDOFF_DATABASE_URL": url.render_as_string(hide_password=False),
                    "HANDOFF_EXCEPTION_OWNER": "ops-lead@example.com"}
        self.settings = load_settings(self.env)  # exactly what the CLI will read
        self.engine = make_engine(url)
        schema.upgrade(self.engine)
        self.runner = CliRunner()

    def __call__(self, *args: str) -> Result:
        return self.runner.invoke(main, list(args), env=self.env)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session the row factories write to, committed at the end of the block."""
        with Session(self.engine, expire_on_commit=False) as session:
            factories.bind(session)
            try:
                yield session
                session.commit()
            finally:
                factories.bind(None)

    def signal(self, session: Session, type: str, account: Account, *, at: datetime,
               payload: dict[str, Any] | None = None, deal: Any = None, process: bool = True) -> None:
        raw: dict[str, Any] = {"type": type, "account": {"id": account.id}, "payload": payload or {},
                               "occurred_at": at.isoformat()}
        if deal is not None:
            raw["deal"] = {"id": deal.id}
        result = signals.ingest(session=session, raw=raw, source="test", now=at, settings=self.settings)
        assert result.status == "accepted", result
        if process:
            engine.process_pending(session=session, settings=self.settings, now=at)

    def one(self, model: Any, *where: Any) -> Any:
        with Session(self.engine) as session:
            return session.scalars(select(model).where(*where)).one()

    def count(self, model: Any, *where: Any) -> int:
        with Session(self.engine) as session:
            return session.scalar(select(func.count()).select_from(model).where(*where)) or 0


@pytest.fixture
def operator(fresh_database: URL) -> Iterator[Operator]:
    operator = Operator(fresh_database)
    yield operator
    operator.engine.dispose()


def _now() -> datetime:
    return datetime.now(UTC)


def _kickoff(operator: Operator, *, owner_active: bool = True, at: datetime | None = None) -> None:
    """A kickoff journey enrolled at `at` (default: just now) for Hooli, owned by gavin@acme.example."""
    with operator.session() as session:
        install_playbook(session, KICKOFF)
        account = AccountFactory(name="Hooli", domain="hooli.example", stage="onboard",
                                 owner=OwnerFactory(email="gavin@acme.example", active=owner_active))
        operator.signal(session, "deal.closed_won", account, at=at or _now(), deal=DealFactory(account=account))


def _data_lines(result: Result) -> list[str]:
    assert result.exit_code == 0, result.output
    return result.stdout.splitlines()[1:]  # below the header


def test_tasks_list_shows_an_open_task_and_hides_it_once_decided(operator):
    _kickoff(operator)
    task = operator.one(Task)

    rows = _data_lines(operator("tasks", "list", "--owner", "Gavin@acme.example", "--account", "hooli.example"))
    assert len(rows) == 1
    assert rows[0].split()[:4] == [str(task.id), "action", task.priority, "gavin@acme.example"]
    assert rows[0].endswith("Kickoff with Hooli") and "overdue" not in rows[0]

    decided = operator("tasks", "decide", str(task.id), "done", "--by", "gavin@acme.example")
    assert decided.exit_code == 0, decided.output
    assert decided.stdout.splitlines()[0] == f"task {task.id} done by gavin@acme.example"
    assert "waiting at wait-usage for product.usage until" in decided.stdout

    assert operator("tasks", "list").stdout == "no open tasks\n"
    closed = _data_lines(operator("tasks", "list", "--all"))
    assert len(closed) == 1 and "(done)" in closed[0]


def test_tasks_list_marks_a_task_past_its_due_time_overdue(operator):
    _kickoff(operator, at=_now() - timedelta(days=30))
    rows = _data_lines(operator("tasks", "list"))
    assert len(rows) == 1 and " overdue " in rows[0]


def test_tasks_list_refuses_an_unknown_account_instead_of_showing_nothing(operator):
    _kickoff(operator)
    result = operator("tasks", "list", "--account", "nobody.example")
    assert result.exit_code == 2
    assert "no account matches 'nobody.example'" in result.stderr


def test_tasks_show_prints_the_recommendation_and_the_full_brief_live(operator):
    _kickoff(operator)
    task = operator.one(Task)
    assert task.brief_text  # the snapshot the CRM got

    result = operator("tasks", "show", str(task.id))

    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"task {task.id}: Kickoff with Hooli\n")
    assert "owner:    gavin@acme.example" in result.stdout
    assert "Book a kickoff call this week." in result.stdout
    # The brief is rendered from current data: the same trigger and recommendation, plus a live line.
    shown = result.stdout.split("\nbrief (live; the CRM task holds it as created):\n", 1)[1]
    assert shown.startswith(task.brief_text.split("\n\n", 1)[0])
    assert "- Live view as of" in shown and "0 new signal(s) since the task was created" in shown


def test_acknowledging_a_task_stops_its_ack_clock_and_keeps_it_listed(operator):
    _kickoff(operator)
    task = operator.one(Task)

    result = operator("tasks", "ack", str(task.id), "--by", "gavin@acme.example")

    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"task {task.id} acknowledged at ")
    acknowledged = operator.one(Task)
    assert acknowledged.status == "acknowledged" and acknowledged.acknowledged_at is not None
    assert len(_data_lines(operator("tasks", "list"))) == 1


def test_deciding_with_an_outcome_the_task_does_not_take_prints_one_line_and_changes_nothing(operator):
    _kickoff(operator)
    task = operator.one(Task)
    events = operator.count(AuditEvent)

    result = operator("tasks", "decide", str(task.id), "approved", "--by", "gavin@acme.example")

    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("handoff: error: ")
    assert "done" in result.stderr and "'approved'" in result.stderr
    assert operator.one(Task).status == "open"
    assert operator.one(Journey).current_step_id == "kickoff"
    assert operator.count(AuditEvent) == events


def test_deciding_a_task_that_does_not_exist_is_one_line_with_exit_2(operator):
    result = operator("tasks", "decide", "999", "done", "--by", "gavin@acme.example")
    assert result.exit_code == 2
    assert result.stderr == "handoff: error: no task 999\n"


def test_journeys_retry_runs_a_parked_journey_again_once_the_owner_is_back(operator):
    _kickoff(operator, owner_active=False)  # nobody can take the task: the journey is parked
    journey = operator.one(Journey)
    assert journey.status == "stalled" and operator.count(Task) == 0
    listed = _data_lines(operator("journeys", "list", "--status", "stalled", "--playbook", "kickoff"))
    assert len(listed) == 1 and listed[0].split()[0] == str(journey.id)
    with operator.session() as session:
        owner = session.scalars(select(Account)).one().owner
        assert owner is not None
        owner.active = True

    result = operator("journeys", "retry", str(journey.id), "--by", "ops@acme.example", "--note", "owner back")

    assert result.exit_code == 0, result.output
    assert result.stdout == f"journey {journey.id} retried by ops@acme.example on kickoff v1: waiting at kickoff\n"
    assert operator.one(Journey).status == "waiting"
    assert operator.count(Task, Task.status == "open") == 1
    item = operator.one(ExceptionItem, ExceptionItem.journey_id == journey.id)
    assert item.status == "resolved" and item.resolved_by == "ops@acme.example"

    again = operator("journeys", "retry", str(journey.id), "--by", "ops@acme.example")
    assert again.exit_code == 2 and "not parked" in again.stderr


def test_journeys_end_exits_the_journey_and_cancels_its_open_task(operator):
    _kickoff(operator)
    journey = operator.one(Journey)

    result = operator("journeys", "end", str(journey.id), "--by", "ops@acme.example", "--reason", "duplicate deal")

    assert result.exit_code == 0, result.output
    assert result.stdout == f"journey {journey.id} exited: ended by ops@acme.example: duplicate deal\n"
    assert operator.one(Journey).status == "exited"
    assert operator.one(Task).status == "cancelled"
    assert operator("tasks", "list").stdout == "no open tasks\n"

    again = operator("journeys", "end", str(journey.id), "--by", "ops@acme.example", "--reason", "again")
    assert again.exit_code == 2 and "already ended" in again.stderr


def _flagged(operator: Operator, *, at: datetime) -> int:
    """An on_the_loop step that ran at `at`; returns its step run id."""
    with operator.session() as session:
        install_playbook(session, FLAG)
        owner = OwnerFactory(email="owner@acme.example")
        operator.signal(session, "product.usage", AccountFactory(name="Initech", owner=owner), at=at)
    return operator.one(StepRun, StepRun.step_id == "flag-health").id


def test_an_override_by_a_stranger_or_someone_else_s_rep_is_refused_and_changes_nothing(operator):
    run_id = _flagged(operator, at=_now())
    with operator.session():
        OwnerFactory(email="peer@acme.example")
    stranger = operator("journeys", "override", str(run_id), "--by", "random.person@gmail.com")
    assert stranger.exit_code != 0 and "not a known owner" in stranger.stderr
    peer = operator("journeys", "override", str(run_id), "--by", "peer@acme.example")
    assert peer.exit_code != 0 and "neither the owner or CSM" in peer.stderr
    assert operator.one(StepRun, StepRun.id == run_id).status == "done"
    assert operator.count(OutboxMessage, OutboxMessage.kind == "crm.create_note") == 0


def test_journeys_show_lists_the_step_runs_and_an_override_inside_the_window_compensates(operator):
    run_id = _flagged(operator, at=_now())
    journey = operator.one(Journey)

    shown = operator("journeys", "show", str(journey.id))
    assert shown.exit_code == 0, shown.output
    assert shown.stdout.startswith(f"journey {journey.id}: Initech (account ")
    assert "status:   completed: " in shown.stdout and "flagged" in shown.stdout.splitlines()[2]
    assert any(line.split()[:4] == [str(run_id), "flag-health", "automated", "done"]
               for line in shown.stdout.splitlines())
    assert f"run {run_id} (flag-health) until " in shown.stdout.split("open override windows:")[1]

    result = operator("journeys", "override", str(run_id), "--by", "owner@acme.example", "--reason", "wrong account")

    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"run {run_id} (flag-health) of journey {journey.id} overridden by ")
    overridden = operator.one(StepRun, StepRun.id == run_id)
    assert overridden.status == "overridden" and overridden.override_until is None
    note = operator.one(OutboxMessage, OutboxMessage.kind == "crm.create_note")
    assert note.payload["args"]["body"] == "Health flag withdrawn."
    assert "open override windows" not in operator("journeys", "show", str(journey.id)).stdout


def test_an_override_after_the_window_closed_is_refused_and_changes_nothing(operator):
    run_id = _flagged(operator, at=_now() - timedelta(hours=5))

    result = operator("journeys", "override", str(run_id), "--by", "owner@acme.example")

    assert result.exit_code == 2
    assert result.stderr == f"handoff: error: step run {run_id} has no open override window\n"
    assert operator.one(StepRun, StepRun.id == run_id).status == "done"
    assert operator.count(OutboxMessage, OutboxMessage.kind == "crm.create_note") == 0


def test_engine_run_processes_pending_signals_fires_an_expired_wait_and_then_has_nothing_to_do(operator):
    with operator.session() as session:
        install_playbook(session, TRIAL)
        operator.signal(session, "trial.started", AccountFactory(name="Old Trial"), at=_now() - timedelta(days=30))
        operator.signal(session, "trial.started", AccountFactory(name="New Trial"), at=_now(), process=False)
    expired = operator.one(Journey)
    assert expired.status == "waiting" and expired.wait_until < _now()

    first = operator("engine", "run")

    assert first.exit_code == 0, first.output
    lines = first.stdout.splitlines()
    assert lines[0].startswith("signals: 1 signals processed")
    assert lines[-1] == "timeouts: 1 journey moved on"
    old = operator.one(Journey, Journey.id == expired.id)
    assert old.status == "completed" and old.end_reason and "no usage within the trial week" in old.end_reason
    assert operator.count(Journey, Journey.status == "waiting") == 1  # the new trial, waiting its week

    second = operator("engine", "run", "--limit", "10")
    assert second.exit_code == 0, second.output
    assert second.stdout == "signals: none pending\ntimeouts: none due\n"
