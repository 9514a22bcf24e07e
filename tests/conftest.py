"""Shared fixtures: every database test runs on SQLite and, when configured, on PostgreSQL.

Set HANDOFF_TEST_POSTGRES_URL (e.g. postgresql+psycopg://postgres@127.0.0.1:5432/test) to
add the PostgreSQL run. Each test session gets its own throwaway PostgreSQL database, so
runs never see each other's rows; each test runs inside a transaction that is rolled back.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import settings as hypothesis_settings
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session

from orchestrator import schema
from orchestrator.clock import FrozenClock
from orchestrator.config import ExceptionCategory, Settings
from orchestrator.db import make_engine, parse_database_url
from tests import factories

POSTGRES_URL = os.environ.get("HANDOFF_TEST_POSTGRES_URL")

# Commands refuse to start without a named exception owner; the CLI tests run as a deployment
# that names one (tests of the refusal remove it from their environment).
os.environ.setdefault("HANDOFF_EXCEPTION_OWNER", "ops-lead@example.com")

# CI explores the same examples every run, so a red build always means a change broke
# something; developers' runs keep exploring new ones.
hypothesis_settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
if os.environ.get("CI"):
    hypothesis_settings.load_profile("ci")

BACKENDS = [
    "sqlite",
    pytest.param("postgresql", marks=[
        pytest.mark.postgres,
        pytest.mark.skipif(not POSTGRES_URL, reason="HANDOFF_TEST_POSTGRES_URL is not set"),
    ]),
]

# Monday 2026-11-23 14:00 UTC: inside business hours, so SLA arithmetic is easy to read.
T0 = datetime(2026, 11, 23, 14, 0, tzinfo=UTC)


def _pg_admin_engine() -> Engine:
    assert POSTGRES_URL
    return create_engine(parse_database_url(POSTGRES_URL), isolation_level="AUTOCOMMIT")


def create_database(backend: str, tmp_dir: Path) -> URL:
    """A new, empty database on `backend`; the caller drops it with drop_database."""
    if backend == "sqlite":
        return parse_database_url(f"sqlite:///{tmp_dir / f'handoff-{uuid.uuid4().hex[:8]}.db'}")
    name = f"handoff_test_{uuid.uuid4().hex[:12]}"
    admin = _pg_admin_engine()
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return parse_database_url(POSTGRES_URL).set(database=name)  # type: ignore[arg-type]


def drop_database(url: URL) -> None:
    if url.get_backend_name() != "postgresql":
        return
    admin = _pg_admin_engine()
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="session")
def db_engine(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    """One migrated database per backend for the whole test session."""
    url = create_database(backend, tmp_path_factory.mktemp(backend))
    engine = make_engine(url)
    schema.upgrade(engine)
    yield engine
    engine.dispose()
    drop_database(url)


@pytest.fixture
def session(db_engine: Engine) -> Iterator[Session]:
    """A session whose work is rolled back after the test, commits included."""
    connection = db_engine.connect()
    outer = connection.begin()
    session = Session(bind=connection, join_transaction_mode="create_savepoint",
                      expire_on_commit=False)
    factories.bind(session)
    try:
        yield session
    finally:
        factories.bind(None)
        session.close()
        outer.rollback()
        connection.close()


@pytest.fixture
def fresh_database(backend: str, tmp_path: Path) -> Iterator[URL]:
    """An empty database of its own, for tests that migrate, commit or use several processes."""
    url = create_database(backend, tmp_path)
    yield url
    drop_database(url)


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(T0)


@pytest.fixture
def settings(db_engine: Engine) -> Settings:
    return Settings(
        database_url=db_engine.url,
        exception_owner="ops-lead@example.com",
        exception_categories={
            "unknown_account": ExceptionCategory(owner="data-steward@example.com",
                                                 respond_within="4 business hours"),
        },
        calendars={"default": {"timezone": "America/New_York", "hours": "09:00-17:00",
                               "holidays": "US"}},
    )
