"""Email addresses Handoff must not send to: hard bounces, unsubscribes, complaints."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import String, Text
from sqlalchemy.orm import Mapped, mapped_column

from orchestrator.models.base import Base, IdMixin, utcnow


class SuppressionReason(StrEnum):
    BOUNCE = "bounce"
    UNSUBSCRIBE = "unsubscribe"
    COMPLAINT = "complaint"
    MANUAL = "manual"


class EmailSuppression(IdMixin, Base):
    __tablename__ = "email_suppressions"

    # Lower-cased, so "Ana@X.com" and "ana@x.com" are one entry.
    address: Mapped[str] = mapped_column(String(320), unique=True)
    reason: Mapped[str] = mapped_column(String(20))
    note: Mapped[str | None] = mapped_column(Text)
    created_by: Mapped[str] = mapped_column(String(200), default="system")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
