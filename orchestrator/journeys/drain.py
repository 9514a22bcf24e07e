"""The drain service: the one place that owns the engine's transactions.

The CLI, the demo, the simulation and the worker all drain pending signals and due
timeouts through these functions, so a replay exercises exactly what production runs.
Policy: one transaction per batch; inside it, the engine isolates each signal.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session, sessionmaker

from orchestrator.config import Settings
from orchestrator.db import unit_of_work
from orchestrator.journeys.engine import process_pending, sweep_timeouts
from orchestrator.journeys.steps import ProcessReport
from orchestrator.worker.jobs import JobResult, job

if TYPE_CHECKING:
    from orchestrator.runtime import Runtime

__all__ = ["DrainReport", "drain_signals", "drain_timeouts"]

DEFAULT_BATCH = 500


@dataclass
class DrainReport:
    """What a drain did, batch by batch."""

    batches: list[ProcessReport] = field(default_factory=list)

    @property
    def signals(self) -> int:
        return sum(batch.signals for batch in self.batches)

    @property
    def errors(self) -> int:
        return sum(batch.counts.get("errors", 0) for batch in self.batches)


def drain_signals(*, sessions: sessionmaker[Session], settings: Settings, now: datetime,
                  limit: int = DEFAULT_BATCH, max_batches: int | None = None) -> DrainReport:
    """Process pending signals batch by batch until none are left (or `max_batches` ran)."""
    report = DrainReport()
    while max_batches is None or len(report.batches) < max_batches:
        with unit_of_work(sessions) as session:
            batch = process_pending(session=session, settings=settings, now=now, limit=limit)
        if not batch.signals:
            break
        report.batches.append(batch)
    return report


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
    return JobResult(items=report.signals, errors=report.errors)


@job("journeys.timeouts", title="Move on journeys whose wait expired", every=timedelta(minutes=1))
def _timeouts_job(*, runtime: Runtime, now: datetime) -> JobResult:
    return JobResult(items=drain_timeouts(sessions=runtime.sessions, settings=runtime.settings, now=now))
