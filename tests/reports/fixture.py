"""A small world with known report answers (worked out by hand in test_reports.py)."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from typing import Any

from sqlalchemy.orm import Session

from orchestrator.models import Account, Journey, Owner, PlaybookVersion, Signal, SlaEvent, StepRun, Task
from tests.conftest import T0

SINCE = T0 - timedelta(days=7)
UNTIL = T0 + timedelta(days=1)


def seed(session: Session) -> dict[str, Any]:
    """Playbook `pb` with steps approve, stamp (in the loop), notify, empty (on the loop)."""
    lead = Owner(email="lead@acme.example", name="Lead", role="cs-lead", team="red")
    session.add(lead)
    account = Account(name="Acme", domain="acme.example", owner=lead, stage="onboard", stage_entered_at=T0)
    session.add(account)
    version = PlaybookVersion(playbook_id="pb", version=1, name="PB", stage="onboard",
                              checksum=hashlib.sha256(b"pb").hexdigest(), source_text="", source_path="pb.yaml")
    session.add(version)
    session.flush()
    journey = Journey(account_id=account.id, playbook_id="pb", playbook_version_id=version.id,
                      enrollment_key="pb:1", status="waiting", enrolled_at=SINCE)
    session.add(journey)
    session.flush()
    ids: dict[str, list[int]] = {}

    def run(step: str, oversight: str, status: str, *, at: Any = T0, kind: str = "automated") -> StepRun:
        step_run = StepRun(journey_id=journey.id, step_id=step, kind=kind, oversight=oversight, status=status,
                           started_at=at)
        session.add(step_run)
        session.flush()
        return step_run

    def decision(step: str, seconds: float | None, outcome: str | None, *, paused: int = 0,
                 status: str = "done") -> None:
        step_run = run(step, "in_the_loop", "waiting" if outcome is None else "done")
        task = Task(account_id=account.id, journey_id=journey.id, step_run_id=step_run.id, owner_id=lead.id,
                    kind="approval", title=f"approve {step}", created_at=T0, due_at=T0 + timedelta(days=1),
                    status=status, outcome=outcome, paused_seconds=paused,
                    completed_at=T0 + timedelta(seconds=seconds) if seconds is not None else None)
        session.add(task)
        session.flush()
        ids.setdefault(step, []).append(task.id)

    # approve: 10, 10 (a tie), 20, a paused task (3,700 s elapsed, 3,600 s paused: 100 s), a 50 s rejection,
    # and one cancelled before anyone decided.
    for seconds in (10, 10, 20):
        decision("approve", seconds, "approved")
    decision("approve", 3700, "approved", paused=3600)
    decision("approve", 50, "rejected", status="rejected")
    decision("approve", 5, "cancelled", status="cancelled")
    for _ in range(5):
        decision("stamp", 5, "approved")
    for status in ("done", "done", "done", "overridden", "overridden", "skipped"):
        run("notify", "on_the_loop", status)
    run("empty", "on_the_loop", "skipped")
    # Outside the period: counted nowhere.
    run("notify", "on_the_loop", "overridden", at=SINCE - timedelta(seconds=1))
    session.commit()
    return {"tasks": ids, "account": account.id}


def seed_sla(session: Session) -> dict[str, Any]:
    """On top of `seed`: owner ana (team blue) on playbook `acq` (stage acquire, segment enterprise) and
    ned (no team) with a task of no journey; answers worked out in test_sla_report.py.

    Signals start four acq journeys: J1 (T0-6d-10min; tasks a1, a2), J2 (T0-10min; a3, a4), J3 (T0-40min;
    a5, acknowledged then cancelled) and J4 (T0-2h; no task). A fifth signal before SINCE is outside.
    """
    ana = Owner(email="ana@acme.example", name="Ana", role="sdr", team="blue")
    ned = Owner(email="ned@acme.example", name="Ned", role="csm", team=None)
    session.add_all([ana, ned])
    beta = Account(name="Beta", domain="beta.example", owner=ana, segment="enterprise", stage="acquire",
                   stage_entered_at=T0)
    session.add(beta)
    version = PlaybookVersion(playbook_id="acq", version=1, name="Acquire", stage="acquire",
                              checksum=hashlib.sha256(b"acq").hexdigest(), source_text="", source_path="acq.yaml")
    session.add(version)
    session.flush()
    acme = session.query(Account).filter_by(name="Acme").one()

    def journey(n: int, signal_at: Any) -> Journey:
        signal = Signal(type="lead.created", dedupe_key=f"lead-{n}", account_id=beta.id, source="cli",
                        occurred_at=signal_at, received_at=signal_at)
        session.add(signal)
        session.flush()
        found = Journey(account_id=beta.id, playbook_id="acq", playbook_version_id=version.id,
                        enrollment_key=f"acq:{n}", status="waiting", enrolled_at=signal_at,
                        trigger_signal_id=signal.id)
        session.add(found)
        session.flush()
        return found

    j1 = journey(1, T0 - timedelta(days=6, minutes=10))
    j2 = journey(2, T0 - timedelta(minutes=10))
    j3 = journey(3, T0 - timedelta(minutes=40))
    journey(4, T0 - timedelta(hours=2))
    journey(5, SINCE - timedelta(minutes=1))
    minute = timedelta(minutes=1)
    ids: dict[str, int] = {}

    def task(name: str, owner: Owner, j: Journey | None, created: Any, *, ack: int | None = None,
             done: int | None = None, outcome: str | None = None, ack_outcome: str | None = None,
             due_outcome: str | None = None, paused: int = 0, rungs: tuple[int, ...] = ()) -> None:
        run_id = None
        if j is not None:
            run = StepRun(journey_id=j.id, step_id="call", kind="human", status="waiting", started_at=created)
            session.add(run)
            session.flush()
            run_id = run.id
        status = {"done": "done", "cancelled": "cancelled", None: "acknowledged" if ack else "open"}[outcome]
        found = Task(account_id=(beta if j is not None else acme).id, journey_id=j.id if j else None,
                     step_run_id=run_id, owner_id=owner.id, kind="action", title=name, created_at=created,
                     due_at=created + timedelta(days=1), status=status, outcome=outcome,
                     acknowledged_at=created + ack * minute if ack is not None else None,
                     completed_at=created + done * minute if done is not None else None,
                     ack_outcome=ack_outcome, due_outcome=due_outcome, paused_seconds=paused)
        session.add(found)
        session.flush()
        for level in rungs:
            session.add(SlaEvent(task_id=found.id, kind="escalated", level=level, at=created + timedelta(hours=level)))
        ids[name] = found.id

    week47 = T0 - timedelta(days=6)
    task("a1", ana, j1, week47, ack=30, done=120, outcome="done", ack_outcome="met", due_outcome="met")
    task("a2", ana, j1, week47, ack=90, done=600, outcome="done", ack_outcome="breached", due_outcome="breached",
         rungs=(1, 2))
    task("a3", ana, j2, T0, ack=30, done=120, outcome="done", ack_outcome="met", due_outcome="met", paused=7200)
    task("a4", ana, j2, T0, ack_outcome="breached", rungs=(1,))
    task("a5", ana, j3, T0, ack=15, done=20, outcome="cancelled")
    task("n1", ned, None, T0, done=60, outcome="done", due_outcome="met")
    session.commit()
    return ids
