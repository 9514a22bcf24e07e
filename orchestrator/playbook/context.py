"""The plain-dict view of an account that playbook expressions and templates read.

One function builds it so that `when:`, `until:`, task titles and briefs all see the
same names with the same meanings. Values are JSON-friendly (Decimal becomes float)
except datetimes, which stay aware UTC datetimes so expressions can compare them and
the `date`/`days_until` template filters can format them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy.orm import Session

from orchestrator.models import Account, Deal, Journey, Owner, Signal

__all__ = ["build_context", "owner_view"]


def build_context(
    session: Session,
    *,
    account: Account,
    now: datetime,
    signal: Signal | None = None,
    deal: Deal | None = None,
    journey: Journey | None = None,
    owner: Owner | None = None,
) -> dict[str, Any]:
    """The context for expressions and templates: account, deal, signal, journey, owner, now.

    `deal` defaults to the journey's or the signal's deal; `owner` defaults to the
    account owner. Missing parts are None so a template can test for them.
    """
    if deal is None:
        deal_id = (journey.deal_id if journey is not None else None) or (
            signal.deal_id if signal is not None else None
        )
        deal = session.get(Deal, deal_id) if deal_id is not None else None
    return {
        "account": account_view(account, now=now),
        "deal": deal_view(deal) if deal is not None else None,
        "signal": signal_view(signal) if signal is not None else None,
        "journey": journey_view(journey, now=now) if journey is not None else None,
        "owner": owner_view(owner if owner is not None else account.owner),
        "now": now,
    }


def owner_view(owner: Owner | None) -> dict[str, Any] | None:
    """A person as templates see them: name, email, role."""
    if owner is None:
        return None
    return {"name": owner.name, "email": owner.email, "role": owner.role}


def account_view(account: Account, *, now: datetime) -> dict[str, Any]:
    # Custom CRM fields go in first so a custom field called "arr" or "stage"
    # can never shadow the value Handoff itself keeps.
    view: dict[str, Any] = dict(account.attributes or {})
    view.update(
        id=account.id,
        name=account.name,
        domain=account.domain,
        segment=account.segment,
        industry=account.industry,
        arr=_number(account.arr),
        health=account.health_score,
        stage=account.stage,
        stage_entered_at=account.stage_entered_at,
        days_in_stage=_days_between(account.stage_entered_at, now),
        renewal_date=account.renewal_date,
        days_to_renewal=_days_between(now, account.renewal_date),
        churned_at=account.churned_at,
        owner=owner_view(account.owner),
        csm=owner_view(account.csm),
    )
    return view


def deal_view(deal: Deal) -> dict[str, Any]:
    view: dict[str, Any] = dict(deal.attributes or {})
    view.update(
        id=deal.id,
        name=deal.name,
        amount=_number(deal.amount),
        stage=deal.stage,
        kind=deal.kind,
        close_date=deal.close_date,
        is_closed=deal.is_closed,
        is_won=deal.is_won,
        owner=owner_view(deal.owner),
    )
    return view


def signal_view(signal: Signal) -> dict[str, Any]:
    # Payload keys sit at the top level (`signal.active_users`) because that is how
    # RevOps write conditions; the envelope fields win over a payload key of the same name.
    view: dict[str, Any] = dict(signal.payload or {})
    view.update(
        id=signal.id,
        type=signal.type,
        occurred_at=signal.occurred_at,
        source=signal.source,
        payload=dict(signal.payload or {}),
    )
    return view


def journey_view(journey: Journey, *, now: datetime) -> dict[str, Any]:
    view: dict[str, Any] = dict(journey.context or {})
    view.update(
        id=journey.id,
        playbook_id=journey.playbook_id,
        status=journey.status,
        enrolled_at=journey.enrolled_at,
        days_enrolled=_days_between(journey.enrolled_at, now),
        current_step=journey.current_step_id,
    )
    return view


def _number(value: Decimal | None) -> float | None:
    return float(value) if value is not None else None


def _days_between(start: datetime | None, end: datetime | None) -> int | None:
    """Whole calendar days (UTC dates) from start to end; negative when end is earlier."""
    if start is None or end is None:
        return None
    return (end.astimezone(UTC).date() - start.astimezone(UTC).date()).days
