"""`handoff worker`, `handoff serve`, `handoff tick`: the scheduler, alone, embedded, or one instant at a time."""

from __future__ import annotations

import sys
import threading
from datetime import UTC, datetime

import click

from orchestrator.cli._runtime import pass_runtime
from orchestrator.errors import Invalid
from orchestrator.runtime import Runtime
from orchestrator.worker.scheduler import run_until_stopped, select_jobs, tick

_ONLY = click.option("--job", "only", multiple=True, metavar="ID",
                     help="Run only this job (repeatable); default: every job in the registry.")


def _parse_now(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise Invalid(f"--now: {value!r} is not an ISO-8601 time such as 2026-11-23T14:00:00Z",
                      field="now") from None
    if parsed.tzinfo is None:
        raise Invalid(f"--now: {value!r} has no time zone; add Z or an offset such as +01:00", field="now")
    return parsed.astimezone(UTC)


def _announce(line: str) -> None:
    click.echo(line)
    sys.stdout.flush()  # a supervisor reading a pipe sees it now, not at exit


@click.command()
@_ONLY
@pass_runtime
def worker(runtime: Runtime, only: tuple[str, ...]) -> None:
    """Run the scheduler until SIGTERM: every job on its interval, shared safely with other workers."""
    jobs = select_jobs(runtime, only)
    run_until_stopped(runtime, only=only, ready=lambda: _announce(
        f"worker: {len(jobs)} jobs ({', '.join(job.id for job in jobs)}); SIGTERM stops it"))
    click.echo("worker: stopped")


@click.command()
@_ONLY
@click.option("--host", default="127.0.0.1", show_default=True, help="Address the HTTP API listens on.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535), help="Its port.")
@pass_runtime
def serve(runtime: Runtime, only: tuple[str, ...], host: str, port: int) -> None:
    """Run Handoff as one service: the HTTP API and the scheduler in this process (the embedded default).

    In production run API replicas under gunicorn (deploy/gunicorn.conf.py) and `handoff worker` apart.
    """
    from orchestrator.api.serving import serve_http  # Flask stays out of the other commands

    stop = threading.Event()
    http = threading.Thread(target=serve_http, name="handoff-api", kwargs={
        "runtime": runtime, "host": host, "port": port, "stop": stop,
        "ready": lambda url: _announce(f"serve: API on {url} (docs at {url}/docs)")})
    http.start()
    count = len(select_jobs(runtime, only))
    try:
        run_until_stopped(runtime, only=only, stop=stop, ready=lambda: _announce(
            f"serve: scheduler with {count} jobs; SIGTERM stops both"))
    finally:
        stop.set()
        http.join(15)
    click.echo("serve: stopped")


@click.command("tick")
@click.option("--now", "now_text", metavar="ISO-8601", help="The instant to run at (default: now).")
@_ONLY
@pass_runtime
def tick_command(runtime: Runtime, now_text: str | None, only: tuple[str, ...]) -> None:
    """Run every job once at one instant (for cron and for tests), then exit."""
    now = _parse_now(now_text) or runtime.clock.now()
    failed = 0
    for outcome in tick(runtime, now=now, only=only):
        if outcome.error is not None:
            failed += 1
            click.echo(f"{outcome.job.id}: failed: {outcome.error}")
            continue
        assert outcome.result is not None
        line = f"{outcome.job.id}: {outcome.result.items} items"
        if outcome.result.errors:
            line += f", {outcome.result.errors} errors"
        if outcome.result.detail:
            line += f" ({outcome.result.detail})"
        click.echo(f"{line} in {outcome.duration_ms} ms")
    if failed:
        raise click.exceptions.Exit(1)
