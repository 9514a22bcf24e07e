"""`handoff journeys list|show|retry|end|override`: where accounts are in their playbooks; operator levers."""

from __future__ import annotations

import click

from orchestrator.cli._format import table, when
from orchestrator.cli._options import ACTOR, RECORD_ID
from orchestrator.cli._runtime import pass_runtime
from orchestrator.db import unit_of_work
from orchestrator.errors import NotFound
from orchestrator.intake.signals import find_account, parse_account_ref
from orchestrator.journeys import engine
from orchestrator.journeys.listing import list_journeys
from orchestrator.models import Account, Journey, JourneyStatus, PlaybookVersion
from orchestrator.runtime import Runtime


def describe_journey(journey: Journey) -> str:
    """`waiting at wait-usage for product.usage until 2026-12-07 14:00Z`, `completed: activated`, ..."""
    if journey.ended_at is not None:
        return f"{journey.status}: {journey.end_reason}" if journey.end_reason else str(journey.status)
    where = f"{journey.status} at {journey.current_step_id}"
    if journey.status == JourneyStatus.STALLED:
        return where + " (parked in the exception queue)"
    if journey.wait_signal:
        where += f" for {journey.wait_signal}"
    if journey.wait_until is not None:
        where += f" until {when(journey.wait_until)}"
    return where


@click.group()
def journeys() -> None:
    """Journeys: accounts enrolled in playbooks, step by step."""


@journeys.command("list")
@click.option("--account", help="Only this account: an id, a domain, or SOURCE:EXTERNAL_ID.")
@click.option("--status", type=click.Choice([str(status) for status in JourneyStatus]), help="Only this status.")
@click.option("--playbook", "playbook_id", help="Only this playbook id.")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1), help="Show at most this many.")
@pass_runtime
def list_command(runtime: Runtime, account: str | None, status: str | None, playbook_id: str | None,
                 limit: int) -> None:
    """List journeys, the most recently enrolled first."""
    with unit_of_work(runtime.sessions) as session:
        account_id = None
        if account is not None:
            found = find_account(session, ref=parse_account_ref(account))
            if found is None:
                raise click.BadParameter(f"no account matches {account!r}", param_hint="--account")
            account_id = found.id
        # One more than asked for tells whether the list was cut short.
        found_journeys = list_journeys(session, account_id=account_id, status=status,
                                       playbook_id=playbook_id, limit=limit + 1)
        rows = [(str(journey.id), account_name, f"{journey.playbook_id} v{version}", journey.status,
                 journey.current_step_id or "-", when(journey.wait_until), when(journey.enrolled_at))
                for journey, account_name, version in found_journeys]
    if not rows:
        click.echo("no journeys")
        return
    for line in table(("ID", "ACCOUNT", "PLAYBOOK", "STATUS", "STEP", "WAITING UNTIL", "ENROLLED"), rows[:limit]):
        click.echo(line)
    if len(rows) > limit:
        click.echo(f"(the newest {limit} shown; raise --limit or filter to see more)")


@journeys.command("show")
@click.argument("journey_id", type=RECORD_ID)
@pass_runtime
def show_command(runtime: Runtime, journey_id: int) -> None:
    """Print journey JOURNEY_ID and every step it has run."""
    now = runtime.clock.now()
    with unit_of_work(runtime.sessions) as session:
        journey = session.get(Journey, journey_id)
        if journey is None:
            raise NotFound(f"no journey {journey_id}")
        account = session.get(Account, journey.account_id)
        version = session.get(PlaybookVersion, journey.playbook_version_id)
        assert account is not None and version is not None
        click.echo(f"journey {journey.id}: {account.name} (account {account.id}"
                   f"{', ' + account.domain if account.domain else ''})")
        click.echo(f"playbook: {journey.playbook_id} v{version.version}")
        click.echo(f"status:   {describe_journey(journey)}")
        click.echo(f"enrolled: {when(journey.enrolled_at)}")
        if journey.ended_at is not None:
            click.echo(f"ended:    {when(journey.ended_at)}")
        click.echo("")
        rows = [(str(run.id), run.step_id, run.kind, run.status, when(run.started_at), run.reason or "-")
                for run in journey.steps]
        for line in table(("RUN", "STEP", "KIND", "STATUS", "STARTED", "REASON"), rows):
            click.echo(line)
        windows = [run for run in journey.steps if run.override_until is not None and run.override_until > now]
        if windows:
            click.echo("\nopen override windows:")
        for run in windows:
            click.echo(f"  run {run.id} ({run.step_id}) until {when(run.override_until)}: "
                       f"handoff journeys override {run.id} --by EMAIL")


@journeys.command("retry")
@click.argument("journey_id", type=RECORD_ID)
@click.option("--by", "by", required=True, type=ACTOR, help="Who retries it (an email).")
@click.option("--note", default="", help="What was fixed.")
@pass_runtime
def retry_command(runtime: Runtime, journey_id: int, by: str, note: str) -> None:
    """Run parked journey JOURNEY_ID's current step again, once what stopped it is fixed."""
    with unit_of_work(runtime.sessions) as session:
        journey = engine.retry_journey(session=session, settings=runtime.settings, journey_id=journey_id,
                                       actor=by, now=runtime.clock.now(), note=note)
        click.echo(f"journey {journey.id} retried by {by}: {describe_journey(journey)}")


@journeys.command("end")
@click.argument("journey_id", type=RECORD_ID)
@click.option("--by", "by", required=True, type=ACTOR, help="Who ends it (an email).")
@click.option("--reason", required=True, help="Why; recorded in the audit trail.")
@pass_runtime
def end_command(runtime: Runtime, journey_id: int, by: str, reason: str) -> None:
    """End journey JOURNEY_ID by hand; its open tasks are cancelled."""
    with unit_of_work(runtime.sessions) as session:
        journey = engine.end_journey(session=session, settings=runtime.settings, journey_id=journey_id,
                                     actor=by, now=runtime.clock.now(), reason=reason)
        click.echo(f"journey {journey.id} {describe_journey(journey)}")


@journeys.command("override")
@click.argument("step_run_id", type=RECORD_ID)
@click.option("--by", "by", required=True, type=ACTOR, help="Who overrides it (an email).")
@click.option("--reason", default="", help="Why; recorded in the audit trail.")
@pass_runtime
def override_command(runtime: Runtime, step_run_id: int, by: str, reason: str) -> None:
    """Undo on_the_loop step run STEP_RUN_ID inside its override window by running its compensation."""
    with unit_of_work(runtime.sessions) as session:
        run = engine.override_step(session=session, settings=runtime.settings, step_run_id=step_run_id,
                                   actor=by, now=runtime.clock.now(), reason=reason)
        click.echo(f"run {run.id} ({run.step_id}) of journey {run.journey_id} overridden by {by}; "
                   "its compensation is queued")
