"""Signals: immutable facts about an account, stored once per dedupe key."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String, text
from sqlalchemy.orm import Mapped, mapped_column

from orchestrator.models.base import Base, IdMixin, utcnow


class Signal(IdMixin, Base):
    __tablename__ = "signals"
    __table_args__ = (
        Index(None, "account_id", "occurred_at"),
        # The sensitive-signal check: has this account had one of these types lately?
        Index(None, "account_id", "type", "occurred_at"),
        # The engine's work queue: signals not yet evaluated, oldest first.
        Index("ix_signals_pending", "received_at", "id",
              sqlite_where=text("processed_at IS NULL"),
              postgresql_where=text("processed_at IS NULL")),
        # Claiming whole accounts: "is there an older pending signal of this account?"
        Index("ix_signals_pending_by_account", "account_id", "received_at", "id",
              sqlite_where=text("processed_at IS NULL"),
              postgresql_where=text("processed_at IS NULL")),
    )

    type: Mapped[str] = mapped_column(String(100), index=True)  # deal.closed_won, product.usage, ...
    dedupe_key: Mapped[str] = mapped_column(String(255), unique=True)
    account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id"))  # None: unknown account
    deal_id: Mapped[int | None] = mapped_column(ForeignKey("deals.id"))
    source: Mapped[str] = mapped_column(String(40))  # webhook, salesforce, hubspot, cli
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    occurred_at: Mapped[datetime]
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    processed_at: Mapped[datetime | None]
    # A transient failure (deadlock, lock timeout, lost connection, a busy owner row) leaves
    # the signal pending: counted, and not claimed again before `retry_at`.
    attempts: Mapped[int] = mapped_column(default=0, server_default=text("0"))
    retry_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(String(200))
