"""The audit trail: every decision, with the playbook version, rule, actor and reason behind it."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from orchestrator.models.base import Base, IdMixin, utcnow

if TYPE_CHECKING:
    from orchestrator.models.journeys import Journey


class AuditEvent(IdMixin, Base):
    __tablename__ = "audit_events"
    __table_args__ = (Index(None, "account_id", "at"), Index(None, "journey_id"))

    at: Mapped[datetime] = mapped_column(default=utcnow)
    # enrolled, step_ran, step_skipped, task_created, approved, rejected, overridden, stage_changed, ...
    action: Mapped[str] = mapped_column(String(40))
    account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id"))
    journey_id: Mapped[int | None] = mapped_column(ForeignKey("journeys.id"))
    # Never read: it makes the unit of work write the journey before this row, both ids known (models/ids.py).
    journey: Mapped[Journey | None] = relationship()
    playbook_id: Mapped[str | None] = mapped_column(String(100))
    playbook_version: Mapped[int | None]
    step_id: Mapped[str | None] = mapped_column(String(100))
    rule: Mapped[str] = mapped_column(String(200), default="")  # what made the decision
    actor: Mapped[str] = mapped_column(String(320), default="system")  # "system" or a person's email
    reason: Mapped[str] = mapped_column(Text, default="")
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)
