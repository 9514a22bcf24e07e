"""Account health: the current score per account, and its history with each measure's contribution.

`account_health` holds one row per account (what `account.health` reads in conditions, and the
state the drop rule needs: the peak since the last drop); `health_scores` keeps every score that
differed from the one before, with the contributions that made it, for briefs and reports.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from orchestrator.models.base import Base, IdMixin


class AccountHealth(Base):
    """An account's current health score (0 to 100) and where it came from."""

    __tablename__ = "account_health"

    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True)
    score: Mapped[int]
    source: Mapped[str] = mapped_column(String(20))  # computed, or imported (the CRM's own score)
    playbook_id: Mapped[str] = mapped_column(String(80))  # the playbook whose model scored it
    computed_at: Mapped[datetime] = mapped_column(index=True)  # the scheduler recomputes the oldest first
    # The highest score since the last health.dropped: a fall of `dropped.by` is measured from it.
    peak: Mapped[int]
    # [{"id", "label", "value", "weight", "max_points", "points"}], in the model's order.
    contributions: Mapped[list[Any]] = mapped_column(default=list)


class HealthScore(IdMixin, Base):
    """One score in an account's history, with what each measure contributed to it."""

    __tablename__ = "health_scores"
    __table_args__ = (Index(None, "account_id", "computed_at"),)

    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    score: Mapped[int]
    previous: Mapped[int | None]
    source: Mapped[str] = mapped_column(String(20))
    playbook_id: Mapped[str] = mapped_column(String(80))
    computed_at: Mapped[datetime]
    trigger: Mapped[str] = mapped_column(String(80))  # "signal:ID" or "scheduler"
    contributions: Mapped[list[Any]] = mapped_column(default=list)
    dropped_signal_id: Mapped[int | None] = mapped_column(ForeignKey("signals.id"))
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)


def top_reasons(contributions: list[Any], *, limit: int = 3) -> list[str]:
    """The measures that cost the score the most points, in words, worst first.

    "usage trend: -35% (14 of 40 points)"; a measure that lost nothing is no reason.
    """
    lost = [c for c in contributions if c.get("points") is not None and c["max_points"] - c["points"] >= 0.5]
    lost.sort(key=lambda c: (-(c["max_points"] - c["points"]), c["id"]))
    return [f"{c['label']}: {_figure(c['value'])}{c.get('unit') or ''} "
            f"({_figure(c['points'])} of {_figure(c['max_points'])} points)" for c in lost[:limit]]


def _figure(value: float) -> str:
    return f"{value:.1f}".removesuffix(".0")
