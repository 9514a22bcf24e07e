"""The Loop and the automation mix against answers worked out by hand, on both databases."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from orchestrator.db import unit_of_work
from orchestrator.models import Account, StageChange
from orchestrator.reports.catalog import run_report
from tests.conftest import T0
from tests.reports.fixture import SINCE, UNTIL, seed_sla

DAY = 86400


@pytest.fixture
def sessions(sessions: Any) -> Any:
    factory = sessions
    with unit_of_work(factory) as session:
        accounts = [Account(name=n, domain=f"{n}.example", stage="acquire", stage_entered_at=T0) for n in "abcd"]
        session.add_all(accounts)
        session.flush()
        a, b, c, d = (account.id for account in accounts)

        def move(account: int, before: str | None, after: str, days_ago: int, spent_days: int | None) -> None:
            session.add(StageChange(account_id=account, from_stage=before, to_stage=after,
                                    at=T0 - timedelta(days=days_ago),
                                    seconds_in_previous=spent_days * DAY if spent_days is not None else None))
        move(a, None, "acquire", 5, None)
        move(a, "acquire", "onboard", 3, 2)
        move(a, "onboard", "adopt", 1, 2)
        move(b, None, "acquire", 5, None)
        move(b, "acquire", "adopt", 2, 3)       # jumps over onboard
        move(c, None, "acquire", 4, None)
        move(c, "acquire", "onboard", 2, 2)     # a tie with a's 2 days in acquire
        move(d, None, "acquire", 4, None)       # still in acquire
        move(d, "acquire", "onboard", 30, 1)    # outside the period: counted nowhere
    return factory


def test_loop_funnel_drop_off_skipped_stage_and_time_in_stage(sessions: Any) -> None:
    rows = {row["stage"]: row for row in run_report("loop", sessions=sessions, since=SINCE, until=UNTIL)}
    assert list(rows) == ["acquire", "onboard", "adopt", "expand", "renew"]  # empty stages are rows too
    assert [(rows[s]["entered"], rows[s]["moved_on"]) for s in rows] == [(4, 3), (2, 1), (2, 0), (0, 0), (0, 0)]
    assert [rows[s]["drop_off"] for s in rows] == [0.25, 0.5, 1.0, None, None]
    assert [rows[s]["skipped"] for s in rows] == [0, 1, 0, 0, 0]
    # acquire spans 2, 2, 3 days: median rank 2 (a tie), p90 rank 3.
    assert (rows["acquire"]["median_days"], rows["acquire"]["p90_days"]) == (2.0, 3.0)
    assert (rows["onboard"]["median_days"], rows["onboard"]["p90_days"]) == (2.0, 2.0)
    assert (rows["adopt"]["median_days"], rows["expand"]["p90_days"]) == (None, None)


def test_automation_mix_per_stage(sessions: Any) -> None:
    rows = run_report("automation", sessions=sessions, since=SINCE, until=UNTIL)
    # The fixture's 18 runs in the period are all automated: 11 in the loop, 7 on it.
    assert rows == [{"stage": "onboard", "runs": 18, "automated": 18, "human": 0, "hybrid": 0,
                     "automated_share": 1.0, "in_the_loop_share": round(11 / 18, 4),
                     "on_the_loop_share": round(7 / 18, 4), "out_of_loop_share": 0.0}]
    assert run_report("automation", sessions=sessions, since=UNTIL, until=UNTIL + timedelta(days=1)) == []


def test_automation_mix_by_playbook_kind_and_team(sessions: Any) -> None:
    with unit_of_work(sessions) as session:
        seed_sla(session)  # five human `call` runs on acq (stage acquire, Beta: ana, team blue), no oversight
    onboard = {"runs": 18, "automated": 18, "human": 0, "hybrid": 0, "automated_share": 1.0,
               "in_the_loop_share": round(11 / 18, 4), "on_the_loop_share": round(7 / 18, 4),
               "out_of_loop_share": 0.0}
    # No automated run in acquire: its oversight shares are empty, not 0%.
    acquire = {"runs": 5, "automated": 0, "human": 5, "hybrid": 0, "automated_share": 0.0,
               "in_the_loop_share": None, "on_the_loop_share": None, "out_of_loop_share": None}

    def report(by: str | None) -> list[dict[str, Any]]:
        return run_report("automation", sessions=sessions, since=SINCE, until=UNTIL, by=by)

    assert report(None) == report("stage") == [{"stage": "acquire", **acquire}, {"stage": "onboard", **onboard}]
    assert report("playbook") == [{"playbook": "acq", **acquire}, {"playbook": "pb", **onboard}]
    assert report("team") == [{"team": "blue", **acquire}, {"team": "red", **onboard}]
    # Per kind the oversight shares are over that kind's own runs; no hybrid run: no hybrid row.
    assert report("kind") == [
        {"kind": "automated", "runs": 18, "automated_share": 1.0, "in_the_loop_share": round(11 / 18, 4),
         "on_the_loop_share": round(7 / 18, 4), "out_of_loop_share": 0.0},
        {"kind": "human", "runs": 5, "automated_share": 0.0, "in_the_loop_share": 0.0, "on_the_loop_share": 0.0,
         "out_of_loop_share": 1.0}]
    with pytest.raises(ValueError, match="group by one of stage, playbook, kind"):
        report("owner")
