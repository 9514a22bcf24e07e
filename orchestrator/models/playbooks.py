"""Playbook versions: the exact YAML that was applied, so every decision can name its version."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Index, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from orchestrator.models.base import Base, IdMixin, utcnow


class PlaybookVersion(IdMixin, Base):
    __tablename__ = "playbook_versions"
    __table_args__ = (
        UniqueConstraint("playbook_id", "version"),
        # At most one active version per playbook, enforced by the database.
        Index("uq_playbook_versions_active", "playbook_id", unique=True,
              sqlite_where=text("active"), postgresql_where=text("active")),
    )

    playbook_id: Mapped[str] = mapped_column(String(100))
    version: Mapped[int]
    name: Mapped[str] = mapped_column(String(200))
    stage: Mapped[str] = mapped_column(String(20))
    checksum: Mapped[str] = mapped_column(String(64))  # sha256 of source_text
    source_text: Mapped[str] = mapped_column(Text)
    source_path: Mapped[str] = mapped_column(String(500))
    active: Mapped[bool] = mapped_column(default=True)
    applied_at: Mapped[datetime] = mapped_column(default=utcnow)
    applied_by: Mapped[str] = mapped_column(String(200), default="system")
    # The named templates this version uses (name -> source), stored so the version keeps its texts.
    templates: Mapped[dict[str, Any]] = mapped_column(default=dict)


class PlaybookPause(IdMixin, Base):
    """A paused playbook: no new enrollments while the row exists (resume deletes it; the audit keeps both)."""

    __tablename__ = "playbook_pauses"

    playbook_id: Mapped[str] = mapped_column(String(100), unique=True)
    paused_at: Mapped[datetime] = mapped_column(default=utcnow)
    paused_by: Mapped[str] = mapped_column(String(200))
    reason: Mapped[str] = mapped_column(Text, default="")
    # The journeys the pause parked (running: park), so resume can move exactly those on again.
    parked_journey_ids: Mapped[list[Any]] = mapped_column(default=list)
