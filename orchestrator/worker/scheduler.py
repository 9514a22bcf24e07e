"""The scheduler: APScheduler 3 with an in-memory job store in every process, jobs from the registry.

Never a shared job store: correctness rests on the jobs, which claim their rows and are
idempotent by their data, so N processes each running every job share the work and a
duplicate trigger finds nothing left. APScheduler only says "about now": ids are stable
(`replace_existing`), a run missed while the process was busy or down is coalesced into
one, and a job never overlaps itself in a process (`max_instances=1`).
"""

from __future__ import annotations

import logging
import signal
import threading
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from types import FrameType

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.memory import MemoryJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy import select

from orchestrator.db import dialect_insert, unit_of_work
from orchestrator.errors import Invalid
from orchestrator.models import JobRun
from orchestrator.runtime import Runtime, settle_heap
from orchestrator.worker.jobs import Job, JobResult, all_jobs

__all__ = ["JobOutcome", "build_scheduler", "job_history", "run_recorded", "run_until_stopped", "select_jobs",
           "tick"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class JobOutcome:
    job: Job
    result: JobResult | None
    error: str | None
    duration_ms: int


def select_jobs(runtime: Runtime, only: Iterable[str] = ()) -> list[Job]:
    """The registry's jobs, or just those named (an unknown name is one clear error)."""
    jobs = all_jobs(runtime)
    wanted = list(only)
    if not wanted:
        return jobs
    known = {job.id: job for job in jobs}
    for name in wanted:
        if name not in known:
            raise Invalid(f'no job "{name}"; jobs: {", ".join(known)}', field="job")
    return [known[name] for name in wanted]


def run_recorded(job: Job, *, runtime: Runtime, now: datetime | None = None) -> JobOutcome:
    """Run a job once and record its run in `job_runs`; an exception is recorded, never raised."""
    at = now or runtime.clock.now()
    started = time.monotonic()
    result: JobResult | None = None
    error: str | None = None
    try:
        result = job.run(runtime=runtime, now=at)
    except Exception as exc:  # a failed run is history to show, and the next run tries again
        error = f"{type(exc).__name__}: {exc}".splitlines()[0][:500]
        log.error("job %s failed: %s\n%s", job.id, error, traceback.format_exc())
    duration_ms = int((time.monotonic() - started) * 1000)
    try:
        _record(runtime, job=job, at=at, duration_ms=duration_ms, result=result, error=error)
    except Exception:  # the history is best effort; the job's own work is committed
        log.exception("could not record the run of job %s", job.id)
    return JobOutcome(job=job, result=result, error=error, duration_ms=duration_ms)


def _record(runtime: Runtime, *, job: Job, at: datetime, duration_ms: int, result: JobResult | None,
            error: str | None) -> None:
    values = dict(
        last_started_at=at, last_finished_at=runtime.clock.now() if error or result else at,
        last_duration_ms=duration_ms, last_items=result.items if result else 0,
        last_errors=(result.errors if result else 1), last_detail=result.detail if result else "",
        last_error=error,
    )
    with unit_of_work(runtime.sessions) as session:
        insert = dialect_insert(session, JobRun).values(job_id=job.id, runs=1, failed_runs=int(error is not None),
                                                        **values)
        session.execute(insert.on_conflict_do_update(
            index_elements=["job_id"],
            set_={**values, "runs": JobRun.runs + 1, "failed_runs": JobRun.failed_runs + int(error is not None)},
        ))


def job_history(runtime: Runtime) -> dict[str, JobRun]:
    """The last run of each job that ran, by job id."""
    with unit_of_work(runtime.sessions, read_only=True) as session:
        return {run.job_id: run for run in session.scalars(select(JobRun))}


def tick(runtime: Runtime, *, now: datetime, only: Iterable[str] = ()) -> list[JobOutcome]:
    """Every job once at `now`, in registry order (cron, tests); each does only what is due then."""
    return [run_recorded(job, runtime=runtime, now=now) for job in select_jobs(runtime, only)]


def build_scheduler(runtime: Runtime, *, only: Iterable[str] = ()) -> BackgroundScheduler:
    """A scheduler with every job on its interval, the first run at once."""
    scheduler = BackgroundScheduler(
        jobstores={"default": MemoryJobStore()},
        executors={"default": ThreadPoolExecutor(max_workers=4)},
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
        timezone=UTC,
    )
    for job in select_jobs(runtime, only):
        scheduler.add_job(
            run_recorded, trigger=IntervalTrigger(seconds=job.every.total_seconds(), timezone=UTC),
            id=job.id, name=job.title, kwargs={"job": job, "runtime": runtime},
            replace_existing=True, coalesce=True, max_instances=1, next_run_time=datetime.now(UTC),
        )
    return scheduler


def run_until_stopped(runtime: Runtime, *, only: Iterable[str] = (), stop: threading.Event | None = None,
                      ready: Callable[[], None] | None = None) -> None:
    """Run the scheduler until SIGTERM or SIGINT (or `stop`), then let running jobs finish.

    A job's batches are separate transactions, so the one in flight commits and nothing
    half-done is left; rows it had not claimed stay due for the next process.
    """
    stop = stop or threading.Event()
    scheduler = build_scheduler(runtime, only=only)

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("signal %s: stopping after the jobs in flight", signum)
        stop.set()

    previous = {}
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGTERM, signal.SIGINT):
            previous[signum] = signal.signal(signum, on_signal)
    settle_heap()
    scheduler.start()
    if ready is not None:
        ready()  # after the handlers: a SIGTERM from here on is a graceful stop
    try:
        stop.wait()
    finally:
        scheduler.shutdown(wait=True)
        for signum, handler in previous.items():
            signal.signal(signum, handler)
