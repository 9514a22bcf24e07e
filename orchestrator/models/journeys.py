"""Journeys (an account enrolled in a playbook) and the runs of their steps."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import ForeignKey, Index, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from orchestrator.models.base import Base, IdMixin, utcnow


class JourneyStatus(StrEnum):
    ACTIVE = "active"        # a step is ready to run
    WAITING = "waiting"      # on a signal, a condition, a task or an approval
    COMPLETED = "completed"
    EXITED = "exited"        # left early: exit_on signal, exit step, or an operator
    STALLED = "stalled"      # parked in the exception queue


class StepStatus(StrEnum):
    RUNNING = "running"
    WAITING = "waiting"              # wait step, task or approval outstanding
    DONE = "done"
    SKIPPED = "skipped"              # cap, quiet hours, condition; reason says which
    OVERRIDDEN = "overridden"        # on_the_loop override ran the compensation
    REJECTED = "rejected"            # in_the_loop approval refused
    TIMED_OUT = "timed_out"
    FAILED = "failed"


class Journey(IdMixin, Base):
    __tablename__ = "journeys"
    __table_args__ = (
        Index(None, "account_id", "status"),
        # The scheduler's timeout sweep: waiting journeys whose wait has expired.
        Index("ix_journeys_wait_due", "wait_until",
              sqlite_where=text("status = 'waiting' AND wait_until IS NOT NULL"),
              postgresql_where=text("status = 'waiting' AND wait_until IS NOT NULL")),
        # The engine reads an account's open journeys for every signal: their number, not the
        # account's history of ended ones, sets the cost.
        Index("ix_journeys_open_by_account", "account_id", "id",
              sqlite_where=text("ended_at IS NULL"), postgresql_where=text("ended_at IS NULL")),
    )

    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    playbook_id: Mapped[str] = mapped_column(String(100), index=True)
    playbook_version_id: Mapped[int] = mapped_column(ForeignKey("playbook_versions.id"))
    # Unique: "once per account/deal" holds even when two workers enroll at the same moment.
    enrollment_key: Mapped[str] = mapped_column(String(300), unique=True)
    trigger_signal_id: Mapped[int | None] = mapped_column(ForeignKey("signals.id"))
    deal_id: Mapped[int | None] = mapped_column(ForeignKey("deals.id"))
    status: Mapped[str] = mapped_column(String(20), default=JourneyStatus.ACTIVE)
    current_step_id: Mapped[str | None] = mapped_column(String(100))
    wait_signal: Mapped[str | None] = mapped_column(String(100))  # signal type a wait step expects
    wait_until: Mapped[datetime | None]
    context: Mapped[dict[str, Any]] = mapped_column(default=dict)  # values steps hand to later steps
    enrolled_at: Mapped[datetime] = mapped_column(default=utcnow)
    ended_at: Mapped[datetime | None]
    end_reason: Mapped[str | None] = mapped_column(String(500))

    steps: Mapped[list[StepRun]] = relationship(back_populates="journey", order_by="StepRun.id")


class StepRun(IdMixin, Base):
    __tablename__ = "step_runs"
    __table_args__ = (
        Index(None, "journey_id", "step_id"),
        # A brief's "automations" section: an account's latest automated step runs.
        Index("ix_step_runs_automated", "journey_id", "started_at",
              sqlite_where=text("kind = 'automated'"), postgresql_where=text("kind = 'automated'")),
        # on_the_loop: override windows that are still open.
        Index("ix_step_runs_override_open", "override_until",
              sqlite_where=text("override_until IS NOT NULL"),
              postgresql_where=text("override_until IS NOT NULL")),
    )

    journey_id: Mapped[int] = mapped_column(ForeignKey("journeys.id", ondelete="CASCADE"))
    step_id: Mapped[str] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(20))
    oversight: Mapped[str | None] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(20), default=StepStatus.RUNNING)
    reason: Mapped[str] = mapped_column(Text, default="")
    outcome: Mapped[dict[str, Any]] = mapped_column(default=dict)
    override_until: Mapped[datetime | None]
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]

    journey: Mapped[Journey] = relationship(back_populates="steps")


class CustomerTouch(IdMixin, Base):
    """One automated customer-facing action; caps count these per account across playbooks."""

    __tablename__ = "customer_touches"
    __table_args__ = (Index(None, "account_id", "at"),)

    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    journey_id: Mapped[int | None] = mapped_column(ForeignKey("journeys.id"))
    step_id: Mapped[str] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(100))
    # Never read: it makes the unit of work write the journey before this row, both ids known (models/ids.py).
    journey: Mapped[Journey | None] = relationship()
    at: Mapped[datetime] = mapped_column(default=utcnow)
