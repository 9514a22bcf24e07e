"""Human tasks with their decision brief, and the SLA events that track them."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from sqlalchemy import Boolean, ForeignKey, Index, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from orchestrator.models.base import Base, IdMixin, utcnow
from orchestrator.models.crm import Owner

if TYPE_CHECKING:
    from orchestrator.models.journeys import Journey, StepRun


class TaskKind(StrEnum):
    ACTION = "action"      # a human step: do the thing
    APPROVAL = "approval"  # in_the_loop: approve or reject an automated action
    REVIEW = "review"      # hybrid: review the system's draft, then publish


class TaskStatus(StrEnum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    DONE = "done"
    REJECTED = "rejected"
    CANCELLED = "cancelled"


OPEN_STATUSES = (TaskStatus.OPEN, TaskStatus.ACKNOWLEDGED)

# What a person can say when closing a task, and the status each leaves it in.
OUTCOME_STATUS: dict[str, TaskStatus] = {
    "done": TaskStatus.DONE,
    "approved": TaskStatus.DONE,
    "published": TaskStatus.DONE,
    "rejected": TaskStatus.REJECTED,
    "cancelled": TaskStatus.CANCELLED,  # the journey ended first; nobody has to act any more
}
# What a person may say when closing each kind of task; the first is what a bare
# "completed" from the CRM means.
OUTCOMES_BY_KIND: dict[TaskKind, tuple[str, ...]] = {
    TaskKind.ACTION: ("done",),
    TaskKind.APPROVAL: ("approved", "rejected"),
    TaskKind.REVIEW: ("published", "rejected"),
}


class SlaState(StrEnum):
    ON_TRACK = "on_track"
    AT_RISK = "at_risk"    # a configured share of the window has elapsed
    BREACHED = "breached"  # past ack_by unacknowledged, or past due_at
    PAUSED = "paused"      # waiting on the customer: the clock stands still


class SlaEventKind(StrEnum):
    AT_RISK = "at_risk"
    ACK_MET = "ack_met"
    ACK_BREACHED = "ack_breached"
    DUE_MET = "due_met"
    DUE_BREACHED = "due_breached"
    REMINDED = "reminded"
    ESCALATED = "escalated"      # level = the rung's number, from 1
    EXHAUSTED = "exhausted"      # the chain ran out; an exception item took over
    PAUSED = "paused"            # level = the pause's number, from 1
    RESUMED = "resumed"


class Priority(StrEnum):
    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"
    URGENT = "urgent"


class Task(IdMixin, Base):
    __tablename__ = "tasks"
    __table_args__ = (
        # One task per step run: a replayed decision cannot create a second task.
        UniqueConstraint("step_run_id", "kind"),
        Index(None, "owner_id", "status"),  # capacity: open tasks per owner
        Index(None, "journey_id"),  # a journey's end cancels its open tasks
        # SLA sweeps: open tasks by their next deadline.
        Index("ix_tasks_open_due", "due_at",
              sqlite_where=text("status IN ('open', 'acknowledged')"),
              postgresql_where=text("status IN ('open', 'acknowledged')")),
        Index("ix_tasks_open_ack", "ack_by",
              sqlite_where=text("status = 'open' AND ack_by IS NOT NULL"),
              postgresql_where=text("status = 'open' AND ack_by IS NOT NULL")),
        Index("ix_tasks_next_escalation", "next_escalation_at",
              sqlite_where=text("next_escalation_at IS NOT NULL"),
              postgresql_where=text("next_escalation_at IS NOT NULL")),
        # The SLA sweep: what needs looking at next (state change, reminder, rung), nothing else.
        Index("ix_tasks_sla_check", "sla_check_at",
              sqlite_where=text("sla_check_at IS NOT NULL"),
              postgresql_where=text("sla_check_at IS NOT NULL")),
    )

    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    journey_id: Mapped[int | None] = mapped_column(ForeignKey("journeys.id"))
    step_run_id: Mapped[int | None] = mapped_column(ForeignKey("step_runs.id"))
    owner_id: Mapped[int] = mapped_column(ForeignKey("owners.id"))  # a person, never a team
    kind: Mapped[str] = mapped_column(String(20), default=TaskKind.ACTION)
    title: Mapped[str] = mapped_column(String(255))
    recommendation: Mapped[str] = mapped_column(Text, default="")
    brief: Mapped[dict[str, Any]] = mapped_column(default=dict)  # structured decision brief
    brief_text: Mapped[str] = mapped_column(Text, default="")  # rendered for the CRM description
    draft: Mapped[str | None] = mapped_column(Text)  # hybrid: what the system drafted
    status: Mapped[str] = mapped_column(String(20), default=TaskStatus.OPEN)
    priority: Mapped[str] = mapped_column(String(10), default=Priority.NORMAL)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    ack_by: Mapped[datetime | None]
    due_at: Mapped[datetime]
    acknowledged_at: Mapped[datetime | None]
    completed_at: Mapped[datetime | None]
    completed_by: Mapped[str | None] = mapped_column(String(320))
    outcome: Mapped[str | None] = mapped_column(String(40))  # approved, rejected, done, published
    escalation_level: Mapped[int] = mapped_column(default=0)  # rungs of the chain already taken
    next_escalation_at: Mapped[datetime | None]
    last_reminder_at: Mapped[datetime | None]
    # SLA enforcement (orchestrator.work.sla): the state shown to people, when the sweep
    # must next look at this task, the ack/due verdicts once known, and pause bookkeeping.
    sla_state: Mapped[str] = mapped_column(String(20), default=SlaState.ON_TRACK,
                                           server_default=SlaState.ON_TRACK.value)
    sla_check_at: Mapped[datetime | None]
    ack_outcome: Mapped[str | None] = mapped_column(String(10))  # met, breached
    due_outcome: Mapped[str | None] = mapped_column(String(10))
    paused_at: Mapped[datetime | None]
    paused_seconds: Mapped[int] = mapped_column(default=0, server_default="0")  # elapsed time paused
    crm_source: Mapped[str | None] = mapped_column(String(40))
    crm_id: Mapped[str | None] = mapped_column(String(255))

    owner: Mapped[Owner] = relationship()
    # Never read: they make the unit of work write the journey and step run before the task (models/ids.py).
    journey: Mapped[Journey | None] = relationship()
    step_run: Mapped[StepRun | None] = relationship()


class SlaEvent(IdMixin, Base):
    __tablename__ = "sla_events"
    __table_args__ = (
        Index(None, "task_id", "at"),
        # Exactly once: a second worker recording the same rung (or verdict) adds nothing.
        UniqueConstraint("task_id", "kind", "level", name="uq_sla_events_once"),
        Index(None, "kind", "at"),  # the SLA report reads events by kind over a period
    )

    task_id: Mapped[int] = mapped_column(ForeignKey("tasks.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(30))  # SlaEventKind
    level: Mapped[int] = mapped_column(default=0)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)


class TaskFeedback(IdMixin, Base):
    """Whether a task was worth a person's time: one verdict per person per task, updatable.

    The noise report counts the "not useful" ones per playbook step; `by` is the person's
    email (or `apikey:NAME` for an admin key bound to nobody), so a second verdict replaces the first.
    """

    __tablename__ = "task_feedback"
    __table_args__ = (UniqueConstraint("task_id", "by"),)

    task_id: Mapped[int] = mapped_column(ForeignKey("tasks.id", ondelete="CASCADE"))  # the unique key leads with it
    by: Mapped[str] = mapped_column(String(320))
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("owners.id"))
    useful: Mapped[bool] = mapped_column(Boolean)
    note: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
