"""The runtime: settings, database, clock, wired together once per process (never at import time)."""

from __future__ import annotations

import gc
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from orchestrator.clock import Clock, SystemClock
from orchestrator.config import Settings
from orchestrator.db import (
    SESSION_CONNECTORS_KEY,
    SESSION_DESCRIPTION_LIMITS_KEY,
    make_engine,
    make_session_factory,
)
from orchestrator.errors import DatabaseUnavailable


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    clock: Clock = field(default_factory=SystemClock)

    def close(self) -> None:
        self.engine.dispose()


def build_runtime(settings: Settings, clock: Clock | None = None) -> Runtime:
    """Connect to the configured database and check that it answers."""
    engine = make_engine(settings.database_url, connect_timeout=settings.database_connect_timeout)
    check_connection(engine)
    sessions = make_session_factory(engine)
    # outbox.enqueue reads these to name each message's connector (delivery.routing); a task's
    # brief is cut to the description limit of the connector its CRM task goes to.
    sessions.configure(info={SESSION_CONNECTORS_KEY: settings.connectors,
                             SESSION_DESCRIPTION_LIMITS_KEY: description_limits(settings.connectors)})
    return Runtime(settings=settings, engine=engine, sessions=sessions, clock=clock or SystemClock())


def settle_heap() -> None:
    """Keep what the process has made so far out of every later garbage collection (call it once started).

    A full collection walks every long-lived object, and a service's are mostly those it made at
    start (modules, settings, SQLAlchemy's metadata, compiled playbooks) and keeps for good: walking
    them cost about a tenth of an engine pass. `gc.freeze` moves them where the collector does not
    look (CPython's advice for long-running processes); what the process makes later is collected
    as before.
    """
    gc.collect()
    gc.freeze()


def description_limits(connectors: Mapping[str, Mapping[str, Any]]) -> dict[str, int]:
    """Configured connector name -> the task description limit its class declares, read once at start.

    Only the configured connectors are imported. One that cannot be imported declares nothing
    (`handoff connectors check` says why) and the briefs use the smallest CRM limit.
    """
    from connectors.registry import ENTRY_POINT_GROUP

    limits: dict[str, int] = {}
    for point in metadata.entry_points(group=ENTRY_POINT_GROUP):
        if point.name not in connectors or point.name in limits:
            continue
        try:
            loaded = point.load()
        except Exception:  # noqa: BLE001 - a broken connector is reported by its own checks
            continue
        limit = getattr(loaded, "description_limit", None)
        if isinstance(limit, int) and limit > 0:
            limits[point.name] = limit
    return limits


def check_connection(engine: Engine) -> None:
    """Raise DatabaseUnavailable, with one line a person can act on, if the database does not answer."""
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except DBAPIError as exc:
        where = engine.url.render_as_string(hide_password=True)
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else type(exc).__name__
        raise DatabaseUnavailable(f"cannot connect to the database at {where}: {reason} "
                                  "(check HANDOFF_DATABASE_URL)") from None
