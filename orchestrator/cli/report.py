"""`handoff report NAME`: report figures as a table, JSON or CSV (orchestrator.reports.catalog)."""

from __future__ import annotations

import json
from datetime import datetime

import click

from orchestrator.cli._format import table
from orchestrator.cli._runtime import pass_runtime
from orchestrator.durations import DurationError, parse_duration
from orchestrator.errors import Invalid
from orchestrator.reports.catalog import REPORTS, Report, run_report, to_csv
from orchestrator.reports.scope import Scope
from orchestrator.runtime import Runtime


@click.group()
def report() -> None:
    """Reports over what Handoff recorded (read-only)."""


_SINCE = click.option("--since", default="30d", show_default=True,
                      help="How far back (calendar time, e.g. 7d, 12w).")
_FORMAT = click.option("--format", "fmt", type=click.Choice(["table", "json", "csv"]), default="table",
                       show_default=True)


# The catalog names each report once; the CLI's help says what its rows hold.
_HELP = {
    "sla": "Ack and due adherence, breaches, escalations by rung, median/p90 time to ack and done, time paused.",
    "oversight": "Per in/on-the-loop step (or --by group): approval, rejection, override rates, median time to decide, "
                 "quick decisions, flags.",
    "noise": "Per playbook step (or --by group): runs skipped, tasks closed without action, tasks marked not "
             "useful.",
    "loop": "Per stage: accounts entered, moved on, drop-off, stages jumped over, median/p90 days in stage, "
            "signal to first human touch (speed to lead on acquire).",
    "automation": "Per stage (or --by group): automated, human and hybrid step runs and the share of each "
                  "oversight level.",
    "exceptions": "Per category (or --by owner or team): items raised, occurrences, the open queue, overdue "
                  "share, median and oldest open age.",
    "time-saved": "Per playbook and/or week: minutes of automated routine work ([estimates]) against human "
                  "minutes.",
    "routing": "Per route step (or --by group): decisions routed automatically or to a person, why, and how "
               "often people confirmed or overturned the proposed path.",
    "experiments": "Per experiment and variant: journeys entered, completed, dropped, converted to a later stage, "
                   "days to convert, tasks and whether people found them useful.",
}


def _command(entry: Report) -> click.Command:
    def show(runtime: Runtime, since: str, fmt: str, team: str, stage: str, playbook: str,
             by: str | None = None) -> None:
        _show(runtime, entry.name, since, by, fmt, Scope(team=team, stage=stage, playbook=playbook))

    command = pass_runtime(show)
    command = _FORMAT(command)
    if entry.groupings:
        command = click.option("--by", "by", default=entry.groupings[0], show_default=True,
                               help=f"One of {', '.join(entry.groupings)}"
                                    + (", or one of them and week (e.g. team,week: the weekly trend)."
                                       if "week" in entry.groupings else "."))(command)
    for name in ("playbook", "stage", "team"):
        command = click.option(f"--{name}", name, default="", help=f"Only this {name}.")(command)
    command = _SINCE(command)
    return click.command(entry.name, help=_HELP.get(entry.name, entry.title))(command)


for _entry in REPORTS.values():
    report.add_command(_command(_entry))


def _period(runtime: Runtime, since: str) -> tuple[datetime, datetime]:
    try:
        duration = parse_duration(since)
    except DurationError as exc:
        raise Invalid(f"--since: {exc}", field="since") from None
    if duration.is_business:
        raise Invalid(f'--since: "{since}" is business time; give calendar time such as 30d', field="since")
    now = runtime.clock.now()
    return now - duration.calendar, now


def _show(runtime: Runtime, name: str, since: str, by: str | None, fmt: str, scope: Scope) -> None:
    start, end = _period(runtime, since)
    try:
        figures = run_report(name, sessions=runtime.sessions, since=start, until=end, by=by, scope=scope,
                             estimates=runtime.settings.action_estimates)
    except ValueError as exc:
        raise Invalid(f"--by: {exc}", field="by") from None
    if fmt == "json":
        click.echo(json.dumps({"report": name, "since": start.isoformat(), "until": end.isoformat(),
                               "by": by, "rows": figures}, indent=2))
        return
    if fmt == "csv":
        click.echo(to_csv(figures), nl=False)
        return
    if not figures:
        click.echo(f"nothing recorded in the last {since}")
        return
    headers = list(figures[0])
    shown = [[_cell(h, row[h]) for h in headers] for row in figures]
    for line in table([h if h != "group" else (by or h).split(",")[0] for h in headers], shown):
        click.echo(line)


def _cell(header: str, value: object) -> str:
    if value is None:
        return "-"
    if (header.endswith(("_adherence", "_rate", "_share"))) and isinstance(value, float):
        return f"{value:.0%}"
    return str(value)
