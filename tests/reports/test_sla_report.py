"""The SLA report and the Loop's signal-to-touch against answers worked out by hand, on both databases.

The world: tests/reports/fixture.py `seed` (lead, team red: 11 decision tasks closed 5-3,700 s after
creation, one paused 3,600 s, one cancelled; no verdicts) and `seed_sla` (ana, team blue, and ned).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import literal, select

from orchestrator.db import UTCDateTime, unit_of_work
from orchestrator.reports._sql import iso_week
from orchestrator.reports.catalog import run_report
from orchestrator.reports.scope import Scope
from tests.reports.fixture import SINCE, UNTIL, seed_sla

# lead's first responses (seconds): stamp 5 x5, approve 10, 10, 20, 50, 3,700 (cancelled: none).
# Ten values: median rank 5 = 5 s (0.1 min), p90 rank 9 = 50 s (0.8 min); the same for done.
LEAD = {"group": "lead@acme.example", "tasks": 11, "ack_adherence": None, "due_adherence": None, "breaches": 0,
        "escalations_rung_1": 0, "escalations_rung_2": 0, "ack_median_min": 0.1, "ack_p90_min": 0.8,
        "done_median_min": 0.1, "done_p90_min": 0.8, "paused_hours": 1.0}
# ana: ack verdicts met, breached, met, breached; due met, breached, met; rung 1 twice (a2, a4), rung 2 once.
# Acks 30, 30 (a tie), 90 (a5 was cancelled: no response): median rank 2 = 30, p90 rank 3 = 90.
# Done 120, 120, 600; a3 waited 7,200 s on the customer.
ANA = {"group": "ana@acme.example", "tasks": 5, "ack_adherence": 0.5, "due_adherence": 0.6667, "breaches": 3,
       "escalations_rung_1": 2, "escalations_rung_2": 1, "ack_median_min": 30.0, "ack_p90_min": 90.0,
       "done_median_min": 120.0, "done_p90_min": 600.0, "paused_hours": 2.0}
NED = {"group": "ned@acme.example", "tasks": 1, "ack_adherence": None, "due_adherence": 1.0, "breaches": 0,
       "escalations_rung_1": 0, "escalations_rung_2": 0, "ack_median_min": 60.0, "ack_p90_min": 60.0,
       "done_median_min": 60.0, "done_p90_min": 60.0, "paused_hours": 0.0}


@pytest.fixture
def sessions(sessions: Any) -> Any:
    with unit_of_work(sessions) as session:
        seed_sla(session)
    return sessions


def sla(sessions: Any, by: str, **scope: str) -> list[dict[str, Any]]:
    return run_report("sla", sessions=sessions, since=SINCE, until=UNTIL, by=by, scope=Scope(**scope))


def renamed(row: dict[str, Any], group: str) -> dict[str, Any]:
    return {**row, "group": group}


def test_by_owner_team_stage(sessions: Any) -> None:
    assert sla(sessions, "owner") == [LEAD, ANA, NED]  # largest group first
    assert sla(sessions, "team") == [renamed(LEAD, "red"), renamed(ANA, "blue"), renamed(NED, "(no team)")]
    assert sla(sessions, "stage") == [renamed(LEAD, "onboard"), renamed(ANA, "acquire"),
                                      renamed(NED, "(no playbook)")]
    assert [row["group"] for row in sla(sessions, "playbook")] == ["pb", "acq", "(no playbook)"]


def test_by_step_and_segment_with_ties_by_name(sessions: Any) -> None:
    steps = sla(sessions, "step")
    assert [(row["group"], row["tasks"]) for row in steps] == [
        ("pb/approve", 6), ("acq/call", 5), ("pb/stamp", 5), ("(no step)", 1)]  # 5 and 5: by name
    stamp = steps[2]  # five approvals 5 s after creation
    assert (stamp["ack_median_min"], stamp["ack_p90_min"], stamp["paused_hours"]) == (0.1, 0.1, 0.0)
    segments = sla(sessions, "segment")
    assert [(row["group"], row["tasks"]) for row in segments] == [("(no segment)", 12), ("enterprise", 5)]
    # lead's ten responses and ned's 3,600 s: rank 6 of 11 is 10 s, rank 10 (of ..., 50, 3,600, 3,700) is ned's.
    assert (segments[0]["ack_median_min"], segments[0]["ack_p90_min"]) == (0.2, 60.0)
    assert segments[0]["due_adherence"] == 1.0


def test_weekly_trend(sessions: Any) -> None:
    weeks = sla(sessions, "week")
    assert [(row["group"], row["tasks"]) for row in weeks] == [("2026-W47", 2), ("2026-W48", 15)]
    trend = sla(sessions, "team,week")
    assert [(row["group"], row["week"], row["tasks"]) for row in trend] == [
        ("(no team)", "2026-W48", 1), ("blue", "2026-W47", 2), ("blue", "2026-W48", 3), ("red", "2026-W48", 11)]
    blue47, blue48 = trend[1], trend[2]
    assert (blue47["ack_adherence"], blue47["due_adherence"], blue47["breaches"]) == (0.5, 0.5, 2)  # a2: both
    assert (blue47["escalations_rung_1"], blue47["escalations_rung_2"]) == (1, 1)
    assert (blue47["ack_median_min"], blue47["ack_p90_min"], blue47["done_p90_min"]) == (30.0, 90.0, 600.0)
    assert (blue48["ack_adherence"], blue48["due_adherence"], blue48["breaches"]) == (0.5, 1.0, 1)
    assert (blue48["escalations_rung_1"], blue48["escalations_rung_2"], blue48["paused_hours"]) == (1, 0, 2.0)
    assert (blue48["ack_median_min"], blue48["done_median_min"]) == (30.0, 120.0)


def test_scope_narrows_in_sql_and_an_empty_group_is_no_row(sessions: Any) -> None:
    assert sla(sessions, "owner", team="blue") == [ANA]
    assert sla(sessions, "owner", stage="acquire") == [ANA]
    # No rung fired within pb: the rung columns run to the highest rung fired, here none.
    no_rungs = {k: v for k, v in renamed(LEAD, "red").items() if not k.startswith("escalations_")}
    assert sla(sessions, "team", playbook="pb") == [no_rungs]
    assert sla(sessions, "owner", team="green") == []


def test_signal_to_first_human_touch_is_speed_to_lead_on_acquire(sessions: Any) -> None:
    rows = {row["stage"]: row for row in run_report("loop", sessions=sessions, since=SINCE, until=UNTIL)}
    acquire = rows["acquire"]
    # J1 40 min (a1's ack), J2 40 min (a3's ack; a tie), J3 55 min (a5 acknowledged, then cancelled),
    # J4 untouched; J5's signal came before the period. Median rank 2 = 40, p90 rank 3 = 55.
    assert (acquire["signal_journeys"], acquire["touched"]) == (4, 3)
    assert (acquire["touch_median_min"], acquire["touch_p90_min"]) == (40.0, 55.0)
    onboard = rows["onboard"]  # pb's journey was started by no signal: an empty group, no times
    assert (onboard["signal_journeys"], onboard["touched"], onboard["touch_median_min"]) == (0, 0, None)
    narrowed = run_report("loop", sessions=sessions, since=SINCE, until=UNTIL, scope=Scope(stage="acquire"))
    assert [row["stage"] for row in narrowed] == ["acquire"]
    assert run_report("loop", sessions=sessions, since=SINCE, until=UNTIL,
                      scope=Scope(playbook="pb"))[0]["signal_journeys"] == 0
    # As of a moment before J3's touch, J3 was not yet touched.
    early = {row["stage"]: row for row in run_report("loop", sessions=sessions, since=SINCE,
                                                      until=datetime(2026, 11, 23, 14, 10, tzinfo=UTC))}
    assert (early["acquire"]["touched"], early["acquire"]["touch_p90_min"]) == (1, 40.0)


@pytest.mark.parametrize(("at", "week"), [
    (datetime(2026, 11, 23, 0, 0, tzinfo=UTC), "2026-W48"),      # a Monday starts the week
    (datetime(2026, 11, 22, 23, 59, 59, tzinfo=UTC), "2026-W47"),  # the Sunday before ends the last
    (datetime(2027, 1, 1, 12, tzinfo=UTC), "2026-W53"),          # a Friday: its week's Thursday is in 2026
    (datetime(2024, 12, 30, 12, tzinfo=UTC), "2025-W01"),        # a Monday in the week of 2025's first Thursday
    (datetime(2026, 1, 1, 12, tzinfo=UTC), "2026-W01"),
])
def test_iso_week_in_sql_matches_python(sessions: Any, at: datetime, week: str) -> None:
    year, number, _ = at.isocalendar()
    assert week == f"{year}-W{number:02d}"
    with unit_of_work(sessions, read_only=True) as session:
        assert session.scalar(select(iso_week(literal(at, UTCDateTime())))) == week


def test_iso_week_in_sql_matches_python_every_day_for_eleven_years(sessions: Any) -> None:
    days = [datetime(2020, 1, 1, tzinfo=UTC) + timedelta(days=n, hours=(7 * n) % 24, minutes=n % 60)
            for n in range(0, 11 * 366)]
    expected = [f"{at.isocalendar()[0]}-W{at.isocalendar()[1]:02d}" for at in days]
    found: list[str] = []
    with unit_of_work(sessions, read_only=True) as session:
        for start in range(0, len(days), 400):
            found += session.execute(select(*[iso_week(literal(at, UTCDateTime())) for at in days[start:start + 400]])
                                     ).one()
    assert found == expected
