"""`handoff audit ACCOUNT`: an account's decisions, oldest first."""

from __future__ import annotations

import click

from orchestrator.audit import render_timeline, timeline
from orchestrator.cli._runtime import pass_runtime
from orchestrator.db import unit_of_work
from orchestrator.intake.signals import find_account, parse_account_ref
from orchestrator.runtime import Runtime


@click.command("audit")
@click.argument("account")
@pass_runtime
def audit(runtime: Runtime, account: str) -> None:
    """Print ACCOUNT's audit timeline. ACCOUNT is an id, a domain, or SOURCE:EXTERNAL_ID."""
    with unit_of_work(runtime.sessions) as session:
        found = find_account(session, ref=parse_account_ref(account))
        if found is None:
            raise click.BadParameter(f"no account matches {account!r}", param_hint="ACCOUNT")
        events = timeline(session, account_id=found.id)
        click.echo(f"{found.name} (account {found.id}{', ' + found.domain if found.domain else ''}): "
                   f"{len(events)} event{'s' if len(events) != 1 else ''}")
        for line in render_timeline(events):
            click.echo(line)
