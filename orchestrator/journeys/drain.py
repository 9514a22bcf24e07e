"""The drain service: the one place that owns the engine's transactions.

The CLI, the demo, the simulation and the worker all drain pending signals and due
timeouts through these functions, so a replay exercises exactly what production runs.
Policy: one transaction per batch of whole accounts; inside it, the engine isolates each
signal in a savepoint. A transient failure that takes the whole batch (a lost connection,
a failed commit) rolls it back: nothing of it is kept, every signal stays pending, and the
drain stops for this run so the next one retries.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from orchestrator.config import Settings
from orchestrator.db import describe_error, is_transient, unit_of_work
from orchestrator.journeys.engine import process_pending, sweep_timeouts
from orchestrator.journeys.steps import ProcessReport
from orchestrator.models import Signal
from orchestrator.worker.jobs import JobResult, job

if TYPE_CHECKING:
    from orchestrator.runtime import Runtime

__all__ = ["DEFAULT_BATCH", "DrainReport", "drain_signals", "drain_timeouts", "next_retry"]

log = logging.getLogger(__name__)

# A person's decision locks one account and waits at most for the batch holding it: keep
# batches small enough that this is a blink, large enough to amortise a round trip.
DEFAULT_BATCH = 100


@dataclass
class DrainReport:
    """What a drain did, batch by batch."""

    batches: list[ProcessReport] = field(default_factory=list)
    lost_batches: int = 0  # rolled back whole by a transient failure; their signals stay pending

    @property
    def signals(self) -> int:
        return sum(batch.signals for batch in self.batches)

    @property
    def errors(self) -> int:
        return sum(batch.counts.get("errors", 0) for batch in self.batches)

    @property
    def deferred(self) -> int:
        return sum(batch.counts.get("deferred", 0) for batch in self.batches)


def drain_signals(*, sessions: sessionmaker[Session], settings: Settings, now: datetime,
                  limit: int = DEFAULT_BATCH, max_batches: int | None = None) -> DrainReport:
    """Process pending signals batch by batch until none is due (or `max_batches` ran)."""
    report = DrainReport()
    while max_batches is None or len(report.batches) < max_batches:
        try:
            with unit_of_work(sessions) as session:
                batch = process_pending(session=session, settings=settings, now=now, limit=limit)
        except Exception as exc:
            if not is_transient(exc):
                raise
            log.warning("an engine batch was rolled back by a transient error: %s", describe_error(exc))
            report.lost_batches += 1
            break
        if not batch.signals and not batch.counts.get("deferred"):
            break
        report.batches.append(batch)
        if not batch.signals:
            break  # everything claimable was deferred: nothing more is due now
    return report


def next_retry(*, sessions: sessionmaker[Session]) -> datetime | None:
    """When the earliest deferred signal may be tried again (None: nothing is waiting on a retry)."""
    with unit_of_work(sessions, read_only=True) as session:
        return session.scalar(select(func.min(Signal.retry_at)).where(Signal.processed_at.is_(None)))


def drain_timeouts(*, sessions: sessionmaker[Session], settings: Settings, now: datetime,
                   limit: int = DEFAULT_BATCH) -> int:
    """One batch of due wait timeouts and override windows; returns journeys moved.

    One batch only: a journey whose timeout fails stays due, and looping would queue an
    exception item for it on every pass; the next run takes the rest.
    """
    with unit_of_work(sessions) as session:
        return sweep_timeouts(session=session, settings=settings, now=now, limit=limit)


@job("signals.drain", title="Evaluate pending signals", every=timedelta(seconds=5))
def _signals_job(*, runtime: Runtime, now: datetime) -> JobResult:
    report = drain_signals(sessions=runtime.sessions, settings=runtime.settings, now=now)
    return JobResult(items=report.signals, errors=report.errors + report.lost_batches,
                     detail=f"{report.deferred} deferred" if report.deferred else "")


@job("journeys.timeouts", title="Move on journeys whose wait expired", every=timedelta(minutes=1))
def _timeouts_job(*, runtime: Runtime, now: datetime) -> JobResult:
    return JobResult(items=drain_timeouts(sessions=runtime.sessions, settings=runtime.settings, now=now))
