"""Delivery: claim due outbox messages by lease, push them through their connector, mark each one.

One pass (`deliver_due`) repeats three short steps until nothing is due or `limit` is hit:

1. claim a slice by lease and commit (no row lock survives this transaction);
2. group the slice per connector into the connector's `max_batch` and `push` each batch,
   outside any transaction;
3. mark each message in its own short transaction: delivered (with the remote id), retry
   (backoff with jitter, or the remote side's Retry-After) or dead (a permanent failure, or
   the retry budget spent) with a `delivery_failed` exception item that has an owner.

A worker that dies between 1 and 3 leaves its messages leased; once the lease expires
another worker claims them again, and the connector's idempotency on the message key makes
the second push harmless. A transient failure (a connector raising anything but
PermanentError, a configuration that is not there yet) only ever delays a message.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload, sessionmaker

from connectors.base import (
    AccountRef,
    Connector,
    DeliveryConnector,
    Outbound,
    PermanentError,
    PushResult,
    TaskRef,
    TransientError,
)
from connectors.registry import Registry, build_connector, connector_status, load_registry
from orchestrator.config import Settings
from orchestrator.db import skip_locked, unit_of_work
from orchestrator.delivery import outbox
from orchestrator.delivery.routing import Routing, route_for
from orchestrator.errors import ConfigError
from orchestrator.models import Account, ExternalId, Journey, OutboxMessage, OutboxStatus, Owner, Task
from orchestrator.worker.jobs import JobResult, job

if TYPE_CHECKING:
    from orchestrator.runtime import Runtime

__all__ = ["DEFAULT_LEASE", "DeliveryReport", "deliver_due", "worker_identity"]

log = logging.getLogger(__name__)

DEFAULT_LEASE = timedelta(minutes=5)
_CREATES_TASK = frozenset({"crm.create_task"})
_CLAIM_SLICE = 200  # per claim; a slice is pushed and marked well within one lease


@dataclass
class DeliveryReport:
    """What one pass did, overall and per connector."""

    claimed: int = 0
    delivered: int = 0
    retried: int = 0
    dead: int = 0
    lease_lost: int = 0  # another worker took the message over after our lease ran out
    by_connector: Counter[str] = field(default_factory=Counter)
    pushes: int = 0  # calls to a connector's push (batches)

    def __str__(self) -> str:
        return (f"{self.claimed} claimed: {self.delivered} delivered, {self.retried} to retry, "
                f"{self.dead} dead in {self.pushes} batches")


def worker_identity() -> str:
    """A name for this worker, unique per process: host, pid and a random suffix."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def deliver_due(
    *,
    sessions: sessionmaker[Session],
    settings: Settings,
    registry: Registry,
    now: datetime,
    worker_id: str,
    connector: str | None = None,
    lease: timedelta = DEFAULT_LEASE,
    limit: int = 10_000,
    clock: Callable[[], datetime] | None = None,
    rng: random.Random | None = None,
    max_attempts: int = outbox.DEFAULT_MAX_ATTEMPTS,
) -> DeliveryReport:
    """Deliver what is due at `now` (only `connector`'s messages if given); see the module docstring.

    `clock` gives the time for marking and later claims (default: `now` throughout).
    """
    time = clock or (lambda: now)
    report = DeliveryReport()
    routing = Routing.from_connectors(settings.connectors)
    instances: dict[str, Connector | str] = {}
    try:
        while report.claimed < limit:
            at = time() if clock else now
            batch = _claim(sessions=sessions, now=at, worker_id=worker_id, lease=lease, connector=connector,
                           limit=min(_CLAIM_SLICE, limit - report.claimed), routing=routing)
            if not batch:
                break
            report.claimed += len(batch)
            for name, messages in _by_connector(batch).items():
                target = instances.get(name)
                if target is None:
                    target = instances[name] = _instantiate(name, settings=settings, registry=registry, clock=time,
                                                            sessions=sessions)
                for chunk in _chunks(messages, target):
                    results = _push(target, chunk)
                    report.pushes += 1
                    _mark(sessions=sessions, settings=settings, worker_id=worker_id, at=time(), results=results,
                          report=report, rng=rng, max_attempts=max_attempts)
                    report.by_connector[name] += len(chunk)
    finally:
        for instance in instances.values():
            if isinstance(instance, Connector):
                instance.close()
    return report


# -- 1. claim ---------------------------------------------------------------------------------------

def _claim(*, sessions: sessionmaker[Session], now: datetime, worker_id: str, lease: timedelta,
           connector: str | None, limit: int, routing: Routing) -> list[Outbound]:
    # Committed when the block ends: the lease is visible to every other worker before any remote call.
    with unit_of_work(sessions) as session:
        messages = outbox.claim(session, now=now, worker_id=worker_id, lease=lease, limit=limit, connector=connector)
        for message in messages:
            if message.connector is None:  # enqueued before routing existed: route it now
                message.connector = route_for(session, target=message.target, account_id=message.account_id,
                                              routing=routing)
        return _snapshots(session, messages)


def _snapshots(session: Session, messages: Sequence[OutboxMessage]) -> list[Outbound]:
    account_ids = {m.account_id for m in messages if m.account_id is not None}
    task_ids = {m.task_id for m in messages if m.task_id is not None}
    # The people notifications may name (`to: account.owner | owner.manager | account.csm`), in three queries.
    accounts = {a.id: a for a in session.scalars(
        select(Account).where(Account.id.in_(account_ids))
        .options(selectinload(Account.owner).selectinload(Owner.manager), selectinload(Account.csm)))}
    tasks = {t.id: t for t in session.scalars(select(Task).where(Task.id.in_(task_ids)))}
    owner_ids = {t.owner_id for t in tasks.values()}
    ids = _external_ids(session, kind="account", local_ids=account_ids)
    owner_ids_by_source = _external_ids(session, kind="owner", local_ids=owner_ids)
    # The deal a task's journey is about, so a CRM can attach the task to it as well (HubSpot: type 216).
    journey_ids = {t.journey_id for t in tasks.values() if t.journey_id is not None}
    deal_of_journey: dict[int, int] = {
        journey_id: deal_id for journey_id, deal_id in session.execute(select(Journey.id, Journey.deal_id).where(
            Journey.id.in_(journey_ids), Journey.deal_id.is_not(None))).tuples() if deal_id is not None
    } if journey_ids else {}
    deal_ids_by_source = _external_ids(session, kind="deal", local_ids=set(deal_of_journey.values()))
    found: list[Outbound] = []
    for message in messages:
        account = accounts.get(message.account_id) if message.account_id is not None else None
        task = tasks.get(message.task_id) if message.task_id is not None else None
        found.append(Outbound(
            id=message.id, kind=message.kind, idempotency_key=message.idempotency_key,
            payload=dict(message.payload or {}), attempts=message.attempts, target=message.target,
            connector=message.connector or "", created_at=message.created_at,
            account=None if account is None else _account_ref(account, ids.get(account.id, {})),
            task=None if task is None else TaskRef(
                id=task.id, title=task.title, crm_id=task.crm_id, crm_source=task.crm_source,
                owner_email=task.owner.email if task.owner else None,
                owner_external_ids=owner_ids_by_source.get(task.owner_id, {}),
                deal_external_ids=deal_ids_by_source.get(deal_of_journey.get(task.journey_id or 0, 0), {})),
        ))
    return found


def _account_ref(account: Account, external_ids: Mapping[str, str]) -> AccountRef:
    owner = account.owner
    manager = owner.manager if owner is not None else None
    return AccountRef(id=account.id, name=account.name, domain=account.domain, external_ids=external_ids,
                      owner_email=owner.email if owner is not None else None,
                      owner_manager_email=manager.email if manager is not None else None,
                      csm_email=account.csm.email if account.csm is not None else None)


def _external_ids(session: Session, *, kind: str, local_ids: Iterable[int]) -> dict[int, dict[str, str]]:
    ids = list(local_ids)
    found: dict[int, dict[str, str]] = defaultdict(dict)
    if ids:
        for row in session.execute(select(ExternalId.local_id, ExternalId.source, ExternalId.external_id)
                                   .where(ExternalId.kind == kind, ExternalId.local_id.in_(ids))):
            found[row.local_id][row.source] = row.external_id
    return found


# -- 2. push ----------------------------------------------------------------------------------------

def _by_connector(batch: Sequence[Outbound]) -> dict[str, list[Outbound]]:
    grouped: dict[str, list[Outbound]] = defaultdict(list)
    for message in batch:
        grouped[message.connector].append(message)
    return grouped


def _instantiate(name: str, *, settings: Settings, registry: Registry,
                 clock: Callable[[], datetime], sessions: sessionmaker[Session]) -> Connector | str:
    """The connector, or why it cannot deliver right now (a reason, retried later)."""
    status = connector_status(name=name, settings=settings, registry=registry)
    if not status.installed:
        return f"connector {name} is not installed"
    if not status.available:
        return f"connector {name} cannot be used: {status.problem}"
    if not status.enabled:
        return f"connector {name} is not enabled (add [connectors.{name}] to the config file)"
    try:
        instance = build_connector(name=name, settings=settings, registry=registry, clock=clock, sessions=sessions)
    except ConfigError as exc:
        return str(exc)
    if not isinstance(instance, DeliveryConnector):
        return f"connector {name} does not deliver messages"
    return instance


def _chunks(messages: Sequence[Outbound], target: Connector | str) -> Iterable[Sequence[Outbound]]:
    size = max(1, target.max_batch) if isinstance(target, DeliveryConnector) else len(messages)
    for start in range(0, len(messages), size):
        yield messages[start:start + size]


def _push(target: Connector | str, chunk: Sequence[Outbound]) -> list[PushResult]:
    """One result per message; exceptions become results, so nothing is left unmarked."""
    if not isinstance(target, DeliveryConnector):
        return [PushResult(message_id=m.id, outcome="retry", error=str(target)) for m in chunk]
    unhandled = [m for m in chunk if target.handles and m.kind not in target.handles]
    handled = [m for m in chunk if m not in unhandled]
    results = {m.id: PushResult(message_id=m.id, outcome="dead",
                                error=f"{target.name} does not handle {m.kind}") for m in unhandled}
    if handled:
        for result in _call(target, handled):
            results[result.message_id] = result
    return [results[m.id] for m in chunk]


def _call(target: DeliveryConnector, chunk: Sequence[Outbound]) -> list[PushResult]:
    try:
        results = list(target.push(chunk))
    except TransientError as exc:
        return [PushResult(message_id=m.id, outcome="retry", error=_short(exc), retry_after=exc.retry_after)
                for m in chunk]
    except PermanentError as exc:
        return [PushResult(message_id=m.id, outcome="dead", error=_short(exc)) for m in chunk]
    except Exception as exc:  # an unknown failure delays the batch; it never drops it
        log.warning("connector %s failed a batch of %d: %s", target.name, len(chunk), type(exc).__name__)
        return [PushResult(message_id=m.id, outcome="retry", error=f"{type(exc).__name__} in {target.name}")
                for m in chunk]
    by_id = {result.message_id: result for result in results}
    if len(results) != len(chunk) or set(by_id) != {m.id for m in chunk}:
        # A connector bug: retry what it did not account for (the remote side is idempotent).
        return [by_id.get(m.id) or PushResult(message_id=m.id, outcome="retry",
                                               error=f"{target.name} returned no result for this message")
                for m in chunk]
    return [by_id[m.id] for m in chunk]


def _short(exc: Exception) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:300]


# -- 3. mark ----------------------------------------------------------------------------------------

def _mark(*, sessions: sessionmaker[Session], settings: Settings, worker_id: str, at: datetime,
          results: Sequence[PushResult], report: DeliveryReport, rng: random.Random | None,
          max_attempts: int) -> None:
    with unit_of_work(sessions) as session:
        query = select(OutboxMessage).where(OutboxMessage.id.in_([r.message_id for r in results]))
        if skip_locked(session):
            query = query.with_for_update()
        rows = {m.id: m for m in session.scalars(query)}
        created: dict[int, tuple[str, str]] = {}  # task id -> (connector, the CRM's id of its task)
        for result in results:
            message = rows.get(result.message_id)
            if message is None or message.status != OutboxStatus.PENDING:
                continue  # cancelled meanwhile, or another worker recorded it first
            if result.outcome == "delivered":
                outbox.mark_delivered(message=message, at=at, remote_id=result.remote_id)
                report.delivered += 1
                if message.kind in _CREATES_TASK and result.remote_id and message.task_id is not None:
                    created[message.task_id] = (message.connector or message.target, result.remote_id)
                continue
            if message.claimed_by != worker_id:
                report.lease_lost += 1  # our lease ran out and someone else owns the retry now
                continue
            error = result.error or result.outcome
            if result.outcome == "dead":
                outbox.mark_failed(session=session, settings=settings, message=message, at=at, error=error,
                                   permanent=True)
                report.dead += 1
                continue
            retry_at = _retry_at(message, at=at, retry_after=result.retry_after, rng=rng)
            outbox.mark_failed(session=session, settings=settings, message=message, at=at, error=error,
                               retry_at=retry_at, max_attempts=max_attempts)
            if message.status == OutboxStatus.DEAD:
                report.dead += 1
            else:
                report.retried += 1
        _remember_crm_ids(session, created)


def _remember_crm_ids(session: Session, created: Mapping[int, tuple[str, str]]) -> None:
    """The CRM's id of each task it created, so later updates address it directly (and a sync finds it)."""
    if not created:
        return
    for task in session.scalars(select(Task).where(Task.id.in_(list(created)))):
        source, crm_id = created[task.id]
        if task.crm_id is None:  # a task that came from the CRM keeps the id it came with
            task.crm_id, task.crm_source = crm_id, source


def _retry_at(message: OutboxMessage, *, at: datetime, retry_after: float | None,
              rng: random.Random | None) -> datetime:
    if retry_after is not None and retry_after > 0:
        return at + timedelta(seconds=retry_after)  # the remote side said when
    return at + outbox.jittered(outbox.backoff_delay(message.attempts + 1), rng=rng)


# -- the job ----------------------------------------------------------------------------------------

@job("outbox.deliver", title="Deliver due outbox messages", every=timedelta(seconds=30))
def _deliver_job(*, runtime: Runtime, now: datetime) -> JobResult:
    report = deliver_due(sessions=runtime.sessions, settings=runtime.settings, registry=load_registry(), now=now,
                         worker_id=worker_identity(), clock=runtime.clock.now)
    return JobResult(items=report.delivered, errors=report.retried + report.dead, detail=str(report))


def pending_counts(session: Session) -> Mapping[str, int]:
    """Pending messages per connector (for status lines)."""
    counts: Counter[str] = Counter()
    for name in session.scalars(select(OutboxMessage.connector).where(OutboxMessage.status == OutboxStatus.PENDING)):
        counts[name or "(unrouted)"] += 1
    return counts
