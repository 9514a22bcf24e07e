"""Configuration reviews: a playbook's periodic review, assigned to a person, with its own deadline."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from orchestrator.models.base import Base, IdMixin, utcnow


class PlaybookReview(IdMixin, Base):
    """One review of one playbook per period of its `review_every` (the unique key makes it once)."""

    __tablename__ = "playbook_reviews"
    __table_args__ = (
        UniqueConstraint("playbook_id", "period", name="uq_playbook_reviews_once"),
        Index(None, "playbook_id", "status"),
        # The review sweep: open reviews whose deadline is due, nothing else.
        Index("ix_playbook_reviews_open_check", "check_at",
              sqlite_where=text("status = 'open' AND check_at IS NOT NULL"),
              postgresql_where=text("status = 'open' AND check_at IS NOT NULL")),
    )

    playbook_id: Mapped[str] = mapped_column(String(100))
    period: Mapped[str] = mapped_column(String(40))  # the date the review came due, ISO
    version: Mapped[int]  # the active version when the review was opened
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("owners.id"))  # None: nobody could be assigned
    assigned_how: Mapped[str] = mapped_column(String(200), default="")
    status: Mapped[str] = mapped_column(String(20), default="open")  # open, done, unassigned
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    due_at: Mapped[datetime | None]
    check_at: Mapped[datetime | None]  # when the review sweep must look (its deadline)
    escalation_level: Mapped[int] = mapped_column(default=0, server_default="0")
    completed_at: Mapped[datetime | None]
    completed_by: Mapped[str | None] = mapped_column(String(320))
    brief: Mapped[dict[str, Any]] = mapped_column(default=dict)
    brief_text: Mapped[str] = mapped_column(Text, default="")
