"""`handoff engine run`: one pass of the engine, for cron today and the scheduler later."""

from __future__ import annotations

import click

from orchestrator.cli._runtime import pass_runtime
from orchestrator.db import unit_of_work
from orchestrator.journeys.engine import process_pending, sweep_timeouts
from orchestrator.runtime import Runtime


@click.group()
def engine() -> None:
    """Run the engine by hand or from cron."""


@engine.command("run")
@click.option("--limit", default=500, show_default=True, type=click.IntRange(1),
              help="Signals or journeys per transaction.")
@pass_runtime
def run_command(runtime: Runtime, limit: int) -> None:
    """Process pending signals until none are left, then move on journeys whose wait has expired.

    Safe to run again at once: processed signals are marked and a timed-out wait is
    cleared, so a second run finds nothing to do.
    """
    # One transaction per batch, so a long backlog commits as it goes.
    processed = 0
    while True:
        with unit_of_work(runtime.sessions) as session:
            report = process_pending(session=session, settings=runtime.settings, now=runtime.clock.now(),
                                     limit=limit)
        if not report.signals:
            break
        processed += report.signals
        click.echo(f"signals: {report}")
    if not processed:
        click.echo("signals: none pending")
    # One sweep batch per run: a journey whose timeout fails stays due, and looping here
    # would queue an exception item for it on every pass; the next run takes the rest.
    with unit_of_work(runtime.sessions) as session:
        moved = sweep_timeouts(session=session, settings=runtime.settings, now=runtime.clock.now(), limit=limit)
    click.echo(f"timeouts: {moved} journey{'s' if moved != 1 else ''} moved on" if moved else "timeouts: none due")
