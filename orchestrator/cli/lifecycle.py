"""`handoff init` and `handoff status`: set up a database and say what is in it."""

from __future__ import annotations

import click
from sqlalchemy import func, select

from orchestrator import models, schema
from orchestrator.cli._format import table, when
from orchestrator.cli._runtime import pass_runtime
from orchestrator.db import unit_of_work
from orchestrator.errors import HandoffError
from orchestrator.playbook.store import apply_playbooks
from orchestrator.resources import shipped_playbooks_dir
from orchestrator.runtime import Runtime
from orchestrator.worker.jobs import all_jobs
from orchestrator.worker.scheduler import job_history

_COUNTED = (
    ("accounts", models.Account), ("owners", models.Owner), ("signals", models.Signal),
    ("playbook versions", models.PlaybookVersion), ("journeys", models.Journey),
    ("tasks", models.Task), ("outbox messages", models.OutboxMessage),
    ("exception items", models.ExceptionItem),
)


@click.command()
@pass_runtime
def init(runtime: Runtime) -> None:
    """Create the database, migrate it and load the shipped playbooks."""
    schema.upgrade(runtime.engine)
    click.echo(f"database ready at {runtime.settings.describe()['database']} "
               f"(revision {schema.current_revision(runtime.engine)})")
    with unit_of_work(runtime.sessions) as session:
        report = apply_playbooks(session=session, paths=[shipped_playbooks_dir()],
                                 now=runtime.clock.now(), actor="handoff init")
    if not report.applied:  # a shipped playbook that does not validate is our bug, said plainly
        raise HandoffError("shipped playbooks are invalid: "
                           + "; ".join(str(f) for f in report.findings if f.is_error))
    for change in report.changes:
        click.echo(f"playbook {change.headline()}")
    _print_status(runtime)


@click.command()
@pass_runtime
def status(runtime: Runtime) -> None:
    """Show the configuration in use and how many of each record the database holds."""
    for key, value in runtime.settings.describe().items():
        click.echo(f"{key}: {value}")
    _print_status(runtime)
    _print_jobs(runtime)


def _print_jobs(runtime: Runtime) -> None:
    """Each scheduled job's last run (any process): when, how long, items done, errors."""
    history = job_history(runtime)
    rows = []
    for job in all_jobs(runtime):
        run = history.get(job.id)
        if run is None:
            rows.append([job.id, "never", "-", "-", "-", ""])
            continue
        problem = run.last_error or run.last_detail
        rows.append([job.id, when(run.last_started_at), f"{run.last_duration_ms} ms", str(run.last_items),
                     str(run.last_errors), problem[:80]])
    click.echo("jobs:")
    for line in table(["job", "last run", "took", "items", "errors", "detail"], rows):
        click.echo(f"  {line}")


def _print_status(runtime: Runtime) -> None:
    with unit_of_work(runtime.sessions) as session:
        for label, model in _COUNTED:
            count = session.scalar(select(func.count()).select_from(model))
            click.echo(f"  {label:<18} {count}")
