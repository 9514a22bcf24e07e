"""The plain-dict view of an account that playbook expressions and templates read.

One function builds it so that `when:`, `until:`, task titles and briefs all see the
same names with the same meanings. Values are JSON-friendly (Decimal becomes float)
except datetimes, which stay aware UTC datetimes so expressions can compare them and
the `date`/`days_until` template filters can format them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
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
    reads: Iterable[str] | None = None,
) -> dict[str, Any]:
    """The context for expressions and templates: account, deal, signal, journey, owner, now.

    `deal` defaults to the journey's or the signal's deal; `owner` defaults to the
    account owner. Missing parts are None so a template can test for them. With `reads`
    (an expression's `references()`), only what the expression reads is built: the parts
    it never names are None and the account has only the fields it names, so it evaluates
    exactly as against the whole context.
    """
    wanted = _wanted(reads)
    if wanted is not None and "deal" not in wanted:
        deal = None
    elif deal is None:
        deal_id = (journey.deal_id if journey is not None else None) or (
            signal.deal_id if signal is not None else None
        )
        deal = session.get(Deal, deal_id) if deal_id is not None else None

    def needed(root: str) -> bool:
        return wanted is None or root in wanted

    return {
        "account": account_view(account, now=now, fields=None if wanted is None else wanted.get("account"))
        if needed("account") else None,
        "deal": deal_view(deal) if deal is not None else None,
        "signal": signal_view(signal) if signal is not None and needed("signal") else None,
        "journey": journey_view(journey, now=now) if journey is not None and needed("journey") else None,
        "owner": owner_view(owner if owner is not None else account.owner) if needed("owner") else None,
        "now": now,
    }


def _wanted(reads: Iterable[str] | None) -> dict[str, frozenset[str] | None] | None:
    """The roots `reads` names, each with the fields read of it (None: read whole, e.g. `account["x"]`)."""
    if reads is None:
        return None
    fields: dict[str, set[str] | None] = {}
    for path in reads:
        root, _, rest = path.partition(".")
        if not rest:
            fields[root] = None
        elif (known := fields.setdefault(root, set())) is not None:
            known.add(rest.partition(".")[0])
    return {root: None if names is None else frozenset(names) for root, names in fields.items()}


def owner_view(owner: Owner | None) -> dict[str, Any] | None:
    """A person as templates see them: name, email, role."""
    if owner is None:
        return None
    return {"name": owner.name, "email": owner.email, "role": owner.role}


_ACCOUNT_FIELDS: dict[str, Callable[[Account, datetime], Any]] = {
    "id": lambda account, now: account.id,
    "name": lambda account, now: account.name,
    "domain": lambda account, now: account.domain,
    "segment": lambda account, now: account.segment,
    "industry": lambda account, now: account.industry,
    "arr": lambda account, now: _number(account.arr),
    "health": lambda account, now: account.health_score,
    "stage": lambda account, now: account.stage,
    "stage_entered_at": lambda account, now: account.stage_entered_at,
    "days_in_stage": lambda account, now: _days_between(account.stage_entered_at, now),
    "renewal_date": lambda account, now: account.renewal_date,
    "days_to_renewal": lambda account, now: _days_between(now, account.renewal_date),
    "churned_at": lambda account, now: account.churned_at,
    "owner": lambda account, now: owner_view(account.owner),
    "csm": lambda account, now: owner_view(account.csm),
}


def account_view(account: Account, *, now: datetime, fields: frozenset[str] | None = None) -> dict[str, Any]:
    """The account as expressions read it; with `fields`, only those (an expression's reads)."""
    # Custom CRM fields go in first so a custom field called "arr" or "stage"
    # can never shadow the value Handoff itself keeps.
    attributes = account.attributes or {}
    if fields is None:
        view: dict[str, Any] = dict(attributes)
        names: Iterable[str] = _ACCOUNT_FIELDS
    else:
        view = {name: attributes[name] for name in fields if name in attributes}
        names = [name for name in fields if name in _ACCOUNT_FIELDS]
    for name in names:
        view[name] = _ACCOUNT_FIELDS[name](account, now)
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
