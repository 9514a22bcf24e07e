"""Read-only units of work: readers never take the write lock, and cannot write."""

from __future__ import annotations

import pytest
from sqlalchemy import select, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError

from orchestrator import schema
from orchestrator.db import make_engine, make_session_factory, unit_of_work
from orchestrator.models import Owner


def test_a_reader_does_not_wait_behind_a_writer(fresh_database: URL) -> None:
    engine = make_engine(fresh_database)  # with BEGIN IMMEDIATE the reader would wait 30 s, then fail
    schema.upgrade(engine)
    sessions = make_session_factory(engine)
    with unit_of_work(sessions) as writer:
        writer.add(Owner(email="a@example.com", name="A", role="ae"))
        writer.flush()  # the writer holds its lock until the block ends
        with unit_of_work(sessions, read_only=True) as reader:
            assert reader.scalars(select(Owner)).all() == []  # not yet committed, and no wait
    engine.dispose()


def test_a_read_only_unit_of_work_refuses_writes_where_the_database_can(fresh_database: URL) -> None:
    engine = make_engine(fresh_database)
    schema.upgrade(engine)
    sessions = make_session_factory(engine)
    if fresh_database.get_backend_name() != "postgresql":
        pytest.skip("SQLite has no read-only transactions; the deferred BEGIN is what matters there")
    with pytest.raises(DBAPIError, match="read-only"), unit_of_work(sessions, read_only=True) as reader:
        reader.execute(text("DELETE FROM owners"))
    engine.dispose()
