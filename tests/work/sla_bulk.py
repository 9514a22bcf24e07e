"""Many open tasks at once, with Core bulk inserts: for the multi-worker test and `bench/sla.py`.

Each task comes with the journey and step run that name its playbook step, as the engine
would have left them, so the sweep reads its escalation chain from the stored playbook.
"""

from __future__ import annotations

import hashlib
import textwrap
from datetime import datetime, timedelta

from sqlalchemy import Engine, insert, select

from orchestrator.models import Account, Journey, Owner, PlaybookVersion, StepRun, Task

BULK_PLAYBOOK = textwrap.dedent("""
    id: bulk-sla
    name: Bulk SLA
    stage: acquire
    maintainer: revops@acme.example
    review_every: 365d
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
          brief: [trigger]
        sla:
          ack: 1 business hour
          due: 1 business day
          escalate:
            - {at: ack, raise_priority: true}
            - {at: due, notify: owner.manager}
      - id: done
        kind: exit
        reason: touched
""")
RUNGS = 2
_CHUNK = 5000


def build(engine: Engine, *, tasks: int, due: int, now: datetime, reps: int = 20,
          age: timedelta = timedelta(days=14)) -> None:
    """`tasks` open tasks, of which `due` were created `age` ago (overdue) and the rest not due for weeks.

    At the default age every rung is due and so is the chain's end (an `sla_exhausted` item);
    at 25 hours both rungs are due and the end is not.
    """
    with engine.begin() as connection:
        manager_id = connection.execute(insert(Owner).values(
            email="manager@bulk.example", name="Manager", role="manager", working_hours={}, active=True,
            created_at=now).returning(Owner.id)).scalar_one()
        connection.execute(insert(Owner), [
            {"email": f"rep{n}@bulk.example", "name": f"Rep {n}", "role": "ae", "manager_id": manager_id,
             "working_hours": {}, "active": True, "created_at": now} for n in range(reps)])
        rep_ids = list(connection.scalars(select(Owner.id).where(Owner.role == "ae").order_by(Owner.id)))
        version_id = connection.execute(insert(PlaybookVersion).values(
            playbook_id="bulk-sla", version=1, name="Bulk SLA", stage="acquire",
            checksum=hashlib.sha256(BULK_PLAYBOOK.encode()).hexdigest(), source_text=BULK_PLAYBOOK,
            source_path="bulk.yaml", active=True, applied_at=now, applied_by="bench").returning(
            PlaybookVersion.id)).scalar_one()
        for start in range(0, tasks, _CHUNK):
            count = min(_CHUNK, tasks - start)
            numbers = range(start, start + count)
            account_ids = list(connection.execute(insert(Account).returning(Account.id, sort_by_parameter_order=True), [
                {"name": f"Bulk {n}", "domain": f"bulk{n}.example", "owner_id": rep_ids[n % reps],
                 "stage": "acquire", "stage_entered_at": now, "attributes": {}, "created_at": now,
                 "updated_at": now} for n in numbers]).scalars())
            journey_ids = list(connection.execute(insert(Journey).returning(Journey.id, sort_by_parameter_order=True), [
                {"account_id": account_id, "playbook_id": "bulk-sla", "playbook_version_id": version_id,
                 "enrollment_key": f"bulk-sla:{n}", "status": "active", "current_step_id": "touch",
                 "context": {}, "enrolled_at": now} for n, account_id in zip(numbers, account_ids, strict=True)])
                .scalars())
            step_ids = list(connection.execute(insert(StepRun).returning(StepRun.id, sort_by_parameter_order=True), [
                {"journey_id": journey_id, "step_id": "touch", "kind": "human", "status": "waiting",
                 "reason": "", "outcome": {}, "started_at": now} for journey_id in journey_ids]).scalars())
            rows = []
            for n, account_id, journey_id, step_id in zip(numbers, account_ids, journey_ids, step_ids, strict=True):
                overdue = n < due
                created = now - age if overdue else now
                ack_by = created + timedelta(hours=1) if overdue else now + timedelta(days=30)
                due_at = created + timedelta(days=1) if overdue else now + timedelta(days=31)
                rows.append({
                    "account_id": account_id, "journey_id": journey_id, "step_run_id": step_id,
                    "owner_id": rep_ids[n % reps], "kind": "action", "title": f"Touch Bulk {n}",
                    "recommendation": "", "brief": {}, "brief_text": "", "status": "open", "priority": "normal",
                    "created_at": created, "ack_by": ack_by, "due_at": due_at, "escalation_level": 0,
                    "next_escalation_at": ack_by, "sla_state": "on_track", "sla_check_at": ack_by,
                    "paused_seconds": 0,
                })
            connection.execute(insert(Task), rows)


def add_background(engine: Engine, *, tasks: int, now: datetime, chunk: int = 20_000) -> None:
    """`tasks` open tasks not due for weeks, sharing a handful of accounts (only the tasks table grows)."""
    with engine.begin() as connection:
        owner_ids = list(connection.scalars(select(Owner.id).where(Owner.role == "ae").order_by(Owner.id)))
        account_ids = list(connection.scalars(select(Account.id).order_by(Account.id).limit(len(owner_ids))))
    for start in range(0, tasks, chunk):
        rows = []
        for n in range(start, min(tasks, start + chunk)):
            later = now + timedelta(days=20, minutes=n % 10_000)
            rows.append({
                "account_id": account_ids[n % len(account_ids)], "owner_id": owner_ids[n % len(owner_ids)],
                "kind": "action", "title": f"Later {n}", "recommendation": "", "brief": {}, "brief_text": "",
                "status": "open", "priority": "normal", "created_at": now, "ack_by": later,
                "due_at": later + timedelta(days=1), "escalation_level": 0, "next_escalation_at": later,
                "sla_state": "on_track", "sla_check_at": later, "paused_seconds": 0,
            })
        with engine.begin() as connection:
            connection.execute(insert(Task), rows)
