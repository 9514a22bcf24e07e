"""The outbox: every write to an outside system, recorded in the transaction that decided it."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import ForeignKey, Index, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from orchestrator.models.base import Base, IdMixin, utcnow


class OutboxStatus(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    DEAD = "dead"  # a permanent failure, or the retry budget spent; an exception item says so
    CANCELLED = "cancelled"  # an operator decided it must not be sent (audited)


class OutboxMessage(IdMixin, Base):
    __tablename__ = "outbox_messages"
    __table_args__ = (
        # Delivery workers claim what is due: pending rows by next attempt time.
        Index("ix_outbox_due", "next_attempt_at", "id",
              sqlite_where=text("status = 'pending'"),
              postgresql_where=text("status = 'pending'")),
        # `handoff outbox deliver --connector NAME`: one connector's due rows.
        Index("ix_outbox_due_by_connector", "connector", "next_attempt_at",
              sqlite_where=text("status = 'pending'"),
              postgresql_where=text("status = 'pending'")),
    )

    kind: Mapped[str] = mapped_column(String(60))  # crm.create_task, crm.update_field, notify.email, ...
    target: Mapped[str] = mapped_column(String(40))  # crm, email, webhook, chat
    # Which connector delivers it, chosen at enqueue (delivery.routing); None: decided at delivery.
    connector: Mapped[str | None] = mapped_column(String(40))
    # Sent to the remote side so a retry after a lost response cannot create a second record.
    idempotency_key: Mapped[str] = mapped_column(String(255), unique=True)
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id"), index=True)
    task_id: Mapped[int | None] = mapped_column(ForeignKey("tasks.id"))
    status: Mapped[str] = mapped_column(String(20), default=OutboxStatus.PENDING)
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    # A lease, not a row lock: a worker owns the message until `claimed_until`, committed before
    # any remote call; a worker that dies leaves it to be claimed again once the lease expires.
    claimed_by: Mapped[str | None] = mapped_column(String(100))
    claimed_until: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    remote_id: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    delivered_at: Mapped[datetime | None]
