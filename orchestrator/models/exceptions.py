"""The exception queue: what fell off the normal path, each with a named owner and a window."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from sqlalchemy import ForeignKey, Index, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from orchestrator.models.base import Base, IdMixin, utcnow

if TYPE_CHECKING:
    from orchestrator.models.journeys import Journey


class Category(StrEnum):
    """Why an item fell off the normal path; each has an owner in configuration."""

    UNKNOWN_ACCOUNT = "unknown_account"
    UNKNOWN_DEAL = "unknown_deal"
    INVALID_SIGNAL = "invalid_signal"
    UNMATCHED_BRANCH = "unmatched_branch"
    NO_ASSIGNEE = "no_assignee"
    MISSING_FIELD = "missing_field"
    DELIVERY_FAILED = "delivery_failed"
    LOOP_GUARD = "loop_guard"
    EXPRESSION_ERROR = "expression_error"
    TEMPLATE_ERROR = "template_error"  # a template stopped by its bounds (size, work, time): fix the playbook
    ENGINE_ERROR = "engine_error"
    CONFIGURATION = "configuration"  # e.g. a playbook names a calendar that is not configured
    SLA_EXHAUSTED = "sla_exhausted"  # a task's escalation chain ran out of rungs, still not done
    IDENTITY_CONFLICT = "identity_conflict"  # two CRMs (or ids and domain) claim one company for different accounts


class ExceptionItem(IdMixin, Base):
    __tablename__ = "exception_items"
    __table_args__ = (
        Index(None, "category", "created_at"),
        Index("ix_exception_items_open_respond_by", "respond_by",
              sqlite_where=text("status = 'open'"), postgresql_where=text("status = 'open'")),
        # Exception escalation: open items with a rung still to come, in the order the sweep takes them
        # (so the planner never prefers another open-items index plus a sort).
        Index("ix_exception_items_escalation_due", "next_escalation_at", "id",
              sqlite_where=text("status = 'open' AND next_escalation_at IS NOT NULL"),
              postgresql_where=text("status = 'open' AND next_escalation_at IS NOT NULL")),
        # One open item per repeating problem: its occurrences are counted on it, not queued apart.
        Index("uq_exception_items_open_group_key", "group_key", unique=True,
              sqlite_where=text("status = 'open'"), postgresql_where=text("status = 'open'")),
    )

    category: Mapped[str] = mapped_column(String(60))  # unknown_account, unmatched_branch, no_assignee, ...
    owner: Mapped[str] = mapped_column(String(320))  # a named person from configuration
    message: Mapped[str] = mapped_column(Text)
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)
    account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id"), index=True)
    signal_id: Mapped[int | None] = mapped_column(ForeignKey("signals.id"))
    journey_id: Mapped[int | None] = mapped_column(ForeignKey("journeys.id"))
    # Never read: it makes the unit of work write the journey before this row, both ids known (models/ids.py).
    journey: Mapped[Journey | None] = relationship()
    status: Mapped[str] = mapped_column(String(20), default="open")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    respond_by: Mapped[datetime]
    resolved_at: Mapped[datetime | None]
    resolved_by: Mapped[str | None] = mapped_column(String(320))
    # Past its window an item escalates: 1 = its owner told, 2 = the default owner told.
    escalation_level: Mapped[int] = mapped_column(default=0, server_default="0")
    next_escalation_at: Mapped[datetime | None]
    # Aggregation of a repeating problem (category, playbook, step, field): None for one-off items.
    group_key: Mapped[str | None] = mapped_column(String(400))
    occurrences: Mapped[int] = mapped_column(default=1, server_default=text("1"))
    first_seen_at: Mapped[datetime | None]
    last_seen_at: Mapped[datetime | None]
    sample_signal_ids: Mapped[list[Any]] = mapped_column(default=list)
