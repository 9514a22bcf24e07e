"""`handoff exceptions list|report|resolve`: the queue of what fell off the normal path."""

from __future__ import annotations

from datetime import timedelta

import click

from orchestrator import exception_queue
from orchestrator.cli._format import when
from orchestrator.cli._options import ACTOR, RECORD_ID
from orchestrator.cli._runtime import pass_runtime
from orchestrator.db import unit_of_work
from orchestrator.models import ExceptionItem
from orchestrator.runtime import Runtime


@click.group()
def exceptions() -> None:
    """The exception queue: items with a named owner and a response window."""


@exceptions.command("list")
@click.option("--category", help="Only this category, e.g. unknown_account.")
@click.option("--all", "show_all", is_flag=True, help="Include resolved items.")
@pass_runtime
def list_command(runtime: Runtime, category: str | None, show_all: bool) -> None:
    """List open items, most urgent first."""
    now = runtime.clock.now()
    with unit_of_work(runtime.sessions) as session:
        items = exception_queue.list_items(session, status=None if show_all else exception_queue.ItemStatus.OPEN,
                                           category=category)
        if not items:
            click.echo("no exception items" if show_all else "no open exception items")
            return
        for item in items:
            state = item.status
            if item.status == exception_queue.ItemStatus.OPEN and item.respond_by < now:
                state = "overdue"
            seen = _occurrences(item) if item.occurrences > 1 else ""
            click.echo(f"#{item.id}  {item.category}  {state}  owner {item.owner}  "
                       f"respond by {when(item.respond_by)}  {item.message}{seen}")


def _occurrences(item: ExceptionItem) -> str:
    samples = ", ".join(map(str, item.sample_signal_ids))
    more = "..." if item.occurrences > len(item.sample_signal_ids) else ""
    return (f"  x{item.occurrences} (first {when(item.first_seen_at)}, last {when(item.last_seen_at)}; "
            f"signals {samples}{more})")


@exceptions.command("report")
@click.option("--weeks", default=4, show_default=True, type=click.IntRange(1, 104),
              help="How many ISO weeks, the current one included.")
@pass_runtime
def report_command(runtime: Runtime, weeks: int) -> None:
    """The weekly fallback report: categories ranked by how often they happened."""
    with unit_of_work(runtime.sessions) as session:
        reports = exception_queue.weekly_fallback_report(session, now=runtime.clock.now(), weeks=weeks)
    for report in reports:
        last_day = report.start + timedelta(days=6)
        total = sum(row.count for row in report.categories)
        click.echo(f"{report.week} ({report.start:%b %d} - {last_day:%b %d}): {total} item{'s' if total != 1 else ''}")
        for rank, row in enumerate(report.categories, start=1):
            oldest = f"oldest open {when(row.oldest_open)}" if row.oldest_open else "none open"
            click.echo(f"  {rank}. {row.category:<20} {row.count:>5}  owner {row.owner}  {oldest}")


@exceptions.command("resolve")
@click.argument("item_id", type=RECORD_ID)
@click.option("--by", "by", required=True, type=ACTOR, help="Who resolved it (an email).")
@click.option("--note", default="", help="What was done.")
@pass_runtime
def resolve_command(runtime: Runtime, item_id: int, by: str, note: str) -> None:
    """Mark exception item ITEM_ID resolved."""
    with unit_of_work(runtime.sessions) as session:
        item = exception_queue.resolve_item(session, item_id=item_id, by=by, at=runtime.clock.now(), note=note)
        click.echo(f"#{item.id} resolved by {item.resolved_by}")
