"""`handoff outbox deliver|list|show|retry|cancel`: what will be sent, what was, and delivering it."""

from __future__ import annotations

import time

import click

from connectors.registry import load_registry
from orchestrator.cli._format import table, when
from orchestrator.cli._runtime import pass_runtime
from orchestrator.db import unit_of_work
from orchestrator.delivery import outbox as outbox_service
from orchestrator.delivery.deliver import deliver_due, worker_identity
from orchestrator.delivery.views import list_messages, show_message
from orchestrator.models import OutboxStatus
from orchestrator.runtime import Runtime

_STATUSES = [status.value for status in OutboxStatus]


@click.group()
def outbox() -> None:
    """The outbox: every write to an outside system, before and after delivery."""


@outbox.command("deliver")
@click.option("--once", is_flag=True, help="Deliver what is due now, then stop (for cron).")
@click.option("--connector", "connector", metavar="NAME", help="Only messages for this connector.")
@click.option("--interval", default=5.0, show_default=True, help="Seconds between passes without --once.")
@pass_runtime
def deliver_command(runtime: Runtime, once: bool, connector: str | None, interval: float) -> None:
    """Claim due messages by lease, push them through their connectors, mark each one."""
    registry = load_registry()
    worker = worker_identity()
    while True:
        report = deliver_due(sessions=runtime.sessions, settings=runtime.settings, registry=registry,
                             now=runtime.clock.now(), worker_id=worker, connector=connector, clock=runtime.clock.now)
        if report.claimed or once:
            per = ", ".join(f"{name} {count}" for name, count in sorted(report.by_connector.items()))
            click.echo(f"{report}" + (f" ({per})" if per else ""))
        if once:
            return
        try:
            time.sleep(interval)
        except KeyboardInterrupt:
            return


@outbox.command("list")
@click.option("--status", type=click.Choice([*_STATUSES, "all"]), default="pending", show_default=True)
@click.option("--connector", metavar="NAME", help="Only messages for this connector.")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10_000))
@pass_runtime
def list_command(runtime: Runtime, status: str, connector: str | None, limit: int) -> None:
    """Messages with their connector, recipient and subject."""
    with unit_of_work(runtime.sessions, read_only=True) as session:
        views = list_messages(session, status=None if status == "all" else status, connector=connector, limit=limit)
        if not views:
            click.echo(f"no {'' if status == 'all' else status + ' '}outbox messages")
            return
        rows = [[f"#{v.message.id}", v.message.status, v.message.connector or "-", v.message.kind,
                 _clip(v.recipient, 40), _clip(v.subject, 50), v.message.attempts,
                 when(v.message.delivered_at or v.message.next_attempt_at)] for v in views]
    for line in table(["id", "status", "connector", "kind", "recipient", "subject", "attempts", "at"], rows):
        click.echo(line)


@outbox.command("show")
@click.argument("message_id", type=int)
@pass_runtime
def show_command(runtime: Runtime, message_id: int) -> None:
    """Everything about one message: recipient, subject, body, the record it targets, its delivery."""
    with unit_of_work(runtime.sessions, read_only=True) as session:
        view = show_message(session, message_id=message_id)
        message = view.message
        lines = [
            f"outbox message #{message.id}  {message.kind}  {message.status}",
            f"  connector:  {message.connector or '(decided at delivery)'}  (target {message.target})",
            f"  recipient:  {view.recipient}",
            f"  subject:    {view.subject}",
            f"  record:     {view.target_record}",
            f"  key:        {message.idempotency_key}",
            f"  attempts:   {message.attempts}, next {when(message.next_attempt_at)}"
            + (f", delivered {when(message.delivered_at)} as {message.remote_id}" if message.delivered_at else ""),
        ]
        if message.last_error:
            lines.append(f"  last error: {message.last_error}")
        if message.claimed_until:
            lines.append(f"  leased to {message.claimed_by} until {when(message.claimed_until)}")
        lines.append("  body:")
        lines.extend(f"    {line}" for line in (view.body or "(empty)").splitlines())
    for line in lines:
        click.echo(line)


@outbox.command("retry")
@click.argument("message_id", type=int)
@click.option("--by", "actor", required=True, help="Your email, for the audit trail.")
@pass_runtime
def retry_command(runtime: Runtime, message_id: int, actor: str) -> None:
    """Put a dead or cancelled message back on the queue, due now (audited)."""
    with unit_of_work(runtime.sessions) as session:
        message = outbox_service.requeue(session, message_id=message_id, actor=actor, at=runtime.clock.now())
        click.echo(f"outbox message #{message.id} is pending again ({message.kind} via {message.connector})")


@outbox.command("cancel")
@click.argument("message_id", type=int)
@click.option("--by", "actor", required=True, help="Your email, for the audit trail.")
@pass_runtime
def cancel_command(runtime: Runtime, message_id: int, actor: str) -> None:
    """Take a pending or dead message off the queue for good (audited)."""
    with unit_of_work(runtime.sessions) as session:
        message = outbox_service.cancel(session, message_id=message_id, actor=actor, at=runtime.clock.now())
        click.echo(f"outbox message #{message.id} cancelled ({message.kind})")


def _clip(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"
