"""The work stage's periodic jobs: SLA sweep, exception escalation, digests, configuration reviews."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from orchestrator.db import unit_of_work
from orchestrator.work.exception_escalation import sweep_exceptions
from orchestrator.work.reminders import send_daily_digests, send_weekly_digests
from orchestrator.work.reviews import check_overdue_reviews, open_due_reviews
from orchestrator.work.sweep import sweep_sla
from orchestrator.worker.jobs import JobResult, job

if TYPE_CHECKING:
    from orchestrator.runtime import Runtime

# A scheduled sweep stops after this many batches so a shutdown waits seconds, not minutes;
# the next run takes the rest.
_SWEEP_BATCHES = 25


@job("sla.sweep", title="SLA states, reminders and escalation rungs that are due", every=timedelta(minutes=1))
def _sla_job(*, runtime: Runtime, now: datetime) -> JobResult:
    report = sweep_sla(sessions=runtime.sessions, settings=runtime.settings, now=now, max_batches=_SWEEP_BATCHES)
    return JobResult(items=report.tasks, errors=report.errors, detail=str(report))


@job("exceptions.escalate", title="Exception items past their response window", every=timedelta(minutes=5))
def _exceptions_job(*, runtime: Runtime, now: datetime) -> JobResult:
    return JobResult(items=sweep_exceptions(sessions=runtime.sessions, settings=runtime.settings, now=now))


@job("digests.daily", title="Each owner's morning digest", every=timedelta(minutes=5))
def _daily_job(*, runtime: Runtime, now: datetime) -> JobResult:
    with unit_of_work(runtime.sessions) as session:
        return JobResult(items=send_daily_digests(session, settings=runtime.settings, now=now))


@job("digests.weekly", title="Weekly fallback log to exception category owners", every=timedelta(minutes=15))
def _weekly_job(*, runtime: Runtime, now: datetime) -> JobResult:
    with unit_of_work(runtime.sessions) as session:
        return JobResult(items=send_weekly_digests(session, settings=runtime.settings, now=now))


@job("reviews.playbooks", title="Configuration reviews of playbooks whose review_every came due",
     every=timedelta(minutes=15))
def _reviews_job(*, runtime: Runtime, now: datetime) -> JobResult:
    with unit_of_work(runtime.sessions) as session:
        opened = open_due_reviews(session, settings=runtime.settings, now=now)
        overdue = check_overdue_reviews(session, settings=runtime.settings, now=now)
    return JobResult(items=opened + overdue, detail=f"{opened} opened, {overdue} overdue")
