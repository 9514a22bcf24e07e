"""Report figures against answers worked out by hand (tests/reports/fixture.py), on both databases."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from orchestrator.db import unit_of_work
from orchestrator.models import Account, Journey, Owner, PlaybookVersion, StepRun, Task, TaskFeedback
from orchestrator.reports.catalog import run_report, to_csv
from orchestrator.reports.oversight import CONSIDER_IN_THE_LOOP, RUBBER_STAMP
from orchestrator.reports.scope import Scope
from tests.conftest import T0
from tests.reports.fixture import SINCE, UNTIL


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
    assert all((row["rated"], row["not_useful"]) == (0, 0) for row in rows)  # no feedback given yet


def test_noise_counts_tasks_marked_not_useful_once_each(sessions: Any, seeded: dict[str, Any]) -> None:
    approve, stamp = seeded["tasks"]["approve"], seeded["tasks"]["stamp"]
    with unit_of_work(sessions) as session:
        def verdict(task_id: int, by: str, useful: bool) -> None:
            session.add(TaskFeedback(task_id=task_id, by=by, useful=useful, created_at=T0, updated_at=T0))
        verdict(approve[0], "lead@acme.example", False)
        verdict(approve[0], "vp@acme.example", True)        # two verdicts, one task: counted once
        verdict(approve[1], "lead@acme.example", True)      # rated, useful
        verdict(approve[5], "lead@acme.example", False)     # the cancelled one: noisy once, not twice
        verdict(stamp[0], "lead@acme.example", False)
    rows = run_report("noise", sessions=sessions, since=SINCE, until=UNTIL)
    assert [row["step"] for row in rows] == ["empty", "approve", "stamp", "notify"]  # 1, 2/6, 1/5, 1/6
    found = by_step(rows)
    assert (found["approve"]["rated"], found["approve"]["not_useful"], found["approve"]["noise_rate"]) == (
        3, 2, round(2 / 6, 4))
    assert (found["stamp"]["rated"], found["stamp"]["not_useful"], found["stamp"]["noise_rate"]) == (1, 1, 0.2)
    assert (found["notify"]["rated"], found["notify"]["not_useful"]) == (0, 0)  # no tasks at all
    assert run_report("noise", sessions=sessions, since=SINCE, until=UNTIL, scope=Scope(playbook="other")) == []


def test_an_empty_period_is_an_empty_report_and_csv(sessions: Any) -> None:
    assert run_report("oversight", sessions=sessions, since=UNTIL, until=UNTIL) == []
    assert to_csv([]) == ""


def test_unknown_report_or_grouping_is_one_clear_error(sessions: Any) -> None:
    with pytest.raises(ValueError, match="no report 'nope'"):
        run_report("nope", sessions=sessions, since=SINCE, until=UNTIL)
    with pytest.raises(ValueError, match="one fixed grouping"):
        run_report("loop", sessions=sessions, since=SINCE, until=UNTIL, by="team")
    for bad in ("colour", "week,team", "team,owner", "team,team", "team,week,step"):
        with pytest.raises(ValueError, match="group by one of owner, team"):
            run_report("sla", sessions=sessions, since=SINCE, until=UNTIL, by=bad)


def test_noise_by_other_groupings(sessions: Any) -> None:
    # Every run of the fixture is on Acme (lead's account, team red, no segment), playbook pb (onboard):
    # 18 runs in the period (6 approve, 5 stamp, 6 notify, 1 empty), 2 skipped, 11 tasks, 1 cancelled.
    expected = {"runs": 18, "skipped": 2, "tasks": 11, "closed_without_action": 1, "rated": 0, "not_useful": 0,
                "published": 0, "edited": 0,
                "noise_rate": round(3 / 18, 4)}
    assert run_report("noise", sessions=sessions, since=SINCE, until=UNTIL, by="team") == [{"team": "red", **expected}]
    assert run_report("noise", sessions=sessions, since=SINCE, until=UNTIL, by="segment,week") == [
        {"segment": "(no segment)", "week": "2026-W48", **expected}]
    assert run_report("noise", sessions=sessions, since=SINCE, until=UNTIL, by="stage") == [
        {"stage": "onboard", **expected}]
    assert run_report("noise", sessions=sessions, since=SINCE, until=UNTIL, by="step") == run_report(
        "noise", sessions=sessions, since=SINCE, until=UNTIL)
    assert run_report("noise", sessions=sessions, since=SINCE, until=UNTIL, by="team", scope=Scope(team="blue")) == []


def add_other_accounts(sessions: Any) -> None:
    """Bolt (bo, team green, segment smb): a 40 s approval and a skipped on-the-loop run on `pb`;
    Cyan (cy, no team, no segment): one skipped on-the-loop run, so its groups have no decision at all."""
    with unit_of_work(sessions) as session:
        version = session.query(PlaybookVersion).filter_by(playbook_id="pb").one()
        for email, team, name, segment in (("bo@acme.example", "green", "Bolt", "smb"),
                                           ("cy@acme.example", None, "Cyan", None)):
            owner = Owner(email=email, name=name, role="csm", team=team)
            account = Account(name=name, domain=f"{name.lower()}.example", owner=owner, segment=segment,
                              stage="onboard", stage_entered_at=T0)
            session.add_all([owner, account])
            session.flush()
            journey = Journey(account_id=account.id, playbook_id="pb", playbook_version_id=version.id,
                              enrollment_key=f"pb:{name}", status="waiting", enrolled_at=SINCE)
            session.add(journey)
            session.flush()
            session.add(StepRun(journey_id=journey.id, step_id="notify", kind="automated", oversight="on_the_loop",
                                status="skipped", started_at=T0))
            if team == "green":
                run = StepRun(journey_id=journey.id, step_id="approve", kind="automated", oversight="in_the_loop",
                              status="done", started_at=T0)
                session.add(run)
                session.flush()
                session.add(Task(account_id=account.id, journey_id=journey.id, step_run_id=run.id, owner_id=owner.id,
                                 kind="approval", title="approve", created_at=T0, due_at=T0 + timedelta(days=1),
                                 status="done", outcome="approved", completed_at=T0 + timedelta(seconds=40)))


def test_oversight_by_team_owner_segment_playbook_stage(sessions: Any) -> None:
    add_other_accounts(sessions)
    # Acme (lead, red): 11 in-the-loop runs with 10 decisions, sorted 5,5,5,5,5,10,10,20,50,100 (ties; rank 5
    # is a 5), 9 approved, 1 rejected, 8 under 30 s; 7 on-the-loop runs, 5 ran, 2 overridden.
    red = {"runs": 18, "decisions": 10, "approval_rate": 0.9, "rejection_rate": 0.1, "override_rate": 0.4,
           "decide_median_s": pytest.approx(5, abs=0.01), "quick_share": 0.8}
    # Bolt: one 40 s approval (not under 30 s), its on-the-loop run skipped: no override rate.
    green = {"runs": 2, "decisions": 1, "approval_rate": 1.0, "rejection_rate": 0.0, "override_rate": None,
             "decide_median_s": pytest.approx(40, abs=0.01), "quick_share": 0.0}
    # Cyan: one skipped run, no decision: an empty group has no rates, not 0%.
    empty = {"runs": 1, "decisions": 0, "approval_rate": None, "rejection_rate": None, "override_rate": None,
             "decide_median_s": None, "quick_share": None}

    def report(by: str, **kw: Any) -> list[dict[str, Any]]:
        return run_report("oversight", sessions=sessions, since=SINCE, until=UNTIL, by=by, **kw)

    assert report("team") == [{"team": "(no team)", **empty}, {"team": "green", **green}, {"team": "red", **red}]
    assert report("owner") == [{"owner": "bo@acme.example", **green}, {"owner": "cy@acme.example", **empty},
                               {"owner": "lead@acme.example", **red}]
    # Acme and Cyan share "(no segment)": 19 runs, the same decisions, 5 of 8 on-the-loop runs ran.
    assert report("segment") == [{"segment": "(no segment)", **red, "runs": 19}, {"segment": "smb", **green}]
    everyone = {"runs": 21, "decisions": 11, "approval_rate": round(10 / 11, 4), "rejection_rate": round(1 / 11, 4),
                "override_rate": 0.4, "decide_median_s": pytest.approx(10, abs=0.01), "quick_share": round(8 / 11, 4)}
    assert report("playbook") == [{"playbook": "pb", **everyone}]  # 11 decisions: rank 6 is a 10
    assert report("stage") == [{"stage": "onboard", **everyone}]
    assert report("team", scope=Scope(team="green")) == [{"team": "green", **green}]
    assert report("step") == run_report("oversight", sessions=sessions, since=SINCE, until=UNTIL)
    assert all("flag" not in row for row in report("team"))  # flags judge a step, not a group
    with pytest.raises(ValueError, match="group by one of step, playbook"):
        report("week")
