"""Operational state: connector sync cursors and API keys."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from orchestrator.models.base import Base, IdMixin, utcnow


class SyncCursor(IdMixin, Base):
    """How far a connector has read one object type from its source."""

    __tablename__ = "sync_cursors"
    __table_args__ = (UniqueConstraint("connector", "object_type"),)

    connector: Mapped[str] = mapped_column(String(40))
    object_type: Mapped[str] = mapped_column(String(40))  # accounts, contacts, deals, owners, tasks
    cursor: Mapped[str] = mapped_column(String(255))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class ApiKey(IdMixin, Base):
    """An API key; only a hash is stored, the prefix finds the row without a scan."""

    __tablename__ = "api_keys"

    name: Mapped[str] = mapped_column(String(200))
    prefix: Mapped[str] = mapped_column(String(16), unique=True)
    key_hash: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(20))  # admin, leader, rep, ingest
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("owners.id"))  # a rep key acts as this person
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]


class WebhookReceipt(IdMixin, Base):
    """A signed webhook already accepted: the same signature again is a replay."""

    __tablename__ = "webhook_receipts"

    source: Mapped[str] = mapped_column(String(40))
    signature: Mapped[str] = mapped_column(String(128), unique=True)
    received_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
