"""Ids for new journeys and step runs before they are written, so that naming one needs no flush.

The engine names a new journey's id (its audit events, its exception items, its enrollment key
once it ends) and a step run's id (its task, its outbox messages' idempotency keys) right after
making them. Taking the id from the database meant a flush for each, and a flush writes every
other row the batch had changed too. Here the id is known when the row is made, and the batch is
written with one flush at its end.

PostgreSQL: the table's own sequence, a block of values per round trip, shared by the process's
sessions of one database (doubling from one up to 32, so the process never holds more ids unused
than it used: each engine pass is a session of its own, and asking the sequence afresh in each cost
a round trip for every few rows); the values the process still holds when it exits are skipped, as a
rolled-back insert skips one. SQLite: one writer at a
time (every write transaction begins IMMEDIATE), so the next id is one past the highest written
or handed out; a rolled-back savepoint gives its ids back, as SQLite itself would.

Every new row of these tables gets its id here, also those made elsewhere (at the flush), so the
two ways never hand out the same id.
"""

from __future__ import annotations

import functools
import os
import threading
import weakref
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, Select, bindparam, event, func, select
from sqlalchemy.orm import Session, SessionTransaction

from orchestrator.db import undoes_or_ends
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
    bind = session.get_bind()
    if bind.dialect.name == "postgresql":
        with _LOCK:
            block = _POOLS.setdefault(bind.engine, {}).setdefault(table.name, _Block())
            if not block.values:
                # 1, 2, 4, ... values per round trip, up to _BLOCK: a process that makes one journey takes
                # one id, and the ids it holds unused are never more than those it used.
                size = min(_BLOCK, max(1, block.used))
                block.values.extend(session.scalars(_nextvals(table.name), {"n": size},
                                                    execution_options={"autoflush": False}))
            block.used += 1
            return block.values.popleft()
    handed: dict[str, int] = session.info.setdefault(_KEY, {})  # SQLite: the last id handed out, by table
    last: int | None = handed.get(table.name)
    if last is None:
        written = session.scalar(select(func.max(table.c.id)), execution_options={"autoflush": False}) or 0
        last = max(written, max((row.id or 0 for row in session.new if type(row).__table__ is table), default=0))
    handed[table.name] = last + 1
    return last + 1


@dataclass
class _Block:
    """Sequence values fetched ahead for one table, and how many the process has used."""

    values: deque[int] = field(default_factory=deque)
    used: int = 0


# Per database (its engine), per table. A value is handed out once, under the lock; sequence values
# are the database's, so any session of the engine may use any of them.
_POOLS: weakref.WeakKeyDictionary[Engine, dict[str, _Block]] = weakref.WeakKeyDictionary()
_LOCK = threading.RLock()


def _forget_pools() -> None:
    # A forked child would hand out the very values its parent still holds.
    global _LOCK
    _POOLS.clear()
    _LOCK = threading.RLock()


os.register_at_fork(after_in_child=_forget_pools)


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
    # gives its ids back, and after a commit another process may write next. (PostgreSQL's sequence
    # values are never given back; its blocks are the process's, not the session's.)
    handed = session.info.get(_KEY)
    if handed and undoes_or_ends(transaction):
        handed.clear()
