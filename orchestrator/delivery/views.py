"""What an operator sees of an outbox message: recipient, subject, body and the record it targets.

Read-only; the CLI (`handoff outbox list|show`) and the coming API print these.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from orchestrator.errors import NotFound
from orchestrator.models import Account, ExternalId, OutboxMessage, OutboxStatus, Task

__all__ = ["MessageView", "list_messages", "show_message"]


@dataclass(frozen=True)
class MessageView:
    message: OutboxMessage
    recipient: str
    subject: str
    body: str
    target_record: str  # "account Acme Robotics (acme-robotics.example; salesforce 001...)", "task 17 (CRM 00T...)"


def list_messages(session: Session, *, status: str | None = OutboxStatus.PENDING, connector: str | None = None,
                  limit: int = 50) -> list[MessageView]:
    """Messages by id, newest last; `status=None` for every status."""
    query = select(OutboxMessage).order_by(OutboxMessage.id).limit(limit)
    if status is not None:
        query = query.where(OutboxMessage.status == status)
    if connector is not None:
        query = query.where(OutboxMessage.connector == connector)
    return [_view(session, message) for message in session.scalars(query)]


def show_message(session: Session, *, message_id: int) -> MessageView:
    message = session.get(OutboxMessage, message_id)
    if message is None:
        raise NotFound(f"no outbox message {message_id}")
    return _view(session, message)


def _args(payload: Mapping[str, Any]) -> Mapping[str, Any]:
    args = payload.get("args")
    return args if isinstance(args, Mapping) else payload


def _view(session: Session, message: OutboxMessage) -> MessageView:
    payload = message.payload or {}
    args = _args(payload)
    recipient = str(args.get("to") or args.get("url") or payload.get("owner_email") or args.get("audience") or "-")
    subject = str(args.get("subject") or payload.get("subject") or args.get("field") or args.get("survey") or "-")
    if message.kind == "crm.update_field":
        body = f"{args.get('field')} = {args.get('value')!r}"
    elif message.kind == "crm.complete_task":
        body = f"mark the CRM task {payload.get('outcome') or payload.get('status')}"
    else:
        body = str(args.get("body") or payload.get("description") or args.get("payload") or "")
    return MessageView(message=message, recipient=recipient, subject=subject, body=body,
                       target_record=_target(session, message))


def _target(session: Session, message: OutboxMessage) -> str:
    parts = []
    if message.task_id is not None:
        task = session.get(Task, message.task_id)
        crm = f", CRM {task.crm_source}:{task.crm_id}" if task is not None and task.crm_id else ""
        parts.append(f"task {message.task_id}{crm}")
    if message.account_id is not None:
        account = session.get(Account, message.account_id)
        if account is not None:
            ids = [f"{row.source} {row.external_id}" for row in session.execute(
                select(ExternalId.source, ExternalId.external_id).where(
                    ExternalId.kind == "account", ExternalId.local_id == account.id).order_by(ExternalId.source))]
            where = "; ".join([account.domain or "no domain", *ids])
            parts.append(f"account {account.name} ({where})")
    return ", ".join(parts) or "-"
