"""The job registry: every periodic piece of work, defined once in code with a stable id.

The scheduler, `handoff tick`, the CLI's one-shot commands and the simulation all run
jobs from here, so what a test or a replay exercises is what production runs. A job is
correct without the scheduler: it claims its own rows and is idempotent by its data, so
a duplicate trigger or a second replica finds nothing left to do.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from orchestrator.runtime import Runtime

__all__ = ["Job", "JobResult", "all_jobs", "job", "register", "register_provider"]


@dataclass(frozen=True)
class JobResult:
    """What one run of a job did: items handled, items that failed, and a line for people."""

    items: int = 0
    errors: int = 0
    detail: str = ""


JobFunction = Callable[..., JobResult]  # called as fn(runtime=..., now=...)


@dataclass(frozen=True)
class Job:
    id: str  # stable: the scheduler's job id and the key of its run history
    title: str
    every: timedelta  # how often the scheduler runs it
    run: JobFunction


_JOBS: dict[str, Job] = {}
_PROVIDERS: list[Callable[[Runtime], Iterable[Job]]] = []


def register(job: Job) -> Job:
    """Add a job; registering the same id again replaces it (module reloads, tests)."""
    _JOBS[job.id] = job
    return job


def job(id: str, *, title: str, every: timedelta) -> Callable[[JobFunction], JobFunction]:
    """Decorator form of `register`."""
    def wrap(fn: JobFunction) -> JobFunction:
        register(Job(id=id, title=title, every=every, run=fn))
        return fn
    return wrap


def register_provider(provider: Callable[[Runtime], Iterable[Job]]) -> None:
    """Jobs that depend on the deployment (one sync job per enabled connector, say)."""
    if provider not in _PROVIDERS:
        _PROVIDERS.append(provider)


def all_jobs(runtime: Runtime) -> list[Job]:
    """Every job this deployment runs, in a stable order: the fixed ones, then the provided ones."""
    _load_builtin_jobs()
    found = dict(_JOBS)
    for provider in _PROVIDERS:
        for provided in provider(runtime):
            found[provided.id] = provided
    return list(found.values())


# Modules that define jobs with `@job`; imported by name when the jobs are listed, so the
# registry depends on none of them (they depend on it) and importing it stays cheap.
BUILTIN_JOB_MODULES = [
    "orchestrator.journeys.drain",
    "orchestrator.journeys.monitors",
    "orchestrator.journeys.health",
    "orchestrator.work.jobs",
    "orchestrator.delivery.deliver",
    "orchestrator.reports.digest",
    "connectors.sync",  # provides one sync.NAME job per enabled source connector
]


def _load_builtin_jobs() -> None:
    for name in BUILTIN_JOB_MODULES:
        importlib.import_module(name)


def run_at(job: Job, *, runtime: Runtime, now: datetime) -> JobResult:
    """Run one job once at `now` (for `handoff tick` and tests)."""
    return job.run(runtime=runtime, now=now)
