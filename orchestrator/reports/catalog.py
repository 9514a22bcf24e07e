"""Every report by name, as rows of named figures: what the CLI and the API both export."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from orchestrator.reports.automation import automation_report
from orchestrator.reports.exceptions import exceptions_report
from orchestrator.reports.loop import loop_report
from orchestrator.reports.noise import noise_report
from orchestrator.reports.oversight import oversight_report
from orchestrator.reports.sla import GROUPINGS, sla_report
from orchestrator.reports.time_saved import time_saved_report

__all__ = ["REPORTS", "Report", "run_report", "to_csv"]

Rows = list[dict[str, Any]]


@dataclass(frozen=True)
class Report:
    name: str
    title: str
    groupings: tuple[str, ...]  # what `by` may be; empty: the report has one fixed grouping
    run: Callable[..., Rows]    # run(sessions=, since=, until=, by=) -> rows


def _sla(*, sessions: sessionmaker[Session], since: datetime, until: datetime, by: str | None) -> Rows:
    rows, rungs = sla_report(sessions=sessions, since=since, until=until, by=by or "owner")  # type: ignore[arg-type]
    return [row.figures(rungs) for row in rows]


def _oversight(*, sessions: sessionmaker[Session], since: datetime, until: datetime, by: str | None) -> Rows:
    return [row.figures() for row in oversight_report(sessions=sessions, since=since, until=until)]


def _noise(*, sessions: sessionmaker[Session], since: datetime, until: datetime, by: str | None) -> Rows:
    return [row.figures() for row in noise_report(sessions=sessions, since=since, until=until)]


def _loop(*, sessions: sessionmaker[Session], since: datetime, until: datetime, by: str | None) -> Rows:
    return [row.figures() for row in loop_report(sessions=sessions, since=since, until=until)]


def _automation(*, sessions: sessionmaker[Session], since: datetime, until: datetime, by: str | None) -> Rows:
    return automation_report(sessions=sessions, since=since, until=until)


def _exceptions(*, sessions: sessionmaker[Session], since: datetime, until: datetime, by: str | None) -> Rows:
    return exceptions_report(sessions=sessions, since=since, until=until)


def _time_saved(*, sessions: sessionmaker[Session], since: datetime, until: datetime, by: str | None,
                estimates: Mapping[str, int] | None = None) -> Rows:
    return time_saved_report(sessions=sessions, since=since, until=until, estimates=estimates or {})


REPORTS: dict[str, Report] = {report.name: report for report in (
    Report("sla", "SLA adherence", GROUPINGS, _sla),
    Report("oversight", "Oversight calibration, per in/on-the-loop step", (), _oversight),
    Report("noise", "Noise, per playbook step", (), _noise),
    Report("loop", "The Loop: funnel, drop-off, skipped stages, time in stage", (), _loop),
    Report("automation", "Automation mix per stage", (), _automation),
    Report("exceptions", "Exception queue per category", (), _exceptions),
    Report("time-saved", "Time-saved ledger per playbook", (), _time_saved),
)}


def run_report(name: str, *, sessions: sessionmaker[Session], since: datetime, until: datetime,
               by: str | None = None, estimates: Mapping[str, int] | None = None) -> Rows:
    """The named report's rows for [since, until); ValueError for an unknown name or grouping."""
    report = REPORTS.get(name)
    if report is None:
        raise ValueError(f"no report {name!r} (known: {', '.join(REPORTS)})")
    if by is not None and by not in report.groupings:
        raise ValueError(f"the {name} report groups by {', '.join(report.groupings) or 'playbook and step only'}")
    if name == "time-saved":
        return _time_saved(sessions=sessions, since=since, until=until, by=by, estimates=estimates)
    return report.run(sessions=sessions, since=since, until=until, by=by)


def to_csv(rows: Rows) -> str:
    """Rows as CSV with a header line; an empty report is an empty string."""
    if not rows:
        return ""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()
