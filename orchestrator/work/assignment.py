"""Who gets a task: one named person, never "the team".

A playbook's `assign:` names a person reference (`account.owner`, `deal.owner`,
`owner.manager`, an email) or a role pool picked by round robin or least load, with
an optional fallback. A person is eligible when active, not out of office and under
their open-task cap. `resolve_assignee` returns None when nobody qualifies; the
caller then raises a `no_assignee` exception item.

Concurrency: on PostgreSQL a pool pick locks the chosen person's row with
`FOR UPDATE SKIP LOCKED`, so two workers assigning at the same moment take
different people and each sees the other's `last_assigned_at` after commit. When
every eligible person is held by another transaction we do not report nobody: the
caller gets `RowBusy`, a transient failure, and the work is retried (never a blocking
wait while other locks are held: that is how workers deadlock).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import Select, bindparam, case, event, func, or_, select
from sqlalchemy.orm import ORMExecuteState, Session, SessionTransaction, object_session

from orchestrator.db import NO_AUTOFLUSH, RowBusy, flush_only, undoes_or_ends
from orchestrator.db import skip_locked as row_locks_skip
from orchestrator.models import OPEN_STATUSES, Account, Deal, Owner, Task
from orchestrator.work.tasks import open_task_count

if TYPE_CHECKING:
    from orchestrator.playbook.model import Assignment

__all__ = ["Assignee", "UnknownReference", "eligibility_problem", "find_owner", "resolve_assignee", "resolve_person"]

_STRATEGY_WORDS = {"round_robin": "round robin", "least_loaded": "least loaded"}
_REFERENCE_WORDS = {
    "account.owner": "account owner",
    "account.csm": "account CSM",
    "deal.owner": "deal owner",
    "owner.manager": "account owner's manager",
}
# Fallback chains are written by hand; a cycle would be a playbook bug, not a reason to spin.
_MAX_FALLBACK_DEPTH = 10


class UnknownReference(ValueError):
    """An `assign.to` that is neither a known reference nor an email address."""


@dataclass(frozen=True)
class Assignee:
    """The person chosen and, in words, how: shown in the brief and the audit trail."""

    owner: Owner
    how: str


def resolve_assignee(
    session: Session, *, assignment: Assignment, account: Account, deal: Deal | None = None, now: datetime
) -> Assignee | None:
    """The eligible person for `assignment`, following fallbacks; None when there is nobody."""
    skipped: list[str] = []
    current: Assignment | None = assignment
    depth = 0
    while current is not None and depth <= _MAX_FALLBACK_DEPTH:
        chosen = _try(session, current, account=account, deal=deal, now=now, skipped=skipped)
        if chosen is not None:
            if depth == 0:
                return chosen
            why = f" ({'; '.join(skipped)})" if skipped else ""
            return Assignee(owner=chosen.owner, how=f"fallback: {chosen.how}{why}")
        current = current.fallback
        depth += 1
    return None


def resolve_person(session: Session, *, reference: str, account: Account, deal: Deal | None = None) -> Owner | None:
    """The person a reference names, whether or not they are available; None if there is none.

    Raises UnknownReference for text that is neither a reference nor an email.
    """
    if reference == "account.owner":
        return account.owner
    if reference == "deal.owner":
        return deal.owner if deal is not None else None
    if reference == "owner.manager":
        return account.owner.manager if account.owner is not None else None
    if reference == "account.csm":
        # An account owned by a CSM needs no separate CSM.
        if account.csm is not None:
            return account.csm
        owner = account.owner
        return owner if owner is not None and owner.role == "csm" else None
    if "@" in reference and " " not in reference.strip():
        return find_owner(session, email=reference)
    raise UnknownReference(
        f'"{reference}" is not a person: use account.owner, deal.owner, owner.manager, '
        "account.csm or an email address"
    )


def eligibility_problem(session: Session, *, owner: Owner, now: datetime) -> str | None:
    """Why `owner` cannot take a task now (inactive, out of office, at capacity), or None."""
    if not owner.active:
        return f"{owner.name} is inactive"
    if not owner.available(now):
        until = owner.out_of_office_until
        return f"{owner.name} is out of office until {until:%Y-%m-%d %H:%M} UTC" if until else \
            f"{owner.name} is unavailable"
    if owner.max_open_tasks is not None:
        count = _open_tasks(session, owner.id)
        if count >= owner.max_open_tasks:
            return f"{owner.name} has {count} open tasks (cap {owner.max_open_tasks})"
    return None


# -- internals --------------------------------------------------------------------


def _try(
    session: Session, assignment: Assignment, *, account: Account, deal: Deal | None, now: datetime,
    skipped: list[str],
) -> Assignee | None:
    if assignment.to:
        label = _REFERENCE_WORDS.get(assignment.to, assignment.to)
        person = resolve_person(session, reference=assignment.to, account=account, deal=deal)
        if person is None:
            skipped.append(f"no {label}")
        else:
            if person.max_open_tasks is not None and not _lock(session, [person.id], skip_locked=True):
                # Hold the row so a concurrent assignment cannot also take the last free slot;
                # never wait for it while this transaction holds other locks (deadlocks).
                raise RowBusy(f"owner {person.id} is being assigned by another worker")
            problem = eligibility_problem(session, owner=person, now=now)
            if problem is None:
                return Assignee(owner=person, how=label)
            skipped.append(f"{label} {problem}")
    if assignment.role:
        person = _pick_from_pool(session, role=assignment.role, strategy=assignment.strategy, now=now)
        words = _STRATEGY_WORDS.get(assignment.strategy, assignment.strategy)
        if person is not None:
            return Assignee(owner=person, how=f"{words} among {assignment.role}")
        skipped.append(f"nobody available with role {assignment.role}")
    return None


def _pick_from_pool(session: Session, *, role: str, strategy: str, now: datetime) -> Owner | None:
    candidates = _ranked_candidates(session, role=role, strategy=strategy, now=now)
    if not candidates:
        return None
    postgres = row_locks_skip(session)
    busy: list[Owner] = []
    for owner in candidates:
        if postgres and not _lock(session, [owner.id], skip_locked=True):
            busy.append(owner)  # another worker is assigning this person right now
            continue
        if eligibility_problem(session, owner=owner, now=now) is None:
            owner.last_assigned_at = now
            flush_only(session, Owner)  # before a later lock's fresh read of the row could undo it
            return owner
    # Those checked under their lock could not take it; only the ones held elsewhere might have.
    if any(eligibility_problem(session, owner=owner, now=now) is None for owner in busy):
        # Everyone who could take it is being assigned in other transactions. Waiting for
        # one of them while holding this batch's locks is how workers deadlock: the work
        # is retried shortly instead, with their committed state.
        raise RowBusy(f"every available person with role {role} is being assigned by another worker")
    return None


def _ranked_candidates(session: Session, *, role: str, strategy: str, now: datetime) -> Sequence[Owner]:
    """Available people with `role`, best first; capacity is checked per person afterwards.

    Asked again only when this session has changed a person or a task since (a pick sets
    `last_assigned_at`), or a savepoint or the transaction ended: a burst of tasks for a pool
    that is full asks once. Whoever is tried is still locked and checked afresh.
    """
    ranked: dict[tuple[str, str, datetime], Sequence[Owner]] = session.info.setdefault(_RANKED, {})
    key = (role, strategy, now)
    if key not in ranked:
        flush_only(session, Owner, Task)  # what the ranking reads
        ranked[key] = session.scalars(_candidates_query(strategy), {"role": role, "now": now},
                                      execution_options=NO_AUTOFLUSH).all()
    return ranked[key]


@functools.cache
def _candidates_query(strategy: str) -> Select[tuple[Owner]]:
    # Built once per strategy: asked for every task assigned from a pool.
    never_assigned_first = case((Owner.last_assigned_at.is_(None), 0), else_=1)
    query = select(Owner).where(
        Owner.role == bindparam("role"),
        Owner.active.is_(True),
        or_(Owner.out_of_office_until.is_(None), Owner.out_of_office_until <= bindparam("now")),
    )
    if strategy == "least_loaded":
        load = (
            select(func.count(Task.id))
            .where(Task.owner_id == Owner.id, Task.status.in_([str(s) for s in OPEN_STATUSES]))
            .correlate(Owner)
            .scalar_subquery()
        )
        query = query.order_by(load, never_assigned_first, Owner.last_assigned_at, Owner.id)
    elif strategy == "round_robin":
        query = query.order_by(never_assigned_first, Owner.last_assigned_at, Owner.id)
    else:
        raise ValueError(f'unknown assignment strategy "{strategy}"; use round_robin or least_loaded')
    return query


def _lock(session: Session, owner_ids: list[int], *, skip_locked: bool) -> bool:
    """Lock owner rows for this transaction; False if SKIP LOCKED found one held elsewhere.

    `populate_existing` refreshes the objects already in the session, so decisions
    after the lock use the committed `last_assigned_at` and `active` values. A row this
    transaction already holds is not asked for again: nobody else can have changed it.
    """
    if not row_locks_skip(session):
        return True  # SQLite: one writer at a time already serialises assignment
    held = _held(session)
    wanted = [owner_id for owner_id in owner_ids if owner_id not in held]
    if not wanted:
        return True
    query = (
        select(Owner)
        .where(Owner.id.in_(wanted))
        .with_for_update(skip_locked=skip_locked)
        .execution_options(populate_existing=True)
    )
    flush_only(session, Owner)
    locked = [owner.id for owner in session.scalars(query, execution_options=NO_AUTOFLUSH)]
    held.update(dict.fromkeys(locked))
    return len(locked) == len(wanted)


# -- what this transaction knows of the people it holds --------------------------------
#
# Assigning a batch's tasks asks about the same few people again and again. Once this
# transaction holds a person's row lock (or the database has a single writer), nobody else
# can assign them work until it ends, so the lock and the open-task count taken under it
# stay true until this session itself changes a task, or a savepoint or the transaction ends
# (a rolled-back savepoint gives its row locks back).

_HELD = "handoff.assignment.held"  # owner id -> open-task count under the lock (None: not counted yet)
_RANKED = "handoff.assignment.ranked"  # (role, strategy, now) -> the pool's ranking


def _held(session: Session) -> dict[int, int | None]:
    held: dict[int, int | None] = session.info.setdefault(_HELD, {})
    return held


def _open_tasks(session: Session, owner_id: int) -> int:
    held = _held(session)
    if row_locks_skip(session) and owner_id not in held:
        return open_task_count(session, owner_id)  # not under this transaction's lock: ask every time
    count = held.get(owner_id)
    if count is None:
        count = held[owner_id] = open_task_count(session, owner_id)
    return count


def _forget_counts(session: Session | None) -> None:
    if session is None:
        return
    held = session.info.get(_HELD)
    if held:
        for owner_id in held:
            held[owner_id] = None
    session.info.pop(_RANKED, None)  # a pool's ranking counts open tasks too


@event.listens_for(Session, "after_transaction_end")
def _forget_held(session: Session, transaction: SessionTransaction) -> None:
    if undoes_or_ends(transaction):
        session.info.pop(_HELD, None)
        session.info.pop(_RANKED, None)


@event.listens_for(Session, "after_attach")
def _row_added(session: Session, instance: object) -> None:
    if isinstance(instance, Task):
        _forget_counts(session)
    elif isinstance(instance, Owner):
        session.info.pop(_RANKED, None)


@event.listens_for(Session, "before_flush")
def _task_deleted(session: Session, _context: object, _instances: object) -> None:
    if any(isinstance(row, Task) for row in session.deleted):
        _forget_counts(session)


@event.listens_for(Session, "do_orm_execute")
def _tasks_written(state: ORMExecuteState) -> None:
    if state.is_insert or state.is_update or state.is_delete:
        table = getattr(getattr(state.statement, "table", None), "name", None)
        if table == Task.__tablename__:
            _forget_counts(state.session)
        elif table == Owner.__tablename__:
            state.session.info.pop(_RANKED, None)


@event.listens_for(Task.status, "set")
@event.listens_for(Task.owner_id, "set")
def _task_changed(target: Task, _value: object, _old: object, _initiator: object) -> None:
    _forget_counts(object_session(target))


@event.listens_for(Owner.role, "set")
@event.listens_for(Owner.active, "set")
@event.listens_for(Owner.out_of_office_until, "set")
@event.listens_for(Owner.last_assigned_at, "set")
def _person_changed(target: Owner, _value: object, _old: object, _initiator: object) -> None:
    session = object_session(target)
    if session is not None:
        session.info.pop(_RANKED, None)



def find_owner(session: Session, *, email: str) -> Owner | None:
    """The person with this email, case and surrounding spaces ignored (the one owner lookup)."""
    return session.scalars(select(Owner).where(func.lower(Owner.email) == email.strip().lower())).first()
