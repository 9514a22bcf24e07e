"""The exception queue: what fell off the normal path, with a named owner and a business-time window."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, cast

from sqlalchemy import Table, func, inspect, select
from sqlalchemy.orm import Session

from orchestrator import audit
from orchestrator.config import Settings
from orchestrator.db import insert_ignoring, insert_many, skip_locked
from orchestrator.errors import NotFound
from orchestrator.models import ExceptionItem, Journey, PlaybookVersion
from orchestrator.models.exceptions import Category

__all__ = [
    "Category", "CategoryCount", "ItemStatus", "UnknownExceptionItem", "WeekReport",
    "NewItem", "fallback_report", "group_key", "list_items", "raise_item", "raise_items", "resolve_item",
    "weekly_fallback_report",
]


class ItemStatus(StrEnum):
    OPEN = "open"
    RESOLVED = "resolved"


class UnknownExceptionItem(NotFound):
    """No exception item has this id."""


@dataclass(frozen=True)
class CategoryCount:
    category: str
    count: int
    owner: str  # owner of the category's most recent item in the window
    oldest_open: datetime | None  # created_at of the oldest still-open item in the window


@dataclass(frozen=True)
class WeekReport:
    week: str  # ISO week, e.g. "2026-W48"
    start: datetime  # Monday 00:00 UTC
    categories: list[CategoryCount]


MAX_SAMPLE_SIGNALS = 10


def group_key(*, category: Category | str, playbook_id: str | None, step_id: str | None, field: str) -> str:
    """The identity of a repeating problem: one open item per (category, playbook, step, field)."""
    return "|".join((str(category), playbook_id or "-", step_id or "-", field))[:400]


def raise_item(
    session: Session,
    *,
    settings: Settings,
    category: Category | str,
    message: str,
    at: datetime,
    account_id: int | None = None,
    signal_id: int | None = None,
    journey_id: int | None = None,
    detail: dict[str, Any] | None = None,
    playbook_id: str | None = None,
    playbook_version: int | None = None,
    step_id: str | None = None,
    field: str | None = None,
    unflushed: bool = False,
) -> ExceptionItem:
    """Queue an item for the category's configured owner, due within its window in business time.

    With `field` (a signal or record field a playbook step needs and did not get) the problem
    is one that repeats with every such signal: it is counted on the one open item for its
    (category, playbook, step, field), with first and last seen and a few sample signals,
    instead of queued once per signal. Otherwise the playbook fields only enrich the audit event.

    With `unflushed`, inside an `audit.batched` block, a new item is not flushed on its own: it is
    written with the session's next flush, and its audit event (which names its id) at the block's
    end. For callers that do not read the returned item's id (the engine's flags).
    """
    if journey_id is not None and playbook_id is None:
        playbook_id, playbook_version, step_id = _provenance(session, journey_id)
    if field is not None:
        item = _count_on_open_item(session, settings=settings, category=category, message=message, at=at,
                                   account_id=account_id, signal_id=signal_id, journey_id=journey_id,
                                   detail=detail, key=group_key(category=category, playbook_id=playbook_id,
                                                                step_id=step_id, field=field))
    else:
        respond_by = _respond_by(settings, category, at)
        item = ExceptionItem(
            category=str(category), owner=settings.exception_category(str(category)).owner, message=message,
            detail=dict(detail or {}), account_id=account_id, signal_id=signal_id, journey_id=journey_id,
            status=ItemStatus.OPEN, created_at=at, respond_by=respond_by,
            next_escalation_at=respond_by,  # past its window it escalates (work.exception_escalation)
            first_seen_at=at, last_seen_at=at, sample_signal_ids=[signal_id] if signal_id is not None else [],
        )
        session.add(item)
        if unflushed and audit.record_after_flush(session, lambda: _raised_event(
                item, category=category, message=message, at=at, account_id=account_id, journey_id=journey_id,
                playbook_id=playbook_id, playbook_version=playbook_version, step_id=step_id, signal_id=signal_id)):
            return item
        session.flush()
    audit.record(session, **_raised_event(item, category=category, message=message, at=at, account_id=account_id,
                                          journey_id=journey_id, playbook_id=playbook_id,
                                          playbook_version=playbook_version, step_id=step_id, signal_id=signal_id))
    return item


def _raised_event(item: ExceptionItem, *, category: Category | str, message: str, at: datetime,
                  account_id: int | None, journey_id: int | None, playbook_id: str | None,
                  playbook_version: int | None, step_id: str | None, signal_id: int | None) -> dict[str, Any]:
    return audit.row(at=at, action=audit.AuditAction.EXCEPTION_RAISED, rule=f"exception:{category}",
                     reason=message, account_id=account_id, journey_id=journey_id, playbook_id=playbook_id,
                     playbook_version=playbook_version, step_id=step_id,
                     detail={"exception_id": item.id, "owner": item.owner, "signal_id": signal_id,
                             "occurrences": item.occurrences})


@dataclass(frozen=True)
class NewItem:
    """One item for `raise_items`: what `raise_item` takes, for a problem that is not counted on an open item."""

    category: Category | str
    message: str
    at: datetime
    account_id: int | None = None
    journey_id: int | None = None
    detail: dict[str, Any] | None = None
    playbook_id: str | None = None
    playbook_version: int | None = None
    step_id: str | None = None


def raise_items(session: Session, *, settings: Settings, items: Sequence[NewItem]) -> list[int]:
    """`raise_item` for many at once (a sweep's batch): one INSERT and one audit executemany; returns the ids.

    The rows do not enter the session; callers that need the objects use `raise_item`.
    """
    if not items:
        return []
    rows: list[dict[str, Any]] = []
    for item in items:
        respond_by = _respond_by(settings, item.category, item.at)
        rows.append({
            "category": str(item.category), "owner": settings.exception_category(str(item.category)).owner,
            "message": item.message, "detail": dict(item.detail or {}), "account_id": item.account_id,
            "signal_id": None, "journey_id": item.journey_id, "status": str(ItemStatus.OPEN),
            "created_at": item.at, "respond_by": respond_by, "next_escalation_at": respond_by,
            "first_seen_at": item.at, "last_seen_at": item.at, "sample_signal_ids": [],
        })
    table = cast(Table, ExceptionItem.__table__)
    ids = [item_id for (item_id,) in insert_many(session, table, rows, returning=["id"])]
    audit.record_many(session, [
        audit.row(at=item.at, action=audit.AuditAction.EXCEPTION_RAISED, rule=f"exception:{item.category}",
                  reason=item.message, account_id=item.account_id, journey_id=item.journey_id,
                  playbook_id=item.playbook_id, playbook_version=item.playbook_version, step_id=item.step_id,
                  detail={"exception_id": item_id, "owner": row["owner"], "signal_id": None, "occurrences": 1})
        for item, row, item_id in zip(items, rows, ids, strict=True)])
    return ids


def _respond_by(settings: Settings, category: Category | str, at: datetime) -> datetime:
    return settings.calendar().add(at, settings.exception_category(str(category)).window)


def _count_on_open_item(session: Session, *, settings: Settings, category: Category | str, message: str,
                        at: datetime, account_id: int | None, signal_id: int | None, journey_id: int | None,
                        detail: dict[str, Any] | None, key: str) -> ExceptionItem:
    """The open item for `key`, created or with this occurrence counted on it."""
    item = _open_item(session, key)
    if item is None:
        respond_by = _respond_by(settings, category, at)
        # Insert-or-nothing on the partial unique index: of two workers raising the same new
        # problem at once, one creates the item and the other counts on it.
        inserted = session.execute(
            insert_ignoring(session, ExceptionItem.__table__, conflict=["group_key"], where="status = 'open'").values(
                category=str(category), owner=settings.exception_category(str(category)).owner, message=message,
                detail=dict(detail or {}), account_id=account_id, signal_id=signal_id, journey_id=journey_id,
                status=str(ItemStatus.OPEN), created_at=at, respond_by=respond_by,
                next_escalation_at=respond_by, escalation_level=0,
                group_key=key, occurrences=1, first_seen_at=at, last_seen_at=at,
                sample_signal_ids=[signal_id] if signal_id is not None else [],
            ).returning(ExceptionItem.id)
        ).scalar()
        if inserted is not None:
            created = session.get(ExceptionItem, inserted)
            assert created is not None
            session.info.setdefault(_OPEN_ITEMS, {})[key] = created
            return created
        item = _open_item(session, key)
        assert item is not None, f"no open exception item {key} after a conflicting insert"
    item.occurrences += 1
    item.first_seen_at = min(item.first_seen_at or at, at)
    item.last_seen_at = max(item.last_seen_at or at, at)
    if signal_id is not None and len(item.sample_signal_ids) < MAX_SAMPLE_SIGNALS \
            and signal_id not in item.sample_signal_ids:
        item.sample_signal_ids = [*item.sample_signal_ids, signal_id]
    return item


_OPEN_ITEMS = "handoff_open_exception_items"


def _open_item(session: Session, key: str) -> ExceptionItem | None:
    # A flood counts thousands of times on the same item in one transaction: once found (and,
    # on PostgreSQL, locked), it is kept in the session instead of queried for every signal.
    known: dict[str, ExceptionItem] = session.info.setdefault(_OPEN_ITEMS, {})
    item = known.get(key)
    if item is not None and inspect(item).persistent and item.status == ItemStatus.OPEN:
        return item
    query = select(ExceptionItem).where(ExceptionItem.group_key == key, ExceptionItem.status == ItemStatus.OPEN)
    if skip_locked(session):  # PostgreSQL: count under a row lock; SQLite has one writer anyway
        query = query.with_for_update()
    item = session.scalars(query).first()
    if item is not None:
        known[key] = item
    return item


def _provenance(session: Session, journey_id: int | None) -> tuple[str | None, int | None, str | None]:
    """(playbook id, version, current step) of a journey, for audit events that concern it."""
    journey = session.get(Journey, journey_id) if journey_id is not None else None
    if journey is None:
        return None, None, None
    version = session.get(PlaybookVersion, journey.playbook_version_id)
    return journey.playbook_id, version.version if version else None, journey.current_step_id


def list_items(session: Session, *, status: str | None = ItemStatus.OPEN,
               category: str | None = None, journey_id: int | None = None) -> list[ExceptionItem]:
    """Items by status (None: all), most urgent first."""
    query = select(ExceptionItem).order_by(ExceptionItem.respond_by, ExceptionItem.id)
    if status is not None:
        query = query.where(ExceptionItem.status == str(status))
    if category is not None:
        query = query.where(ExceptionItem.category == str(category))
    if journey_id is not None:
        query = query.where(ExceptionItem.journey_id == journey_id)
    return list(session.scalars(query))


def resolve_item(session: Session, *, item_id: int, by: str, at: datetime, note: str = "") -> ExceptionItem:
    """Close an item; resolving an already resolved item changes nothing."""
    item = session.get(ExceptionItem, item_id)
    if item is None:
        raise UnknownExceptionItem(f"no exception item {item_id}")
    if item.status == ItemStatus.RESOLVED:
        return item
    item.status = ItemStatus.RESOLVED
    item.resolved_at = at
    item.resolved_by = by
    session.flush()
    playbook_id, playbook_version, step_id = _provenance(session, item.journey_id)
    audit.record(session, at=at, action=audit.AuditAction.EXCEPTION_RESOLVED, actor=by,
                 rule=f"exception:{item.category}", reason=note or f"resolved exception {item.id}",
                 account_id=item.account_id, journey_id=item.journey_id, playbook_id=playbook_id,
                 playbook_version=playbook_version, step_id=step_id, detail={"exception_id": item.id})
    return item


def fallback_report(session: Session, *, since: datetime, until: datetime) -> list[CategoryCount]:
    """Categories raised in [since, until), most frequent first (each occurrence of an aggregated item counts)."""
    in_window = (ExceptionItem.created_at >= since) & (ExceptionItem.created_at < until)
    counts = session.execute(
        select(ExceptionItem.category, func.sum(ExceptionItem.occurrences), func.max(ExceptionItem.id))
        .where(in_window).group_by(ExceptionItem.category)
    ).all()
    if not counts:
        return []
    latest_ids = [latest for _, _, latest in counts]
    owners = dict(session.execute(
        select(ExceptionItem.category, ExceptionItem.owner).where(ExceptionItem.id.in_(latest_ids))
    ).tuples().all())
    oldest = dict(session.execute(
        select(ExceptionItem.category, func.min(ExceptionItem.created_at))
        .where(in_window, ExceptionItem.status == ItemStatus.OPEN).group_by(ExceptionItem.category)
    ).tuples().all())
    rows = [CategoryCount(category=category, count=int(count), owner=owners[category],
                          oldest_open=oldest.get(category))
            for category, count, _ in counts]
    return sorted(rows, key=lambda row: (-row.count, row.category))


def weekly_fallback_report(session: Session, *, now: datetime, weeks: int = 4) -> list[WeekReport]:
    """The fallback report per ISO week (UTC), the current week last."""
    if weeks < 1:
        raise ValueError("weeks must be at least 1")
    today = now.astimezone(UTC).date()
    this_monday = datetime(today.year, today.month, today.day, tzinfo=UTC) - timedelta(days=today.weekday())
    reports = []
    for back in range(weeks - 1, -1, -1):
        start = this_monday - timedelta(weeks=back)
        year, week, _ = start.isocalendar()
        reports.append(WeekReport(week=f"{year}-W{week:02d}", start=start,
                                  categories=fallback_report(session, since=start,
                                                             until=start + timedelta(weeks=1))))
    return reports



def assign_item(session: Session, *, item_id: int, owner: str, by: str, at: datetime) -> ExceptionItem:
    """Hand an open item to another named person (audited)."""
    item = session.get(ExceptionItem, item_id)
    if item is None:
        raise UnknownExceptionItem(f"no exception item {item_id}")
    previous, item.owner = item.owner, owner.strip().lower()
    session.flush()
    audit.record(session, at=at, action=audit.AuditAction.EXCEPTION_ASSIGNED,
                 actor=by, rule=f"exception:{item.category}", reason=f"assigned from {previous} to {item.owner}",
                 account_id=item.account_id, journey_id=item.journey_id, detail={"exception_id": item.id})
    return item
