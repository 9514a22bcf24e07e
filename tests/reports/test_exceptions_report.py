"""The exceptions report against answers worked out by hand, on both databases."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy.engine import URL

from orchestrator import schema
from orchestrator.db import make_engine, make_session_factory, unit_of_work
from orchestrator.models import ExceptionItem
from orchestrator.reports.catalog import run_report
from tests.conftest import T0

SINCE, UNTIL = T0 - timedelta(days=7), T0


@pytest.fixture
def sessions(fresh_database: URL) -> Any:
    engine = make_engine(fresh_database)
    schema.upgrade(engine)
    factory = make_session_factory(engine)

    def item(category: str, hours_ago: int, *, window_h: int, status: str = "open", occurrences: int = 1) -> None:
        created = T0 - timedelta(hours=hours_ago)
        session.add(ExceptionItem(category=category, owner="ops@acme.example", message="m", status=status,
                                  created_at=created, respond_by=created + timedelta(hours=window_h),
                                  occurrences=occurrences))
    with unit_of_work(factory) as session:
        item("missing_field", 2, window_h=8, occurrences=5)      # open, inside its window
        item("missing_field", 10, window_h=8)                    # open, overdue
        item("missing_field", 30, window_h=8, status="resolved")
        item("unknown_account", 20, window_h=4)                  # open, overdue
        item("unknown_account", 20, window_h=4)                  # a tie in age
        item("configuration", 24 * 30, window_h=8)               # raised long ago, still open
        item("no_assignee", 24 * 30, window_h=8, status="resolved")  # long ago and closed: no row
    yield factory
    engine.dispose()


def test_queue_size_age_against_window_and_top_categories(sessions: Any) -> None:
    rows = run_report("exceptions", sessions=sessions, since=SINCE, until=UNTIL)
    assert [row["category"] for row in rows] == ["missing_field", "unknown_account", "configuration"]
    mf, ua, cfg = rows
    assert (mf["raised"], mf["occurrences"], mf["open"], mf["overdue"]) == (3, 7, 2, 1)
    assert (mf["overdue_share"], mf["open_median_age_h"], mf["oldest_open_age_h"]) == (0.5, 2.0, 10.0)
    assert (ua["raised"], ua["open"], ua["overdue"], ua["open_median_age_h"]) == (2, 2, 2, 20.0)
    assert (cfg["raised"], cfg["occurrences"], cfg["open"], cfg["oldest_open_age_h"]) == (0, 0, 1, 720.0)
