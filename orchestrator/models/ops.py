"""Operational state: connector sync cursors, API keys and job run history."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from orchestrator.models.base import Base, IdMixin, utcnow


class SyncCursor(IdMixin, Base):
    """How far a connector has read one object type from its source."""

    __tablename__ = "sync_cursors"
    __table_args__ = (UniqueConstraint("connector", "object_type"),)

    connector: Mapped[str] = mapped_column(String(40))
    object_type: Mapped[str] = mapped_column(String(40))  # accounts, contacts, deals, owners, tasks
    cursor: Mapped[str] = mapped_column(Text)  # JSON, as the connector's Page.cursor gave it
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


class JobRun(IdMixin, Base):
    """The last run of one scheduled job (one row per job id), for `handoff status` and `tick`."""

    __tablename__ = "job_runs"

    job_id: Mapped[str] = mapped_column(String(100), unique=True)
    last_started_at: Mapped[datetime | None]
    last_finished_at: Mapped[datetime | None]
    last_duration_ms: Mapped[int] = mapped_column(default=0)
    last_items: Mapped[int] = mapped_column(default=0)
    last_errors: Mapped[int] = mapped_column(default=0)
    last_detail: Mapped[str] = mapped_column(Text, default="")
    last_error: Mapped[str | None] = mapped_column(Text)  # the exception of a run that raised
    runs: Mapped[int] = mapped_column(default=0)
    failed_runs: Mapped[int] = mapped_column(default=0)
