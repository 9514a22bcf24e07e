"""Sync: pull pages from a source connector, upsert their records, ingest their signals, keep the cursor.

Each page is one transaction: its records (through `intake.records.upsert_records`), its
signals (through `intake.signals.ingest`, stored once by dedupe key) and the cursor that
follows them (`sync_cursors`) commit together, so a sync stopped at any point resumes
from the last committed page and never skips one. Signals are stored, not evaluated: the
`signals.drain` job (or `handoff engine run`) takes them from there.

Cursors: a page's cursor is stored under its `object_type` (default "all"). `pull`
receives the "all" cursor's keys merged with one key per other object type, e.g.
`{"files": {...}}` or `{"accounts": {...}, "contacts": {...}}`; `full=True` passes None.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from connectors.base import Page, SourceConnector
from connectors.registry import build_connector, enabled_names, load_registry
from orchestrator import exception_queue
from orchestrator.config import Settings
from orchestrator.db import dialect_insert, unit_of_work
from orchestrator.errors import ConfigError, HandoffError
from orchestrator.intake.records import upsert_records
from orchestrator.intake.signals import IntakeStatus, ingest_many
from orchestrator.models import Account, ExternalId, SyncCursor
from orchestrator.worker.jobs import Job, JobResult, register_provider

if TYPE_CHECKING:
    from orchestrator.runtime import Runtime

__all__ = ["SyncReport", "read_cursor", "source_names", "sync"]

log = logging.getLogger(__name__)

SYNC_EVERY = timedelta(minutes=15)


@dataclass
class SyncReport:
    """What one sync did; `handoff sync` prints it as its closing summary."""

    name: str
    fetched: int = 0  # records and signals read from the source
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    skipped: int = 0
    signals_derived: int = 0
    signals_stored: int = 0  # new ones; the rest were duplicates or rejected
    signals_rejected: int = 0
    api_calls: int = 0
    pages: int = 0
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (f"{self.name}: fetched {self.fetched}, created {self.created}, updated {self.updated}, "
                f"deleted {self.deleted}, signals derived {self.signals_derived} ({self.signals_stored} new), "
                f"API calls {self.api_calls}, {self.seconds:.1f}s")


Progress = Callable[[SyncReport, Page], None]


class SyncError(HandoffError):
    """A sync cannot run (not a source, not enabled); one line for people."""

    status = 409
    problem = "/problems/sync"


def sync(*, runtime: Runtime, name: str, full: bool = False, progress: Progress | None = None,
         connector: SourceConnector | None = None, keep_cursor: bool = True) -> SyncReport:
    """Pull everything changed since the stored cursor (everything with `full`) from connector `name`.

    `connector` is an already built instance (`handoff import FOLDER`); `keep_cursor=False`
    leaves `sync_cursors` alone (a one-off import is not the deployment's sync).
    """
    started = time.monotonic()
    source = connector or _source(runtime, name)
    report = SyncReport(name=name)
    try:
        cursor = None if full else read_cursor(runtime, name)
        for page in source.pull(cursor=cursor, full=full):
            _apply(runtime, name=name, page=page, report=report, keep_cursor=keep_cursor)
            if progress is not None:
                progress(report, page)
    finally:
        if connector is None:
            source.close()
        report.seconds = time.monotonic() - started
    return report


def _source(runtime: Runtime, name: str) -> SourceConnector:
    registry = load_registry()
    if name not in enabled_names(settings=runtime.settings, registry=registry):
        raise SyncError(f"connector {name} is not enabled (see `handoff connectors list`)")
    built = build_connector(name=name, settings=runtime.settings, registry=registry, clock=runtime.clock.now)
    if not isinstance(built, SourceConnector):
        raise SyncError(f"connector {name} is not a source; nothing to sync")
    return built


def _apply(runtime: Runtime, *, name: str, page: Page, report: SyncReport, keep_cursor: bool) -> None:
    now = runtime.clock.now()
    with unit_of_work(runtime.sessions) as session:
        apply_page(session, settings=runtime.settings, name=name, page=page, now=now, report=report)
        if keep_cursor and page.cursor is not None:
            _store_cursor(session, name=name, object_type=page.object_type, cursor=page.cursor, now=now)


def apply_page(session: Session, *, settings: Settings, name: str, page: Page, now: datetime,
               report: SyncReport) -> None:
    """One page into the core, in the caller's transaction: records upserted, signals stored once.

    The one intake for everything a source sends, pulled (`sync`) or pushed (`receive_webhook`);
    identity conflicts become exception items. Counts are added to `report`.
    """
    upserted = upsert_records(session, source=name, records=page.records, now=now, settings=settings)
    results = ingest_many(session=session, raws=list(page.signals), source=name, now=now,
                          settings=settings) if page.signals else []
    stored = rejected = 0
    for result in results:
        stored += result.status == IntakeStatus.ACCEPTED
        rejected += result.status == IntakeStatus.REJECTED
        if result.status == IntakeStatus.REJECTED and len(report.problems) < 50:
            report.problems.append(f"signal: {result.field or 'signal'}: {result.reason}")
    for conflict in upserted.conflicts:
        _raise_conflict(session, settings=settings, conflict=conflict, now=now)
    report.pages += 1
    report.fetched += len(page.records) + len(page.signals)
    report.created += upserted.total("created")
    report.updated += upserted.total("updated")
    report.unchanged += upserted.total("unchanged")
    report.deleted += upserted.total("deleted")
    report.skipped += upserted.total("skipped")
    report.signals_derived += len(page.signals)
    report.signals_stored += stored
    report.signals_rejected += rejected
    report.api_calls += page.api_calls
    report.problems.extend(upserted.problems[: max(0, 50 - len(report.problems))])


def _raise_conflict(session: Session, *, settings: Settings, conflict: Mapping[str, Any], now: datetime) -> None:
    """Two accounts claim one company: a person decides which is which; nothing is merged meanwhile.

    Grouped per source record, so every later sync that meets the same conflict counts on the
    one open item instead of queueing another.
    """
    local_ids = [int(i) for i in conflict.get("local_ids") or []]
    sides = []
    for account in session.scalars(select(Account).where(Account.id.in_(local_ids)).order_by(Account.id)):
        ids = dict(session.execute(select(ExternalId.source, ExternalId.external_id).where(
            ExternalId.kind == "account", ExternalId.local_id == account.id)).tuples().all())
        sides.append({"account_id": account.id, "domain": account.domain, "owner_id": account.owner_id,
                      "external_ids": ids})
    record = f"{conflict.get('source')}:{conflict.get('external_id')}"
    exception_queue.raise_item(
        session, settings=settings, category=exception_queue.Category.IDENTITY_CONFLICT, at=now,
        message=(f"{conflict.get('kind', 'account')} {record} is claimed by accounts "
                 f"{', '.join(map(str, local_ids))}; not linked until someone decides which it is"),
        account_id=local_ids[0] if local_ids else None, field=f"record {record}",
        detail={"record": dict(conflict), "accounts": sides})


def read_cursor(runtime: Runtime, name: str) -> dict[str, Any] | None:
    """The cursor `pull` receives: the "all" cursor's keys and one key per other object type."""
    with unit_of_work(runtime.sessions, read_only=True) as session:
        rows = session.execute(select(SyncCursor.object_type, SyncCursor.cursor)
                               .where(SyncCursor.connector == name)).all()
    if not rows:
        return None
    merged: dict[str, Any] = {}
    for object_type, text in rows:
        value = json.loads(text)
        if object_type == "all" and isinstance(value, Mapping):
            merged.update(value)
        else:
            merged[object_type] = value
    return merged


def _store_cursor(session: Session, *, name: str, object_type: str, cursor: Mapping[str, Any], now: Any) -> None:
    text = json.dumps(cursor, sort_keys=True, default=str)
    statement = dialect_insert(session, SyncCursor).values(
        connector=name, object_type=object_type, cursor=text, updated_at=now)
    session.execute(statement.on_conflict_do_update(
        index_elements=["connector", "object_type"], set_={"cursor": text, "updated_at": now}))


def source_names(runtime: Runtime) -> list[str]:
    """Enabled connectors that are sources with something to pull."""
    registry = load_registry()
    found = []
    for name in enabled_names(settings=runtime.settings, registry=registry):
        entry = registry.get(name)
        if entry is None or entry.cls is None or not issubclass(entry.cls, SourceConnector):
            continue
        try:
            built = build_connector(name=name, settings=runtime.settings, registry=registry)
        except ConfigError as exc:
            log.warning("connector %s is not synced: %s", name, exc)
            continue
        if isinstance(built, SourceConnector) and built.has_source():
            found.append(name)
        built.close()
    return found


def _sync_job(*, runtime: Runtime, now: Any, name: str) -> JobResult:
    report = sync(runtime=runtime, name=name)
    return JobResult(items=report.fetched, errors=report.skipped + report.signals_rejected, detail=report.summary())


def _sync_jobs(runtime: Runtime) -> Iterable[Job]:
    return [Job(id=f"sync.{name}", title=f"Sync records and signals from {name}", every=SYNC_EVERY,
                run=partial(_sync_job, name=name))
            for name in source_names(runtime)]


register_provider(_sync_jobs)
