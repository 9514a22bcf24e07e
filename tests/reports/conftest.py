"""Every report test's database: migrated, then seeded with tests/reports/fixture.py's world."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session, sessionmaker

from orchestrator import schema
from orchestrator.db import make_engine, make_session_factory, unit_of_work
from tests.reports.fixture import seed


@contextmanager
def migrated_database(url: URL) -> Iterator[tuple[Engine, sessionmaker[Session]]]:
    """An engine and session factory on `url` upgraded to the head migration; disposed afterwards."""
    engine = make_engine(url)
    try:
        schema.upgrade(engine)
        yield engine, make_session_factory(engine)
    finally:
        engine.dispose()


@pytest.fixture
def migrated(fresh_database: URL) -> Iterator[tuple[Engine, sessionmaker[Session]]]:
    """A fresh database at the head migration, nothing in it."""
    with migrated_database(fresh_database) as found:
        yield found


@pytest.fixture
def seeded(migrated: tuple[Engine, sessionmaker[Session]]) -> dict[str, Any]:
    """The fixture world (playbook `pb`, its steps and 11 tasks) committed; the ids `seed` returns."""
    with unit_of_work(migrated[1]) as session:
        return seed(session)


@pytest.fixture
def sessions(migrated: tuple[Engine, sessionmaker[Session]], seeded: dict[str, Any]) -> sessionmaker[Session]:
    """A session factory on the seeded world."""
    return migrated[1]


@pytest.fixture
def engine(migrated: tuple[Engine, sessionmaker[Session]], seeded: dict[str, Any]) -> Engine:
    """The seeded world's engine."""
    return migrated[0]
