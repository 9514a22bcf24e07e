"""`handoff report sla`: SLA adherence by owner, team, stage or playbook, as a table, JSON or CSV."""

from __future__ import annotations

import csv
import io
import json

import click

from orchestrator.cli._format import table
from orchestrator.cli._runtime import pass_runtime
from orchestrator.durations import DurationError, parse_duration
from orchestrator.errors import Invalid
from orchestrator.reports.sla import GROUPINGS, sla_report
from orchestrator.runtime import Runtime


@click.group()
def report() -> None:
    """Reports over what Handoff recorded (read-only)."""


@report.command("sla")
@click.option("--since", default="30d", show_default=True, help="How far back, by task creation (e.g. 7d, 12w).")
@click.option("--by", "by", type=click.Choice(GROUPINGS), default="owner", show_default=True)
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv"]), default="table", show_default=True)
@pass_runtime
def sla_command(runtime: Runtime, since: str, by: str, fmt: str) -> None:
    """Ack and due adherence, breaches, escalations by rung, median/p90 time to ack and done, time paused."""
    try:
        duration = parse_duration(since)
    except DurationError as exc:
        raise Invalid(f"--since: {exc}", field="since") from None
    if duration.is_business:
        raise Invalid(f'--since: "{since}" is business time; give calendar time such as 30d', field="since")
    now = runtime.clock.now()
    rows, rungs = sla_report(sessions=runtime.sessions, since=now - duration.calendar, until=now,
                             by=by)  # type: ignore[arg-type]
    figures = [row.figures(rungs) for row in rows]
    if fmt == "json":
        click.echo(json.dumps({"since": (now - duration.calendar).isoformat(), "until": now.isoformat(),
                               "by": by, "rows": figures}, indent=2))
        return
    headers = list(figures[0]) if figures else ["group", "tasks"]
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=headers, lineterminator="\n")
        writer.writeheader()
        writer.writerows(figures)
        click.echo(out.getvalue(), nl=False)
        return
    if not figures:
        click.echo(f"no tasks created in the last {since}")
        return
    shown = [[_cell(h, row[h]) for h in headers] for row in figures]
    for line in table([h if h != "group" else by for h in headers], shown):
        click.echo(line)


def _cell(header: str, value: object) -> str:
    if value is None:
        return "-"
    if header.endswith("_adherence") and isinstance(value, float):
        return f"{value:.0%}"
    return str(value)
