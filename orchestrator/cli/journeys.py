"""`handoff journeys list|show|retry|migrate|end|override`: where accounts are in their playbooks; operator levers."""

from __future__ import annotations

import click
from sqlalchemy import select

from orchestrator.cli._format import table, when
from orchestrator.cli._options import ACTOR, RECORD_ID
from orchestrator.cli._runtime import pass_runtime
from orchestrator.db import unit_of_work
from orchestrator.errors import NotFound
from orchestrator.intake.signals import find_account, parse_account_ref
from orchestrator.journeys import engine
from orchestrator.journeys.listing import list_journeys
from orchestrator.journeys.migration import migrate_journeys
from orchestrator.models import Account, Journey, JourneyStatus, PlaybookVersion, StepRun
from orchestrator.runtime import Runtime
from orchestrator.work.entitlements import check_overrider, known_actor


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
@click.option("--latest", is_flag=True,
              help="First move the journey to its playbook's active version (the fixed one), then retry.")
@pass_runtime
def retry_command(runtime: Runtime, journey_id: int, by: str, note: str, latest: bool) -> None:
    """Run parked journey JOURNEY_ID's current step again, once what stopped it is fixed."""
    with unit_of_work(runtime.sessions) as session:
        journey = engine.retry_journey(session=session, settings=runtime.settings, journey_id=journey_id,
                                       actor=by, now=runtime.clock.now(), note=note, latest=latest)
        version = session.get_one(PlaybookVersion, journey.playbook_version_id)
        active = session.scalar(select(PlaybookVersion.version).where(
            PlaybookVersion.playbook_id == journey.playbook_id, PlaybookVersion.active))
        click.echo(f"journey {journey.id} retried by {by} on {journey.playbook_id} v{version.version}: "
                   f"{describe_journey(journey)}")
        if active is not None and active != version.version and journey.status == JourneyStatus.STALLED:
            click.echo(f"version {active} of {journey.playbook_id} is active: if it fixes this, run "
                       f"handoff journeys retry {journey.id} --latest --by {by}")


@journeys.command("migrate")
@click.option("--playbook", "playbook_id", required=True, help="The playbook whose journeys move.")
@click.option("--to-version", "to_version", required=True, type=click.IntRange(1),
              help="The stored version they move to (see playbooks history).")
@click.option("--by", "by", required=True, type=ACTOR, help="Who moves them (an email), for the audit trail.")
@click.option("--dry-run", is_flag=True, help="Say what would move and what would not; change nothing.")
@pass_runtime
def migrate_command(runtime: Runtime, playbook_id: str, to_version: int, by: str, dry_run: bool) -> None:
    """Move running journeys of a playbook to version N where their current step still exists (by step id)."""
    with unit_of_work(runtime.sessions) as session:
        report = migrate_journeys(session=session, playbook_id=playbook_id, to_version=to_version, actor=by,
                                  now=runtime.clock.now(), dry_run=dry_run)
    verb = "would move" if dry_run else "moved"
    click.echo(f"{playbook_id}: {verb} {len(report.moved)} journeys to version {report.to_version}; "
               f"{len(report.blocked)} cannot move")
    rows = [(str(m.journey_id), str(m.account_id), f"v{m.from_version}", m.step_id or "-", m.status,
             verb if m.moved else f"cannot: {m.reason}") for m in report.journeys]
    if rows:
        for line in table(("JOURNEY", "ACCOUNT", "FROM", "STEP", "STATUS", "RESULT"), rows):
            click.echo(line)


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
    """Undo on_the_loop step run STEP_RUN_ID inside its override window by running its compensation.

    --by must be the account's owner or CSM, or up their manager chain (as in the API).
    """
    with unit_of_work(runtime.sessions) as session:
        found = session.get(StepRun, step_run_id)
        if found is None:
            raise NotFound(f"no step run {step_run_id}")
        actor = known_actor(session, email=by)
        check_overrider(session, account=session.get_one(Account, found.journey.account_id), actor=actor)
        run = engine.override_step(session=session, settings=runtime.settings, step_run_id=step_run_id,
                                   actor=actor.email, now=runtime.clock.now(), reason=reason)
        click.echo(f"run {run.id} ({run.step_id}) of journey {run.journey_id} overridden by {actor.email}; "
                   "its compensation is queued")
