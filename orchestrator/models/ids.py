"""Ids for new journeys and step runs before they are written, so that naming one needs no flush.

The engine names a new journey's id (its audit events, its exception items, its enrollment key
once it ends) and a step run's id (its task, its outbox messages' idempotency keys) right after
making them. Taking the id from the database meant a flush for each, and a flush writes every
other row the batch had changed too. Here the id is known when the row is made, and the batch is
written with one flush at its end.

PostgreSQL: the table's own sequence, a block of values per round trip (doubling from one up to
32, so a session never leaves more ids unused than it used); an id not used by the time the
session closes is skipped, as a rolled-back insert skips one. SQLite: one writer at a
time (every write transaction begins IMMEDIATE), so the next id is one past the highest written
or handed out; a rolled-back savepoint gives its ids back, as SQLite itself would.

Every new row of these tables gets its id here, also those made elsewhere (at the flush), so the
two ways never hand out the same id.
"""

from __future__ import annotations

import functools
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Select, bindparam, event, func, select
from sqlalchemy.orm import Session, SessionTransaction

from orchestrator.models.journeys import Journey, StepRun

__all__ = ["assign_id"]

PREASSIGNED: tuple[type[Journey] | type[StepRun], ...] = (Journey, StepRun)
_BLOCK = 32  # at most this many sequence values per round trip on PostgreSQL
_KEY = "handoff.ids"


def assign_id(session: Session, row: Journey | StepRun) -> int:
    """The new row's id, given to it now if it has none (add the row to the session first)."""
    if row.id is None:
        row.id = _next_id(session, type(row).__table__)
    return row.id


def _next_id(session: Session, table: Any) -> int:
    handed: dict[str, Any] = session.info.setdefault(_KEY, {})
    if session.get_bind().dialect.name == "postgresql":
        block: _Block = handed.setdefault(table.name, _Block())
        if not block.values:
            # 1, 2, 4, ... values per round trip, up to _BLOCK: a pass that makes one journey takes one
            # id, and the ids left unused when the session ends are never more than those it used.
            size = min(_BLOCK, max(1, block.used))
            block.values.extend(session.scalars(_nextvals(table.name), {"n": size}))
        block.used += 1
        return block.values.popleft()
    last: int | None = handed.get(table.name)
    if last is None:
        written = session.scalar(select(func.max(table.c.id)), execution_options={"autoflush": False}) or 0
        last = max(written, max((row.id or 0 for row in session.new if type(row).__table__ is table), default=0))
    handed[table.name] = last + 1
    return last + 1


@dataclass
class _Block:
    """Sequence values fetched ahead for one table, and how many this session has used."""

    values: deque[int] = field(default_factory=deque)
    used: int = 0


@functools.cache
def _nextvals(table: str) -> Select[tuple[int]]:
    return select(func.nextval(func.pg_get_serial_sequence(table, "id"))) \
        .select_from(func.generate_series(1, bindparam("n")))


@event.listens_for(Session, "before_flush")
def _assign_new(session: Session, _context: Any, _instances: Any) -> None:
    for row in session.new:
        if isinstance(row, PREASSIGNED) and row.id is None:
            row.id = _next_id(session, type(row).__table__)


@event.listens_for(Session, "after_transaction_end")
def _forget_sqlite_ids(session: Session, transaction: SessionTransaction) -> None:
    # On SQLite the next id is asked afresh after every transaction and savepoint: a rolled-back one
    # gives its ids back, and after a commit another process may write next. Sequence values are
    # never given back, so PostgreSQL's blocks stay. A flush's own inner transaction (neither a
    # savepoint nor the outermost) ends at every flush and gives nothing back.
    handed = session.info.get(_KEY)
    if handed and (transaction.nested or transaction.parent is None):
        for name in [name for name, value in handed.items() if isinstance(value, int)]:
            del handed[name]
