"""The exceptions report against answers worked out by hand, on both databases."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from orchestrator.db import unit_of_work
from orchestrator.models import ExceptionItem, Owner
from orchestrator.reports.catalog import run_report
from tests.conftest import T0

SINCE, UNTIL = T0 - timedelta(days=7), T0


@pytest.fixture
def sessions(migrated: Any) -> Any:
    factory = migrated[1]

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
    return factory


def test_queue_size_age_against_window_and_top_categories(sessions: Any) -> None:
    rows = run_report("exceptions", sessions=sessions, since=SINCE, until=UNTIL)
    assert [row["category"] for row in rows] == ["missing_field", "unknown_account", "configuration"]
    mf, ua, cfg = rows
    assert (mf["raised"], mf["occurrences"], mf["open"], mf["overdue"]) == (3, 7, 2, 1)
    assert (mf["overdue_share"], mf["open_median_age_h"], mf["oldest_open_age_h"]) == (0.5, 2.0, 10.0)
    assert (ua["raised"], ua["open"], ua["overdue"], ua["open_median_age_h"]) == (2, 2, 2, 20.0)
    assert (cfg["raised"], cfg["occurrences"], cfg["open"], cfg["oldest_open_age_h"]) == (0, 0, 1, 720.0)


def test_exceptions_by_owner_and_team(sessions: Any) -> None:
    with unit_of_work(sessions) as session:
        session.add_all([Owner(email="ops@acme.example", name="Ops", role="ops", team="ops"),
                         Owner(email="lee@acme.example", name="Lee", role="ops", team="zeta")])
        for owner, status in (("kim@acme.example", "open"), ("lee@acme.example", "resolved")):  # kim: no Owner row
            created = T0 - timedelta(hours=1)
            session.add(ExceptionItem(category="missing_field", owner=owner, message="m", status=status,
                                      created_at=created, respond_by=created + timedelta(hours=8)))
    # ops: the seven items above. Raised in the period 5 (occurrences 5+1+1+1+1); open 5, aged 2, 10, 20, 20
    # (a tie), 720 h: median rank 3 is 20; overdue the 10 h, both 20 h and the 720 h one.
    ops = {"raised": 5, "occurrences": 9, "open": 5, "overdue": 4, "overdue_share": 0.8,
           "open_median_age_h": 20.0, "oldest_open_age_h": 720.0}
    kim = {"raised": 1, "occurrences": 1, "open": 1, "overdue": 0, "overdue_share": 0.0,
           "open_median_age_h": 1.0, "oldest_open_age_h": 1.0}
    # lee's one item is resolved: nothing open, so no share and no age (not 0).
    lee = {"raised": 1, "occurrences": 1, "open": 0, "overdue": 0, "overdue_share": None,
           "open_median_age_h": None, "oldest_open_age_h": None}

    def report(by: str) -> list[dict[str, Any]]:
        return run_report("exceptions", sessions=sessions, since=SINCE, until=UNTIL, by=by)

    # Most raised first; kim and lee tie on 1, by name.
    assert report("owner") == [{"owner": "ops@acme.example", **ops}, {"owner": "kim@acme.example", **kim},
                               {"owner": "lee@acme.example", **lee}]
    assert report("team") == [{"team": "ops", **ops}, {"team": "(no team)", **kim}, {"team": "zeta", **lee}]
    assert report("category") == run_report("exceptions", sessions=sessions, since=SINCE, until=UNTIL)
    with pytest.raises(ValueError, match="group by one of category, owner, team"):
        report("stage")
