"""`handoff email suppress|unsuppress|suppressions`: addresses that get no mail from Handoff."""

from __future__ import annotations

import getpass

import click

from orchestrator import audit
from orchestrator.cli._format import when
from orchestrator.cli._runtime import pass_runtime
from orchestrator.db import unit_of_work
from orchestrator.delivery import suppressions
from orchestrator.models import SuppressionReason
from orchestrator.runtime import Runtime

_REASONS = [reason.value for reason in SuppressionReason]


@click.group()
def email() -> None:
    """The email suppression list (bounces, unsubscribes, complaints) checked before every send."""


@email.command("suppress")
@click.argument("address")
@click.option("--reason", type=click.Choice(_REASONS), default="manual", show_default=True)
@click.option("--note", help="Why, for the next person who looks.")
@pass_runtime
def suppress_command(runtime: Runtime, address: str, reason: str, note: str | None) -> None:
    """Stop all mail to ADDRESS; a queued email to it goes dead instead of being sent."""
    now, actor = runtime.clock.now(), f"cli:{getpass.getuser()}"
    with unit_of_work(runtime.sessions) as session:
        normalized = suppressions.normalize(address)
        added = suppressions.add(session, address=normalized, reason=reason, at=now, note=note, by=actor)
        if added:
            audit.record(session, at=now, action="email_suppressed", actor=actor, rule="email.suppress",
                         reason=f"{normalized} suppressed ({reason})", detail={"reason": reason})
    click.echo(f"{normalized} suppressed ({reason})" if added else f"{normalized} was already suppressed")


@email.command("unsuppress")
@click.argument("address")
@pass_runtime
def unsuppress_command(runtime: Runtime, address: str) -> None:
    """Allow mail to ADDRESS again."""
    now, actor = runtime.clock.now(), f"cli:{getpass.getuser()}"
    with unit_of_work(runtime.sessions) as session:
        normalized = suppressions.normalize(address)
        removed = suppressions.remove(session, address=normalized)
        if removed:
            audit.record(session, at=now, action="email_unsuppressed", actor=actor, rule="email.unsuppress",
                         reason=f"{normalized} no longer suppressed")
    click.echo(f"{normalized} no longer suppressed" if removed else f"{normalized} was not suppressed")


@email.command("suppressions")
@pass_runtime
def list_command(runtime: Runtime) -> None:
    """List suppressed addresses, newest first."""
    with unit_of_work(runtime.sessions, read_only=True) as session:
        rows = suppressions.entries(session)
        if not rows:
            click.echo("no suppressed addresses")
            return
        for row in rows:
            note = f"  {row.note}" if row.note else ""
            click.echo(f"{row.address}  {row.reason}  since {when(row.created_at)}  by {row.created_by}{note}")
