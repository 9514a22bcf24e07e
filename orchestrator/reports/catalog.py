"""Every report by name, as rows of named figures: what the CLI and the API both export."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from orchestrator.reports.automation import GROUPINGS as AUTOMATION_GROUPINGS
from orchestrator.reports.automation import automation_report
from orchestrator.reports.exceptions import GROUPINGS as EXCEPTIONS_GROUPINGS
from orchestrator.reports.exceptions import exceptions_report
from orchestrator.reports.experiments import experiments_report
from orchestrator.reports.loop import loop_report
from orchestrator.reports.noise import noise_report, noise_rows
from orchestrator.reports.oversight import GROUPINGS as OVERSIGHT_GROUPINGS
from orchestrator.reports.oversight import oversight_rows
from orchestrator.reports.routing import GROUPINGS as ROUTING_GROUPINGS
from orchestrator.reports.routing import routing_report
from orchestrator.reports.scope import EVERYTHING, RUN_GROUPINGS, Scope
from orchestrator.reports.sla import GROUPINGS as SLA_GROUPINGS
from orchestrator.reports.sla import sla_report
from orchestrator.reports.time_saved import GROUPINGS as TIME_SAVED_GROUPINGS
from orchestrator.reports.time_saved import time_saved_report

__all__ = ["REPORTS", "Report", "run_report", "to_csv"]

Rows = list[dict[str, Any]]


@dataclass(frozen=True)
class Report:
    name: str
    title: str
    groupings: tuple[str, ...]  # what `by` may name; empty: the report has one fixed grouping
    run: Callable[..., Rows]    # run(sessions=, since=, until=, by=, scope=, estimates=) -> rows


def _sla(*, sessions: sessionmaker[Session], since: datetime, until: datetime, by: str | None, scope: Scope,
         estimates: Mapping[str, int]) -> Rows:
    return sla_report(sessions=sessions, since=since, until=until, by=by, scope=scope)


def _oversight(*, sessions: sessionmaker[Session], since: datetime, until: datetime, by: str | None, scope: Scope,
               estimates: Mapping[str, int]) -> Rows:
    return oversight_rows(sessions=sessions, since=since, until=until, by=by, scope=scope)


def _noise(*, sessions: sessionmaker[Session], since: datetime, until: datetime, by: str | None, scope: Scope,
           estimates: Mapping[str, int]) -> Rows:
    if by not in (None, "step"):  # step: per playbook step, the default
        return noise_rows(sessions=sessions, since=since, until=until, scope=scope, by=by)
    return [row.figures() for row in noise_report(sessions=sessions, since=since, until=until, scope=scope)]


def _loop(*, sessions: sessionmaker[Session], since: datetime, until: datetime, by: str | None, scope: Scope,
          estimates: Mapping[str, int]) -> Rows:
    return [row.figures() for row in loop_report(sessions=sessions, since=since, until=until, scope=scope)]


def _automation(*, sessions: sessionmaker[Session], since: datetime, until: datetime, by: str | None, scope: Scope,
                estimates: Mapping[str, int]) -> Rows:
    return automation_report(sessions=sessions, since=since, until=until, scope=scope, by=by)


def _exceptions(*, sessions: sessionmaker[Session], since: datetime, until: datetime, by: str | None, scope: Scope,
                estimates: Mapping[str, int]) -> Rows:
    return exceptions_report(sessions=sessions, since=since, until=until, scope=scope, by=by)


def _time_saved(*, sessions: sessionmaker[Session], since: datetime, until: datetime, by: str | None, scope: Scope,
                estimates: Mapping[str, int]) -> Rows:
    return time_saved_report(sessions=sessions, since=since, until=until, by=by, scope=scope, estimates=estimates)


def _routing(*, sessions: sessionmaker[Session], since: datetime, until: datetime, by: str | None, scope: Scope,
             estimates: Mapping[str, int]) -> Rows:
    return routing_report(sessions=sessions, since=since, until=until, by=by, scope=scope)


def _experiments(*, sessions: sessionmaker[Session], since: datetime, until: datetime, by: str | None,
                 scope: Scope, estimates: Mapping[str, int]) -> Rows:
    return experiments_report(sessions=sessions, since=since, until=until, scope=scope)


REPORTS: dict[str, Report] = {report.name: report for report in (
    Report("sla", "SLA adherence", SLA_GROUPINGS, _sla),
    Report("oversight", "Oversight calibration, per in/on-the-loop step", OVERSIGHT_GROUPINGS, _oversight),
    Report("noise", "Noise, per playbook step", ("step",) + RUN_GROUPINGS, _noise),
    Report("loop", "The Loop: funnel, drop-off, skipped stages, time in stage, speed to lead", (), _loop),
    Report("automation", "Automation mix per stage", AUTOMATION_GROUPINGS, _automation),
    Report("exceptions", "Exception queue per category", EXCEPTIONS_GROUPINGS, _exceptions),
    Report("time-saved", "Time-saved ledger per playbook and week", TIME_SAVED_GROUPINGS, _time_saved),
    Report("routing", "Confidence routing per route step: automated or to a person, and overturns",
           ROUTING_GROUPINGS, _routing),
    Report("experiments", "Play experiments per experiment and variant: journeys, outcomes, conversion", (),
           _experiments),
)}


def run_report(name: str, *, sessions: sessionmaker[Session], since: datetime, until: datetime,
               by: str | None = None, scope: Scope = EVERYTHING,
               estimates: Mapping[str, int] | None = None) -> Rows:
    """The named report's rows for [since, until) within `scope`; ValueError for an unknown name or grouping."""
    report = REPORTS.get(name)
    if report is None:
        raise ValueError(f"no report {name!r} (known: {', '.join(REPORTS)})")
    if by is not None and not report.groupings:
        raise ValueError(f"the {name} report has one fixed grouping; it takes no by")
    return report.run(sessions=sessions, since=since, until=until, by=by, scope=scope, estimates=estimates or {})


def to_csv(rows: Rows) -> str:
    """Rows as CSV with a header line; an empty report is an empty string."""
    if not rows:
        return ""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()
