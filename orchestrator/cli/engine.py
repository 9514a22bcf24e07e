"""`handoff engine run`: one pass of the engine, for cron and for operators."""

from __future__ import annotations

import time

import click

from orchestrator.cli._runtime import pass_runtime
from orchestrator.clock import SystemClock
from orchestrator.journeys.drain import DEFAULT_BATCH, drain_signals, drain_timeouts, next_retry
from orchestrator.runtime import Runtime

# Exit codes: 1 = some signal failed for good (see the exception queue); 75 (EX_TEMPFAIL) =
# some signals still wait for a retry after transient errors; the next run takes them.
EXIT_FAILED = 1
EXIT_RETRY_LATER = 75


@click.group()
def engine() -> None:
    """Run the engine by hand or from cron."""


@engine.command("run")
@click.option("--limit", default=DEFAULT_BATCH, show_default=True, type=click.IntRange(1),
              help="Signals or journeys per transaction.")
@click.option("--retry-for", default=60, show_default=True, type=click.IntRange(0),
              help="Seconds to keep retrying signals deferred by transient errors before exiting.")
@pass_runtime
def run_command(runtime: Runtime, limit: int, retry_for: int) -> None:
    """Process pending signals until none are left, then move on journeys whose wait has expired.

    Safe to run again at once, and beside other workers: each account's signals are taken
    by one worker at a time, in arrival order. Exits 1 if a signal failed (it is in the
    exception queue), 75 if some still wait for a retry after transient errors.
    """
    deadline = time.monotonic() + retry_for
    processed = errors = 0
    waiting = False
    while True:
        report = drain_signals(sessions=runtime.sessions, settings=runtime.settings, now=runtime.clock.now(),
                               limit=limit)
        for batch in report.batches:
            click.echo(f"signals: {batch}")
        processed += report.signals
        errors += report.errors
        retry_at = next_retry(sessions=runtime.sessions)
        waiting = report.lost_batches > 0 or retry_at is not None
        # Only a real clock moves while we sleep; with a fixed one a retry never comes due.
        if not waiting or not isinstance(runtime.clock, SystemClock) or time.monotonic() >= deadline:
            break
        pause = (retry_at - runtime.clock.now()).total_seconds() if retry_at else 1.0
        time.sleep(min(max(pause, 0.05), max(deadline - time.monotonic(), 0.0)))
    if not processed:
        click.echo("signals: none pending")
    moved = drain_timeouts(sessions=runtime.sessions, settings=runtime.settings, now=runtime.clock.now(),
                           limit=limit)
    click.echo(f"timeouts: {moved} journey{'s' if moved != 1 else ''} moved on" if moved else "timeouts: none due")
    if errors:
        click.echo(f"handoff: {errors} signal{'s' if errors != 1 else ''} failed; see `handoff exceptions list`",
                   err=True)
        raise SystemExit(EXIT_FAILED)
    if waiting:
        click.echo("handoff: some signals wait for a retry after transient errors; the next run takes them",
                   err=True)
        raise SystemExit(EXIT_RETRY_LATER)
