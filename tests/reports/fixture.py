"""A small world with known report answers (worked out by hand in test_reports.py)."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from typing import Any

from sqlalchemy.orm import Session

from orchestrator.models import Account, Journey, Owner, PlaybookVersion, StepRun, Task
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
