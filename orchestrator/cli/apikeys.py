"""`handoff apikeys create|list|revoke`: keys for the HTTP API, stored hashed, shown once."""

from __future__ import annotations

import click

from orchestrator.apikeys import Role, create_key, list_keys, revoke_key
from orchestrator.cli._runtime import pass_runtime
from orchestrator.db import unit_of_work
from orchestrator.errors import NotFound
from orchestrator.runtime import Runtime
from orchestrator.work.assignment import find_owner


@click.group()
def apikeys() -> None:
    """API keys: admin, leader, rep (bound to one owner) or ingest."""


@apikeys.command("create")
@click.option("--role", required=True, type=click.Choice([r.value for r in Role]))
@click.option("--name", required=True, help="Who or what uses the key, e.g. 'product-events'.")
@click.option("--owner", help="The owner a rep key acts as (an email); optional for admin keys.")
@pass_runtime
def create_command(runtime: Runtime, role: str, name: str, owner: str | None) -> None:
    """Create a key and print it once; only its hash is stored."""
    with unit_of_work(runtime.sessions) as session:
        person = None
        if owner is not None:
            person = find_owner(session, email=owner)
            if person is None:
                raise NotFound(f"no owner has the email {owner!r}")
        key = create_key(session, name=name, role=role, owner=person, now=runtime.clock.now())
    click.echo(key)
    click.echo("Store it now: it is not shown again.", err=True)


@apikeys.command("list")
@pass_runtime
def list_command(runtime: Runtime) -> None:
    """Every key's prefix, role, name and state (never the secret)."""
    with unit_of_work(runtime.sessions, read_only=True) as session:
        for key in list_keys(session):
            state = f"revoked {key.revoked_at:%Y-%m-%d}" if key.revoked_at else "active"
            click.echo(f"hk_{key.prefix}  {key.role:<7} {state:<18} {key.name}")


@apikeys.command("revoke")
@click.argument("prefix")
@pass_runtime
def revoke_command(runtime: Runtime, prefix: str) -> None:
    """Revoke the key with PREFIX (as `list` shows it)."""
    with unit_of_work(runtime.sessions) as session:
        key = revoke_key(session, prefix=prefix, now=runtime.clock.now())
        click.echo(f"hk_{key.prefix} revoked")
