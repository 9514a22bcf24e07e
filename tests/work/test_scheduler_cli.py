"""The scheduler and its commands: tick, status with job history, SIGTERM, the SLA report after the demo."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from click.testing import CliRunner
from sqlalchemy import func, select

from orchestrator.cli import main
from orchestrator.config import load_settings
from orchestrator.db import unit_of_work
from orchestrator.models import JobRun, SlaEvent
from orchestrator.runtime import build_runtime
from orchestrator.worker.scheduler import build_scheduler, run_until_stopped

HANDOFF = str(Path(sys.executable).parent / "handoff")


def _env(url) -> dict[str, str | None]:
    return {"HANDOFF_DATABASE_URL": url.render_as_string(hide_password=False), "HANDOFF_CONFIG": None}


def _invoke(url, *args: str):
    result = CliRunner().invoke(main, list(args), env=_env(url), catch_exceptions=False)
    return result


def test_after_the_demo_tick_escalates_overdue_tasks_and_the_report_shows_the_breaches(fresh_database, tmp_path,
                                                                                      monkeypatch):
    monkeypatch.chdir(tmp_path)  # the demo writes the sample team's handoff.toml where it runs
    assert _invoke(fresh_database, "demo").exit_code == 0
    tick = _invoke(fresh_database, "tick", "--now", "2026-12-01T15:00:00Z")
    assert tick.exit_code == 0, tick.output
    assert "sla.sweep:" in tick.output and "escalations" in tick.output
    again = _invoke(fresh_database, "tick", "--now", "2026-12-01T15:00:00Z")
    assert "sla.sweep: 0 items" in again.output  # everything due was done once

    settings = load_settings({"HANDOFF_DATABASE_URL": fresh_database.render_as_string(hide_password=False)})
    runtime = build_runtime(settings)
    try:
        with unit_of_work(runtime.sessions, read_only=True) as session:
            breaches = session.scalar(select(func.count()).select_from(SlaEvent)
                                      .where(SlaEvent.kind.in_(["ack_breached", "due_breached"])))
            runs = {run.job_id: run for run in session.scalars(select(JobRun))}
    finally:
        runtime.close()
    assert breaches and runs["sla.sweep"].runs == 2 and runs["sla.sweep"].last_items == 0

    report = _invoke(fresh_database, "report", "sla", "--since", "365d", "--by", "playbook", "--format", "json")
    rows = json.loads(report.output)["rows"]
    assert sum(row["breaches"] for row in rows) == breaches
    assert any(row.get("escalations_rung_1") for row in rows)
    as_csv = list(csv.DictReader(io.StringIO(_invoke(fresh_database, "report", "sla", "--since", "365d",
                                                     "--by", "team", "--format", "csv").output)))
    assert sum(int(row["breaches"]) for row in as_csv) == breaches
    table = _invoke(fresh_database, "report", "sla", "--since", "365d", "--by", "owner")
    assert table.output.splitlines()[0].split()[:3] == ["owner", "tasks", "ack_adherence"]

    status = _invoke(fresh_database, "status")
    line = next(line for line in status.output.splitlines() if line.strip().startswith("sla.sweep"))
    assert "2026-12-01 15:00Z" in line


def test_bad_input_is_one_line_naming_the_option(fresh_database):
    assert _invoke(fresh_database, "db", "upgrade").exit_code == 0
    for args, fragment in ((["tick", "--now", "tomorrow"], "--now"), (["tick", "--now", "2026-12-01T15:00"], "zone"),
                           (["tick", "--job", "nope"], 'no job "nope"'),
                           (["report", "sla", "--since", "soon"], "--since")):
        result = CliRunner().invoke(main, args, env=_env(fresh_database))
        assert result.exit_code == 2, (args, result.output)
        assert fragment in result.output and "Traceback" not in result.output


def test_scheduler_jobs_have_stable_ids_and_never_overlap(fresh_database):
    settings = load_settings({"HANDOFF_DATABASE_URL": fresh_database.render_as_string(hide_password=False)})
    runtime = build_runtime(settings)
    try:
        scheduler = build_scheduler(runtime)
        jobs = {job.id: job for job in scheduler.get_jobs()}
        assert {"signals.drain", "journeys.timeouts", "sla.sweep", "exceptions.escalate", "digests.daily",
                "digests.weekly"} <= set(jobs)
        assert all(job.coalesce and job.max_instances == 1 for job in jobs.values())
        rebuilt = build_scheduler(runtime)
        assert {job.id for job in rebuilt.get_jobs()} == set(jobs)
    finally:
        runtime.close()


def test_run_until_stopped_runs_the_jobs_then_stops_cleanly(fresh_database):
    assert _invoke(fresh_database, "db", "upgrade").exit_code == 0
    settings = load_settings({"HANDOFF_DATABASE_URL": fresh_database.render_as_string(hide_password=False)})
    runtime = build_runtime(settings)
    stop = threading.Event()
    thread = threading.Thread(target=run_until_stopped, kwargs={"runtime": runtime, "only": ["sla.sweep"],
                                                                  "stop": stop})
    thread.start()
    try:
        for _ in range(200):
            with unit_of_work(runtime.sessions, read_only=True) as session:
                if session.scalar(select(func.count()).select_from(JobRun)):
                    break
            time.sleep(0.05)
        stop.set()
        thread.join(timeout=30)
        assert not thread.is_alive()
        with unit_of_work(runtime.sessions, read_only=True) as session:
            assert session.scalars(select(JobRun.job_id)).all() == ["sla.sweep"]
    finally:
        stop.set()
        runtime.close()


def test_the_worker_process_stops_on_sigterm(fresh_database, tmp_path):
    assert _invoke(fresh_database, "db", "upgrade").exit_code == 0
    env = {**os.environ, "HANDOFF_DATABASE_URL": fresh_database.render_as_string(hide_password=False)}
    env.pop("HANDOFF_CONFIG", None)
    process = subprocess.Popen([HANDOFF, "worker", "--job", "sla.sweep"], env=env, cwd=tmp_path,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        first = process.stdout.readline()
        assert "worker: 1 jobs (sla.sweep)" in first
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0
    assert "worker: stopped" in output


def test_tick_opens_due_playbook_reviews_and_reviews_done_closes_one(fresh_database):
    from datetime import UTC, datetime

    from orchestrator import schema
    from orchestrator.db import make_engine
    from orchestrator.models import Owner, PlaybookReview, PlaybookVersion
    from orchestrator.playbook import load_playbook_text

    engine = make_engine(fresh_database)
    schema.upgrade(engine)
    text = (Path(__file__).parents[2] / "playbooks/acquire/speed-to-lead.yaml").read_text()
    playbook = load_playbook_text(text, "speed-to-lead.yaml", lint=False)
    applied = datetime(2026, 9, 1, tzinfo=UTC)
    with engine.begin() as connection:
        connection.execute(Owner.__table__.insert(), [
            {"email": "ria@acme.example", "name": "Ria", "role": "revops", "team": "RevOps", "working_hours": {},
             "active": True, "created_at": applied},
            {"email": "ola@acme.example", "name": "Ola", "role": "revops", "team": "RevOps", "working_hours": {},
             "active": True, "created_at": applied}])
        connection.execute(PlaybookVersion.__table__.insert().values(
            playbook_id=playbook.id, version=1, name=playbook.name, stage=str(playbook.stage), checksum="x" * 64,
            source_text=text, source_path="speed-to-lead.yaml", active=True, applied_at=applied,
            applied_by="ria@acme.example"))
    engine.dispose()
    early = _invoke(fresh_database, "tick", "--now", "2026-10-30T15:00:00Z", "--job", "reviews.playbooks")
    assert "reviews.playbooks: 0 items" in early.output, early.output  # review_every is 60d
    due = _invoke(fresh_database, "tick", "--now", "2026-11-02T15:00:00Z", "--job", "reviews.playbooks")
    assert "1 opened" in due.output, due.output
    listed = _invoke(fresh_database, "reviews", "list")
    assert "speed-to-lead" in listed.output and "ola@acme.example" in listed.output, listed.output
    review_id = listed.output.splitlines()[1].split()[0]
    shown = _invoke(fresh_database, "reviews", "show", review_id)
    assert "Versions applied:" in shown.output and "v1 on 2026-09-01 by ria@acme.example" in shown.output
    assert _invoke(fresh_database, "reviews", "done", review_id, "--by", "ola@acme.example").exit_code == 0
    assert "no open reviews" in _invoke(fresh_database, "reviews", "list").output
    again = _invoke(fresh_database, "tick", "--now", "2026-11-03T15:00:00Z", "--job", "reviews.playbooks")
    assert "reviews.playbooks: 0 items" in again.output
    engine = make_engine(fresh_database)
    with engine.connect() as connection:
        assert connection.scalar(select(func.count()).select_from(PlaybookReview)) == 1
    engine.dispose()


def test_a_started_worker_keeps_its_start_up_objects_out_of_later_collections(fresh_database):
    import gc

    assert _invoke(fresh_database, "db", "upgrade").exit_code == 0
    settings = load_settings({"HANDOFF_DATABASE_URL": fresh_database.render_as_string(hide_password=False)})
    runtime = build_runtime(settings)
    stop = threading.Event()
    frozen: list[int] = []
    gc.unfreeze()  # as a fresh process: nothing frozen yet
    thread = threading.Thread(target=run_until_stopped, kwargs={
        "runtime": runtime, "only": ["sla.sweep"], "stop": stop,
        "ready": lambda: frozen.append(gc.get_freeze_count())})
    thread.start()
    try:
        for _ in range(200):
            if frozen:
                break
            time.sleep(0.05)
        # Modules, settings, the engine and its metadata: tens of thousands of objects no collection walks again.
        assert frozen and frozen[0] > 10_000
    finally:
        stop.set()
        thread.join(timeout=30)
        runtime.close()
        gc.unfreeze()
