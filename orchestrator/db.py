"""Database plumbing: engines, sessions and the unit of work. No domain logic here."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    ColumnElement,
    DateTime,
    Engine,
    Table,
    TextClause,
    any_,
    bindparam,
    create_engine,
    event,
    insert,
    text,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.dialects.postgresql import dml as postgresql_dml
from sqlalchemy.dialects.sqlite import dml as sqlite_dml
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import QueryableAttribute, Session, SessionTransaction, sessionmaker
from sqlalchemy.sql.visitors import InternalTraversal
from sqlalchemy.types import TypeDecorator

# URL parsing lives apart so that reading the settings needs no ORM; re-exported for callers.
from orchestrator.database_url import DEFAULT_CONNECT_TIMEOUT, parse_database_url

__all__ = ["DEFAULT_CONNECT_TIMEOUT", "LOCK_TIMEOUT_MS", "JSONType", "RowBusy", "SESSION_CONNECTORS_KEY",
           "SESSION_DESCRIPTION_LIMITS_KEY", "UTCDateTime",
           "among", "connection_lost", "describe_error", "dialect_insert", "insert_ignoring", "insert_many",
           "is_transient", "make_engine", "make_session_factory", "parse_database_url", "skip_locked", "undoes_or_ends",
           "unit_of_work"]

# Session.info key under which the runtime puts the deployment's `[connectors.*]` sections, so the
# outbox can route each message to its connector without importing the configuration machinery.
SESSION_CONNECTORS_KEY = "handoff.connectors"
# ...and the task description limit each configured CRM connector declares, so a brief is cut to fit it.
SESSION_DESCRIPTION_LIMITS_KEY = "handoff.description_limits"
LOCK_TIMEOUT_MS = 10_000

# JSONB on PostgreSQL (indexable, compact); plain JSON text elsewhere.
JSONType = JSON().with_variant(JSONB(), "postgresql")


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC in and out on every backend.

    SQLite has no timezone type, so values are stored as naive UTC there and the
    zone is put back on the way out; PostgreSQL stores timestamptz.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value.isoformat()} cannot be stored; use UTC")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def make_engine(url: URL | str, *, connect_timeout: int = DEFAULT_CONNECT_TIMEOUT, **kwargs: Any) -> Engine:
    """An engine with the per-backend settings Handoff relies on.

    `connect_timeout` bounds how long connecting to PostgreSQL may take, so a server that
    accepts the connection and never answers is an error, not a hang (a `connect_timeout`
    in the URL's query wins).
    """
    url = parse_database_url(url) if isinstance(url, str) else url
    # SQL parameters carry customer data (emails, brief text): never in a message or a log line.
    kwargs.setdefault("hide_parameters", True)
    if url.get_backend_name() == "sqlite":
        engine = create_engine(url, connect_args={"timeout": 30}, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    # A lock wait longer than this is a transient failure (the work is retried), never a hang.
    connect_args: dict[str, Any] = {"options": f"-c lock_timeout={LOCK_TIMEOUT_MS}"}
    if "connect_timeout" not in url.query:
        connect_args["connect_timeout"] = connect_timeout
    connect_args.update(kwargs.pop("connect_args", {}))
    engine = create_engine(url, pool_pre_ping=True, connect_args=connect_args, **kwargs)
    event.listen(engine, "begin", _postgresql_begin)
    return engine


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # pysqlite's own BEGIN handling defers the write lock until the first write, so two
    # processes can read the same pending row and then fail to upgrade their lock; take
    # the write lock at BEGIN instead (the SQLAlchemy-documented recipe).
    dbapi_connection.isolation_level = None
    # Foreign keys are off by default in SQLite; WAL lets readers and a writer overlap.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA cache_size=-65536")  # 64 MiB of page cache per connection, not the 2 MiB default
    cursor.close()


_READ_ONLY = "handoff_read_only"


def _sqlite_begin(connection: Any) -> None:
    # A reader takes no write lock, so a listing never waits behind an engine batch (WAL).
    read_only = connection.get_execution_options().get(_READ_ONLY, False)
    connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


def _postgresql_begin(connection: Any) -> None:
    if connection.get_execution_options().get(_READ_ONLY, False):
        connection.exec_driver_sql("SET TRANSACTION READ ONLY")


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False)


def dialect_insert(session: Session, table: Any) -> postgresql.Insert | sqlite.Insert:
    """The backend's own INSERT, which knows ON CONFLICT (SQLite and PostgreSQL spell it alike)."""
    name = session.get_bind().dialect.name
    if name == "postgresql":
        return postgresql.insert(table)
    if name == "sqlite":
        return sqlite.insert(table)
    raise NotImplementedError(f"unsupported database {name!r}")


# The dialects' `insert(...).on_conflict_do_nothing()` has no cache key, so SQLAlchemy compiles
# it afresh on every execution (about ten times the CPU of a cached statement). These
# subclasses give the DO NOTHING clause a cache key made of its conflict columns, so an
# intake or outbox insert is compiled once per process.
class _PostgresDoNothing(postgresql_dml.OnConflictDoNothing):
    inherit_cache = True
    _traverse_internals = [("_target", InternalTraversal.dp_string_list),
                           ("_where", InternalTraversal.dp_string)]

    def __init__(self, target: list[str], where: str | None) -> None:
        super().__init__(index_elements=target, index_where=text(where) if where is not None else None)
        self._target = target
        self._where = where


class _SqliteDoNothing(sqlite_dml.OnConflictDoNothing):
    inherit_cache = True
    _traverse_internals = [("_target", InternalTraversal.dp_string_list),
                           ("_where", InternalTraversal.dp_string)]

    def __init__(self, target: list[str], where: str | None) -> None:
        super().__init__(index_elements=target, index_where=text(where) if where is not None else None)
        self._target = target
        self._where = where


class _PostgresInsert(postgresql.Insert):
    inherit_cache = True


class _SqliteInsert(sqlite.Insert):
    inherit_cache = True


def insert_ignoring(session: Session, table: Any, *, conflict: Sequence[str],
                    where: str | None = None) -> postgresql.Insert | sqlite.Insert:
    """INSERT ... ON CONFLICT (conflict columns) [WHERE where] DO NOTHING, as a statement SQLAlchemy caches.

    The conflict target is plain column names, plus the predicate of a partial unique index
    as SQL text (`where`): that is all the cache key carries. `table` may be a mapped class,
    for an ORM-enabled insert that can return entities.
    """
    name = session.get_bind().dialect.name
    target = [str(column) for column in conflict]
    statement: postgresql.Insert | sqlite.Insert
    if name == "postgresql":
        statement = _PostgresInsert(table)
        statement._post_values_clause = _PostgresDoNothing(target, where)
    elif name == "sqlite":
        statement = _SqliteInsert(table)
        statement._post_values_clause = _SqliteDoNothing(target, where)
    else:
        raise NotImplementedError(f"unsupported database {name!r}")
    return statement


def among(session: Session, column: ColumnElement[Any] | QueryableAttribute[Any],
          values: Sequence[Any]) -> ColumnElement[bool]:
    """`column IN values` as a statement whose text does not depend on how many values there are.

    On PostgreSQL that is `= ANY(array)`, one bound parameter; an IN list of a thousand ids is
    a new statement each time (rendered, then parsed by the driver, then planned).
    """
    if session.get_bind().dialect.name == "postgresql":
        return column == any_(bindparam(None, list(values), type_=postgresql.ARRAY(column.type)))
    return column.in_(values)


def insert_many(session: Session, table: Table, rows: Sequence[dict[str, Any]], *, returning: Sequence[str],
                conflict: Sequence[str] | None = None) -> list[tuple[Any, ...]]:
    """INSERT `rows` (each with the same keys) [ON CONFLICT (conflict) DO NOTHING] RETURNING `returning`.

    One statement for the batch, its rows returned in row order (those a conflict skipped
    return nothing). On PostgreSQL the rows travel as one array per column through
    `unnest`: the statement's text is the same for any number of rows, so SQLAlchemy, the
    driver and the server each prepare it once, where a multi-row VALUES list of a thousand
    rows is new text, compiled, parsed and planned again for every batch.
    """
    if not rows:
        return []
    columns = tuple(rows[0])
    missing = _defaults_left_out(table, columns)
    if missing:
        # The arrays carry only what the rows name: a Python-side default would be skipped on PostgreSQL.
        raise ValueError(f"insert_many into {table.name} needs {', '.join(missing)} (defaults set in Python)")
    dialect = session.get_bind().dialect
    if dialect.name != "postgresql":
        statement = insert_ignoring(session, table, conflict=conflict) if conflict else insert(table)
        # A conflict skips rows, so there is no parameter order to keep; the caller matches on a key.
        statement = statement.returning(*(table.c[name] for name in returning),
                                        sort_by_parameter_order=not conflict)
        return [tuple(row) for row in session.execute(statement, list(rows))]
    arrays: dict[str, list[Any]] = {}
    for i, name in enumerate(columns):
        process = table.c[name].type.bind_processor(dialect)  # JSON to text, UTC checks: as a plain insert does
        arrays[f"c{i}"] = [row[name] for row in rows] if process is None else [process(row[name]) for row in rows]
    found = [tuple(row) for row in session.execute(
        _unnest_insert(table, columns, tuple(conflict or ()), tuple(returning)), arrays)]
    # Rows are inserted in ordinality order, so their sequence ids rise with it (as SQLAlchemy's
    # own sorted multi-row insert assumes); RETURNING itself promises no order.
    if "id" in returning:
        position = list(returning).index("id")
        found.sort(key=lambda row: row[position])
    return found


@functools.cache
def _defaults_left_out(table: Table, columns: tuple[str, ...]) -> list[str]:
    return [column.name for column in table.columns
            if column.name not in columns and column.default is not None and column.server_default is None]


@functools.cache
def _unnest_insert(table: Table, columns: tuple[str, ...], conflict: tuple[str, ...],
                   returning: tuple[str, ...]) -> TextClause:
    dialect = postgresql.dialect()
    # Arrays of the unsized base type: CAST(x AS VARCHAR(40)) would truncate where the column refuses.
    arrays = ", ".join(f"CAST(:c{i} AS {_SIZE.sub('', table.c[name].type.compile(dialect=dialect))}[])"
                       for i, name in enumerate(columns))
    names = ", ".join(f'"{name}"' for name in columns)
    on_conflict = f" ON CONFLICT ({', '.join(conflict)}) DO NOTHING" if conflict else ""
    returned = ", ".join(f'"{name}"' for name in returning)
    return text(f'INSERT INTO "{table.name}" ({names}) SELECT {names} FROM unnest({arrays}) '
                f"WITH ORDINALITY AS handoff_rows({names}, handoff_ordinal) ORDER BY handoff_ordinal"
                f"{on_conflict} RETURNING {returned}")


_SIZE = re.compile(r"\(.*?\)")


class SavepointBuffer:
    """Rows a block collects to write later, kept in step with the session's savepoints.

    What was appended inside a savepoint that rolls back is dropped with it (everything, when the
    caller's own transaction rolls back), as if those rows had been flushed. `take()` hands out the
    rows not yet written; rows written inside a savepoint that rolls back were undone with it, so
    the ones still kept are handed out again.
    """

    def __init__(self) -> None:
        self.rows: list[Any] = []
        self.written = 0
        # Kept for the block's life: the rollback event comes after the transaction's end event.
        self._marks: dict[SessionTransaction, tuple[int, int]] = {}

    def append(self, row: Any) -> None:
        self.rows.append(row)

    def take(self) -> list[Any]:
        """The rows appended since the last `take`, for the caller to write now."""
        fresh, self.written = self.rows[self.written:], len(self.rows)
        return fresh

    def began(self, _session: Session, transaction: SessionTransaction) -> None:
        self._marks[transaction] = (len(self.rows), self.written)

    def rolled_back(self, _session: Session, transaction: SessionTransaction) -> None:
        kept, written = self._marks.get(transaction, (0, 0))
        del self.rows[kept:]
        self.written = written


@contextmanager
def savepoint_buffer(session: Session) -> Iterator[SavepointBuffer]:
    """A `SavepointBuffer` following this session's savepoints for the block's duration."""
    buffer = SavepointBuffer()
    hooks = (("after_transaction_create", buffer.began), ("after_soft_rollback", buffer.rolled_back))
    for name, hook in hooks:
        event.listen(session, name, hook)
    try:
        yield buffer
    finally:
        for name, hook in hooks:
            event.remove(session, name, hook)


@contextmanager
def collecting(session: Session, key: str, write: Callable[[list[Any]], None]) -> Iterator[None]:
    """Rows appended to `session.info[key]` (a `SavepointBuffer`) in the block, written with `write` at its end.

    Nothing is written when the block raises; a nested block joins the outer one, which writes.
    `write` may also be given what was collected before the end, through `SavepointBuffer.take`.
    """
    if key in session.info:
        yield
        return
    with savepoint_buffer(session) as buffer:
        session.info[key] = buffer
        try:
            yield
        finally:
            session.info.pop(key, None)
        write(buffer.take())


def undoes_or_ends(transaction: SessionTransaction) -> bool:
    """True for a savepoint or the outermost transaction (what `after_transaction_end` hooks care about).

    A flush opens an inner transaction of its own and ends it at every flush; that one neither
    rolls anything back nor releases a lock, so what a session remembers for its transaction stays.
    """
    return transaction.nested or transaction.parent is None


def flush_only(session: Session, *models: type) -> None:
    """Write what is new or changed of these models, and nothing else the session holds.

    For a query that reads only these tables, run with `autoflush=False`: the session's own
    autoflush would write every row the engine pass had touched since the last flush (monitor
    windows, health scores, journeys), once for each such query.
    """
    rows = [row for row in (*session.new, *session.dirty) if isinstance(row, models)]
    if rows:
        session.flush(rows)


NO_AUTOFLUSH = {"autoflush": False}


def skip_locked(session: Session) -> bool:
    """True when row claims can use FOR UPDATE SKIP LOCKED (SQLite has a single writer instead)."""
    return session.get_bind().dialect.name == "postgresql"


@contextmanager
def unit_of_work(sessions: sessionmaker[Session], *, read_only: bool = False) -> Iterator[Session]:
    """A session that commits if the block succeeds and rolls back if it raises.

    `read_only` is for everything that only reads (reports, listings, API GETs): a deferred
    BEGIN on SQLite and a READ ONLY transaction on PostgreSQL, which refuses any write.
    """
    if read_only:
        bind = sessions.kw["bind"]
        session = sessions(bind=bind.execution_options(**{_READ_ONLY: True}))
    else:
        session = sessions()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


# -- failure classes ---------------------------------------------------------------------------

class RowBusy(Exception):
    """A row this work needs is held by another worker right now; try again shortly."""


# SQLSTATE classes and codes that say "try again", not "this item is wrong": connection
# exceptions (08), transaction rollbacks such as deadlocks and serialization failures (40),
# insufficient resources (53), lock_not_available (55P03), operator intervention and
# cancellations (57), system errors (58).
_TRANSIENT_CLASSES = ("08", "40", "53", "57", "58")
_TRANSIENT_CODES = ("55P03",)


def is_transient(exc: BaseException) -> bool:
    """True for failures that say nothing about the item being processed: retry it later."""
    if isinstance(exc, RowBusy):
        return True
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return True
        orig = exc.orig
        sqlstate = getattr(orig, "sqlstate", None)
        if sqlstate:
            return sqlstate[:2] in _TRANSIENT_CLASSES or sqlstate in _TRANSIENT_CODES
        # SQLite: another writer held the database past busy_timeout.
        return isinstance(exc, OperationalError) and "locked" in str(orig).lower()
    return False


def connection_lost(exc: BaseException) -> bool:
    """True when the connection itself is gone: the whole transaction is lost, not one savepoint."""
    return isinstance(exc, DBAPIError) and bool(exc.connection_invalidated)


def describe_error(exc: BaseException) -> str:
    """A short description safe for logs: the error kind, the SQLSTATE and the statement's verb and table.

    Never the parameters or the database's detail text, which quote customer data.
    """
    if isinstance(exc, DBAPIError):
        orig = exc.orig
        sqlstate = getattr(orig, "sqlstate", None)
        words = (exc.statement or "").split()
        verb = " ".join(words[:3]) if words else "statement"
        return f"{type(orig).__name__}{f' (SQLSTATE {sqlstate})' if sqlstate else ''} in {verb}"[:200]
    return type(exc).__name__
