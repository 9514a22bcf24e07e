"""The time-saved ledger against answers worked out by hand, on both databases; `[estimates]` config."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from orchestrator.config import ConfigError, load_settings
from orchestrator.db import unit_of_work
from orchestrator.models import Journey, StepRun, Task
from orchestrator.reports.catalog import run_report
from orchestrator.reports.scope import Scope
from tests.conftest import T0
from tests.reports.fixture import SINCE, UNTIL


@pytest.fixture
def sessions(sessions: Any) -> Any:
    factory = sessions
    with unit_of_work(factory) as session:
        journey = session.query(Journey).one()
        owner_id = session.query(Task).first().owner_id
        for reason in ("crm.update_field ran", "crm.update_field ran", "notify.email ran", "other.action ran"):
            session.add(StepRun(journey_id=journey.id, step_id="auto", kind="automated", oversight="out_of_loop",
                                status="done", reason=reason, started_at=T0))
        for minutes, done_after in ((30, 45), (15, None)):  # a human step done in 45 min, one still open
            run = StepRun(journey_id=journey.id, step_id="call", kind="human", status="waiting", started_at=T0,
                          outcome={"estimate_minutes": minutes})
            session.add(run)
            session.flush()
            session.add(Task(account_id=journey.account_id, journey_id=journey.id, step_run_id=run.id,
                             owner_id=owner_id, kind="action", title="call", created_at=T0, due_at=UNTIL,
                             status="done" if done_after else "open", outcome="done" if done_after else None,
                             completed_at=T0 + timedelta(minutes=done_after) if done_after else None))
    return factory


def test_ledger_per_playbook(sessions: Any) -> None:
    estimates = {"crm.update_field": 3, "notify.email": 5}
    [row] = run_report("time-saved", sessions=sessions, since=SINCE, until=UNTIL, estimates=estimates)
    # The fixture's own automated runs have reasons that name no action: counted nowhere.
    assert row == {"playbook": "pb", "automated_actions": 4, "unestimated_actions": 1, "automated_minutes": 11,
                   "human_estimate_minutes": 45, "human_elapsed_minutes": 45.0, "net_minutes_saved": -34}
    [bare] = run_report("time-saved", sessions=sessions, since=SINCE, until=UNTIL)
    assert (bare["automated_minutes"], bare["unestimated_actions"]) == (0, 4)


def test_estimates_config_section(tmp_path: Path) -> None:
    config = tmp_path / "handoff.toml"
    config.write_text('[exceptions]\ndefault_owner = "o@acme.example"\n[estimates]\n"crm.update_field" = 3\n')
    settings = load_settings({"HANDOFF_CONFIG": str(config), "HANDOFF_DATABASE_URL": "sqlite:///x.db"})
    assert settings.action_estimates == {"crm.update_field": 3}
    config.write_text('[estimates]\n"crm.update_field" = "three"\n')
    with pytest.raises(ConfigError, match="estimates"):
        load_settings({"HANDOFF_CONFIG": str(config), "HANDOFF_DATABASE_URL": "sqlite:///x.db"})


def test_ledger_per_week_and_per_playbook_and_week(sessions: Any) -> None:
    with unit_of_work(sessions) as session:  # one more action in the week before (Monday 15:00 of 2026-W47)
        journey = session.query(Journey).one()
        session.add(StepRun(journey_id=journey.id, step_id="auto", kind="automated", oversight="out_of_loop",
                            status="done", reason="notify.email ran", started_at=SINCE + timedelta(hours=1)))
    estimates = {"crm.update_field": 3, "notify.email": 5}
    w47 = {"automated_actions": 1, "unestimated_actions": 0, "automated_minutes": 5, "human_estimate_minutes": 0,
           "human_elapsed_minutes": 0.0, "net_minutes_saved": 5}
    w48 = {"automated_actions": 4, "unestimated_actions": 1, "automated_minutes": 11, "human_estimate_minutes": 45,
           "human_elapsed_minutes": 45.0, "net_minutes_saved": -34}
    assert run_report("time-saved", sessions=sessions, since=SINCE, until=UNTIL, by="week", estimates=estimates) == [
        {"week": "2026-W47", **w47}, {"week": "2026-W48", **w48}]  # in week order, not by minutes saved
    assert run_report("time-saved", sessions=sessions, since=SINCE, until=UNTIL, by="playbook,week",
                      estimates=estimates) == [{"playbook": "pb", "week": "2026-W47", **w47},
                                               {"playbook": "pb", "week": "2026-W48", **w48}]
    [total] = run_report("time-saved", sessions=sessions, since=SINCE, until=UNTIL, estimates=estimates)
    assert (total["automated_actions"], total["automated_minutes"], total["net_minutes_saved"]) == (5, 16, -29)
    assert run_report("time-saved", sessions=sessions, since=SINCE, until=UNTIL, by="week", estimates=estimates,
                      scope=Scope(playbook="other")) == []
    [red] = run_report("time-saved", sessions=sessions, since=SINCE, until=UNTIL, by="team", estimates=estimates)
    assert (red["team"], red["automated_minutes"], red["net_minutes_saved"]) == ("red", 16, -29)  # Acme's owner
    with pytest.raises(ValueError, match="group by one of playbook, team, owner, stage, segment, week"):
        run_report("time-saved", sessions=sessions, since=SINCE, until=UNTIL, by="colour")
