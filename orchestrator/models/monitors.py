"""Monitors' running state: per account, one aggregate row per window and one silence clock per absence monitor.

Kept up to date as signals arrive, so evaluating a monitor reads two rows, never the history.
A monitor is keyed "PLAYBOOK_ID/MONITOR_ID": a new version of the playbook keeps its state.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Float, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from orchestrator.models.base import Base, IdMixin, utcnow


class MonitorWindow(IdMixin, Base):
    """The aggregate of one monitor's signals for one account over one window."""

    __tablename__ = "monitor_windows"
    __table_args__ = (UniqueConstraint("monitor_key", "account_id", "window_start"),)

    monitor_key: Mapped[str] = mapped_column(String(200))
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    window_start: Mapped[datetime]
    window_end: Mapped[datetime]
    signals: Mapped[int] = mapped_column(default=0)  # every signal of the type (the count measure)
    values: Mapped[int] = mapped_column(default=0)  # signals whose field held a number
    total: Mapped[float] = mapped_column(Float, default=0.0)
    low: Mapped[float | None] = mapped_column(Float)
    high: Mapped[float | None] = mapped_column(Float)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class MonitorSilence(IdMixin, Base):
    """When an absence monitor's signal type was last seen for an account, and when silence is due."""

    __tablename__ = "monitor_silences"
    __table_args__ = (UniqueConstraint("monitor_key", "account_id"), Index(None, "monitor_key", "silent_at"))

    monitor_key: Mapped[str] = mapped_column(String(200))
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    last_seen_at: Mapped[datetime]
    silent_at: Mapped[datetime | None]  # None once fired: the same silence fires once


class MonitorFiring(IdMixin, Base):
    """One firing: at most one per monitor, account and window (or silence)."""

    __tablename__ = "monitor_firings"
    __table_args__ = (UniqueConstraint("monitor_key", "account_id", "window_key"), Index(None, "account_id"))

    monitor_key: Mapped[str] = mapped_column(String(200))
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    window_key: Mapped[str] = mapped_column(String(64))  # the window's start, or the silence's last signal
    fired_at: Mapped[datetime]
    signal_id: Mapped[int | None] = mapped_column(ForeignKey("signals.id"))
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)
