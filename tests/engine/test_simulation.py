"""Simulation replays history on a scratch database: the real one is never written, and the counts are the engine's."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import textwrap
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session

from orchestrator import schema
from orchestrator.cli.simulate import simulate as simulate_command
from orchestrator.clock import ensure_utc
from orchestrator.config import Settings, load_settings
from orchestrator.db import unit_of_work
from orchestrator.intake import signals
from orchestrator.journeys import engine
from orchestrator.models import Account, Base, ExceptionItem, Journey
from orchestrator.playbook.store import apply_playbooks
from orchestrator.replay.samples import load_sample_data, sample_signals, sample_signals_text
from orchestrator.replay.simulation import (
    SimulationError,
    SimulationReport,
    caps_hit,
    human_minutes,
    render_simulation,
    simulate,
    steps_per_stage,
    tasks_per_owner_week,
)
from orchestrator.resources import shipped_playbooks_dir
from orchestrator.runtime import Runtime, build_runtime
from tests.conftest import BACKENDS, POSTGRES_URL

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def runtime(fresh_database: URL) -> Iterator[Runtime]:
    runtime = build_runtime(load_settings(
        {"HANDOFF_DATABASE_URL": fresh_database.render_as_string(hide_password=False),
         "HANDOFF_EXCEPTION_OWNER": "ops-lead@example.com"}))
    schema.upgrade(runtime.engine)
    with unit_of_work(runtime.sessions) as session:
        load_sample_data(session=session)
    yield runtime
    runtime.close()


def _row_counts(runtime: Runtime) -> dict[str, int]:
    with unit_of_work(runtime.sessions) as session:
        return {table.name: session.scalar(select(func.count()).select_from(table)) or 0
                for table in Base.metadata.sorted_tables}


def test_simulation_leaves_the_configured_database_untouched(runtime: Runtime) -> None:
    before = _row_counts(runtime)

    report = simulate(playbook_paths=[shipped_playbooks_dir()], signals=sample_signals(),
                      settings=runtime.settings, source=runtime.engine)

    assert _row_counts(runtime) == before
    assert before["signals"] == before["journeys"] == before["tasks"] == before["playbook_versions"] == 0
    # ...while the scratch copy did the work, on the copied owners and accounts.
    # the samples repeat one usage line (same dedupe key): every other line is accepted
    assert report.replay.accepted == len(sample_signals()) - 1 and report.replay.duplicates == 1
    assert sum(sum(weeks.values()) for weeks in report.tasks_per_owner_week.values()) >= 10
    assert "priya.natarajan@acme.example" in report.tasks_per_owner_week
    with unit_of_work(runtime.sessions) as session:
        acme = session.scalars(select(Account).where(Account.domain == "acme-robotics.example")).one()
        assert acme.stage == "acquire"  # the simulated onboarding moved only the scratch copy


def test_simulation_counts_match_the_engine_run_directly_on_the_same_inputs(
        session: Session, settings: Settings) -> None:
    simulated = simulate(playbook_paths=[shipped_playbooks_dir()], signals=sample_signals(), settings=settings,
                         sample=True, work_tasks=False)

    # The same inputs, driven by hand: sample records, shipped playbooks, the signals at
    # their times, and the timeout sweep every hour until two weeks after the last one.
    load_sample_data(session=session)
    history = sample_signals()
    start = ensure_utc(datetime.fromisoformat(history[0]["occurred_at"]))
    apply_playbooks(session=session, paths=[shipped_playbooks_dir()], now=start, actor="test")
    end = ensure_utc(datetime.fromisoformat(history[-1]["occurred_at"])) + timedelta(days=14)
    now, pending = start, list(history)
    while now <= end:
        engine.sweep_timeouts(session=session, settings=settings, now=now)
        while pending and ensure_utc(datetime.fromisoformat(pending[0]["occurred_at"])) <= now:
            signals.ingest(session=session, raw=pending.pop(0), source="test", now=now, settings=settings)
        engine.process_pending(session=session, settings=settings, now=now)
        now += timedelta(hours=1)
    session.flush()

    assert simulated.tasks_per_owner_week == tasks_per_owner_week(session)
    assert simulated.steps_per_stage == steps_per_stage(session)
    assert simulated.human_minutes == human_minutes(session)
    assert [(c["playbook"], c["step"], c["account"]) for c in simulated.caps_hit] == \
        [(c["playbook"], c["step"], c["account"]) for c in caps_hit(session)]
    journeys: dict[str, Counter[str]] = {}
    for journey in session.scalars(select(Journey)):
        journeys.setdefault(journey.playbook_id, Counter())[journey.status] += 1
    assert simulated.journeys == {k: dict(sorted(v.items())) for k, v in sorted(journeys.items())}
    exceptions = Counter(session.scalars(select(ExceptionItem.category)))
    assert simulated.exceptions == dict(exceptions)
    assert simulated.replay.timeouts >= 2


def test_simulation_with_people_working_their_tasks_runs_the_later_steps(settings: Settings) -> None:
    left_open = simulate(playbook_paths=[shipped_playbooks_dir()], signals=sample_signals(), settings=settings,
                         sample=True, work_tasks=False)
    worked = simulate(playbook_paths=[shipped_playbooks_dir()], signals=sample_signals(), settings=settings,
                      sample=True, work_tasks=True)

    def total(report: SimulationReport) -> int:
        return sum(sum(weeks.values()) for weeks in report.human_minutes.values())

    assert total(worked) > total(left_open)
    assert worked.steps_per_stage["acquire"]["approvals"] == 2  # nurture emails reach their approval step
    assert left_open.steps_per_stage["acquire"]["approvals"] == 0


def test_weeks_limits_the_replay_to_the_first_weeks_of_history(settings: Settings) -> None:
    report = simulate(playbook_paths=[shipped_playbooks_dir()], signals=sample_signals(), settings=settings,
                      sample=True, weeks=1)

    assert report.replay.beyond_window > 0
    assert report.replay.ended_at is not None and report.replay.started_at is not None
    assert report.replay.ended_at - report.replay.started_at == timedelta(weeks=1)
    # 2026-10-05 13:20 + 1 week ends on Monday 2026-10-12, the first day of W42.
    weeks_seen = {week for weeks in report.tasks_per_owner_week.values() for week in weeks}
    assert weeks_seen <= {"2026-W41", "2026-W42"} and "2026-W41" in weeks_seen


def test_invalid_playbooks_stop_the_simulation_with_their_findings(tmp_path: Path, settings: Settings) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("id: broken\nname: Broken\nstage: nowhere\nsteps: []\n", encoding="utf-8")

    with pytest.raises(SimulationError, match="broken.yaml"):
        simulate(playbook_paths=[broken], signals=sample_signals(), settings=settings, sample=True)


def test_simulate_command_prints_tables_or_json(tmp_path: Path) -> None:
    history = tmp_path / "history.jsonl"
    history.write_text(sample_signals_text() + "\nnot json\n", encoding="utf-8")
    args = [str(shipped_playbooks_dir()), "--signals", str(history), "--sample"]

    text = CliRunner().invoke(simulate_command, args, catch_exceptions=False)
    as_json = CliRunner().invoke(simulate_command, [*args, "--json"], catch_exceptions=False)

    assert text.exit_code == 0, text.output
    for heading in ("Tasks per owner per ISO week", "Human hours", "Automated vs human steps per stage",
                    "SLA load", "Customer-touch caps", "1 rejected"):
        assert heading in text.output
    data = json.loads(as_json.output)
    assert data["signals"]["accepted"] == len(sample_signals()) - 1 and len(data["signals"]["rejected"]) == 1
    assert "not valid JSON" in data["signals"]["rejected"][0]
    assert data["human_hours_per_owner_week"]["priya.natarajan@acme.example"]
    assert {"tasks_per_owner_week", "steps_per_stage", "sla_load", "caps_hit"} <= set(data)


@pytest.mark.parametrize("bench_backend", BACKENDS)
def test_intake_benchmark_prints_both_rates_and_their_ratio(bench_backend: str) -> None:
    command = [sys.executable, str(REPO / "bench" / "intake.py"), "--signals", "30", "--batch", "10"]
    if bench_backend == "postgresql":
        assert POSTGRES_URL
        command += ["--database-url", POSTGRES_URL]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("HANDOFF_CONFIG", None)

    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO, timeout=300)

    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith(f"Handoff intake benchmark: 30 signals on {bench_backend}")
    assert any(line.strip().startswith("(a) raw INSERT") and line.endswith("signals/s") for line in lines)
    assert any(line.strip().startswith("(b) intake + evaluation") and line.endswith("signals/s") for line in lines)
    ratio = next(line for line in lines if "ratio (b)/(a):" in line)
    assert float(ratio.split("ratio (b)/(a):")[1].split()[0]) > 0


def test_simulation_answers_the_capacity_question_per_role_and_owner(settings: Settings) -> None:
    estimated = dataclasses.replace(settings, action_estimates={"crm.update_field": 5, "customer.email": 10})
    report = simulate(playbook_paths=[shipped_playbooks_dir()], signals=sample_signals(), settings=estimated,
                      sample=True)
    capacity = report.capacity
    weeks = capacity["weeks"]
    assert weeks == sorted(weeks) and len(weeks) >= 5  # every week of the window, empty ones too
    for table in (capacity["owners"], capacity["roles"]):
        for row in table.values():
            counts = list(row["weeks"].values())
            assert list(row["weeks"]) == weeks
            assert row["peak"] == max(counts) and row["average"] == round(sum(counts) / len(weeks), 1)
    # Per owner and per role add up to the same tasks, and to the per-owner-week table.
    total = sum(sum(weeks_.values()) for weeks_ in report.tasks_per_owner_week.values())
    assert sum(sum(r["weeks"].values()) for r in capacity["owners"].values()) == total
    assert sum(sum(r["weeks"].values()) for r in capacity["roles"].values()) == total
    assert any(0 in r["weeks"].values() for r in capacity["owners"].values())  # empty weeks are shown as 0
    assert capacity["automated_minutes_saved"] > 0 and capacity["automated_minutes_saved"] % 5 == 0
    lines = render_simulation(report)
    assert "Capacity per role: tasks per ISO week (empty weeks count), weekly average and peak, human hours" in lines


def test_when_nothing_enrolls_the_simulation_says_why(settings: Settings, tmp_path) -> None:
    playbook = tmp_path / "big-deals.yaml"
    playbook.write_text(textwrap.dedent("""\
        id: big-deals
        name: Big deals
        stage: onboard
        maintainer: revops@acme.example
        review_every: 365d
        enroll: {on: deal.closed_won, when: "deal.amount >= 100000000"}
        steps:
          - id: done
            kind: exit
    """))
    report = simulate(playbook_paths=[playbook], signals=sample_signals(), settings=settings, sample=True)
    assert report.journeys == {}
    [reason] = report.not_enrolled
    assert reason["playbook"] == "big-deals" and "deal.amount >= 100000000" in reason["rule"]
    assert reason["signals"] >= 1
    assert "Nothing enrolled. Top reasons:" in render_simulation(report)


def test_with_active_runs_the_active_playbooks_beside_the_candidates(runtime: Runtime, tmp_path) -> None:
    from orchestrator.playbook.store import list_playbooks

    onboard = shipped_playbooks_dir() / "onboard"
    with unit_of_work(runtime.sessions) as session:
        apply_playbooks(session=session, paths=[onboard], now=datetime.now().astimezone(), actor="test")
        active = [v.playbook_id for v in list_playbooks(session=session)]
    candidate = shipped_playbooks_dir() / "renew"
    alone = simulate(playbook_paths=[candidate], signals=sample_signals(), settings=runtime.settings,
                     source=runtime.engine)
    together = simulate(playbook_paths=[candidate], signals=sample_signals(), settings=runtime.settings,
                        source=runtime.engine, with_active=True)
    assert set(alone.journeys) <= {"renewal-review"}
    assert set(active) <= set(together.playbooks) and "renewal-review" in together.playbooks
    assert "onboard-kickoff" in together.journeys  # the active playbook ran in the scratch copy too
    with pytest.raises(SimulationError, match="--with-active needs the configured database"):
        simulate(playbook_paths=[candidate], signals=sample_signals(), settings=runtime.settings, sample=True,
                 with_active=True)
