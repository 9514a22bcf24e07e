"""`handoff engine run`: one pass of the engine, for cron today and the scheduler later."""

from __future__ import annotations

import click

from orchestrator.cli._runtime import pass_runtime
from orchestrator.journeys.drain import drain_signals, drain_timeouts
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
    report = drain_signals(sessions=runtime.sessions, settings=runtime.settings, now=runtime.clock.now(),
                           limit=limit)
    for batch in report.batches:
        click.echo(f"signals: {batch}")
    if not report.signals:
        click.echo("signals: none pending")
    moved = drain_timeouts(sessions=runtime.sessions, settings=runtime.settings, now=runtime.clock.now(),
                           limit=limit)
    click.echo(f"timeouts: {moved} journey{'s' if moved != 1 else ''} moved on" if moved else "timeouts: none due")
