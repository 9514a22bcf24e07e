"""Report figures against answers worked out by hand (tests/reports/fixture.py), on both databases."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy.engine import URL

from orchestrator import schema
from orchestrator.db import make_engine, make_session_factory, unit_of_work
from orchestrator.reports.catalog import run_report, to_csv
from orchestrator.reports.oversight import CONSIDER_IN_THE_LOOP, RUBBER_STAMP
from tests.reports.fixture import SINCE, UNTIL, seed


@pytest.fixture
def sessions(fresh_database: URL) -> Any:
    engine = make_engine(fresh_database)
    schema.upgrade(engine)
    factory = make_session_factory(engine)
    with unit_of_work(factory) as session:
        seed(session)
    yield factory
    engine.dispose()


def by_step(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {row["step"]: row for row in rows}


def test_oversight_calibration_matches_hand_computed_figures(sessions: Any) -> None:
    rows = by_step(run_report("oversight", sessions=sessions, since=SINCE, until=UNTIL))
    assert set(rows) == {"approve", "stamp", "notify", "empty"}
    approve = rows["approve"]
    # decided: 10, 10, 20, 100 (paused time taken off), 50 rejected; the cancelled one is not a decision.
    assert (approve["runs"], approve["decisions"]) == (6, 5)
    assert (approve["approval_rate"], approve["rejection_rate"], approve["override_rate"]) == (0.8, 0.2, None)
    assert approve["decide_median_s"] == pytest.approx(20)   # sorted 10,10,20,50,100: rank 3
    assert approve["quick_share"] == 0.6                     # 10, 10, 20 under 30 s
    assert approve["flag"] == ""
    stamp = rows["stamp"]
    assert (stamp["approval_rate"], stamp["quick_share"], stamp["flag"]) == (1.0, 1.0, RUBBER_STAMP)
    assert stamp["decide_median_s"] == pytest.approx(5)
    notify = rows["notify"]  # 3 done + 2 overridden ran; the skipped run did not; the early one is outside
    assert (notify["runs"], notify["override_rate"], notify["flag"]) == (6, 0.4, CONSIDER_IN_THE_LOOP)
    assert (notify["approval_rate"], notify["decide_median_s"]) == (None, None)
    empty = rows["empty"]  # nothing ran: no rate at all, not 0%
    assert (empty["runs"], empty["override_rate"], empty["flag"]) == (1, None, "")


def test_noise_per_step_with_ties_in_order(sessions: Any) -> None:
    rows = run_report("noise", sessions=sessions, since=SINCE, until=UNTIL)
    assert [row["step"] for row in rows] == ["empty", "approve", "notify", "stamp"]  # 1.0, 1/6 tie by name, 0
    found = by_step(rows)
    assert (found["approve"]["tasks"], found["approve"]["closed_without_action"]) == (6, 1)
    assert (found["notify"]["skipped"], found["notify"]["noise_rate"]) == (1, round(1 / 6, 4))
    assert found["empty"]["noise_rate"] == 1.0
    assert all(row["not_useful"] is None for row in rows)  # no task feedback recorded: unknown, not zero


def test_an_empty_period_is_an_empty_report_and_csv(sessions: Any) -> None:
    assert run_report("oversight", sessions=sessions, since=UNTIL, until=UNTIL) == []
    assert to_csv([]) == ""


def test_unknown_report_or_grouping_is_one_clear_error(sessions: Any) -> None:
    with pytest.raises(ValueError, match="no report 'nope'"):
        run_report("nope", sessions=sessions, since=SINCE, until=UNTIL)
    with pytest.raises(ValueError, match="groups by"):
        run_report("oversight", sessions=sessions, since=SINCE, until=UNTIL, by="team")
