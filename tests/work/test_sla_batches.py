"""The sweep works per batch: related rows read once per batch, no savepoints, a failing task set aside alone."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import event, func, select, update

from orchestrator import schema
from orchestrator.config import Settings
from orchestrator.db import make_engine, make_session_factory
from orchestrator.models import ExceptionItem, OutboxMessage, Owner, SlaEvent, Task
from orchestrator.work.sweep import sweep_sla
from tests.work.sla_bulk import RUNGS, build

NOW = datetime(2026, 12, 2, 15, 0, tzinfo=UTC)


def _setup(url):
    engine = make_engine(url)
    schema.upgrade(engine)
    build(engine, tasks=6, due=6, now=NOW, reps=2)
    statements: list[str] = []
    event.listen(engine, "before_cursor_execute",
                 lambda _c, _cur, sql, _p, _ctx, _many: statements.append(sql.lstrip().split(None, 1)[0].upper()
                                                                           + " " + sql))
    settings = Settings(database_url=url, exception_owner="ops@bulk.example")
    return engine, make_session_factory(engine), settings, statements


def test_a_batch_reads_related_rows_once_and_takes_no_savepoints(fresh_database):
    engine, sessions, settings, statements = _setup(fresh_database)
    try:
        report = sweep_sla(sessions=sessions, settings=settings, now=NOW, limit=50)
        assert (report.tasks, report.errors) == (6, 0)
        assert report.counts["escalations"] == 6 * RUNGS
        assert not [s for s in statements if s.startswith("SAVEPOINT")]
        # One query per batch for the journeys, not one (or four) per task.
        assert len([s for s in statements if s.startswith("SELECT") and "FROM journeys" in s]) == 1
        with engine.connect() as connection:
            assert connection.scalar(select(func.count()).select_from(SlaEvent)) == 6 * (RUNGS + 3)
            assert connection.scalar(select(func.count()).select_from(OutboxMessage)) == 6 * RUNGS
        # A second sweep at the same instant finds nothing due and writes nothing.
        assert sweep_sla(sessions=sessions, settings=settings, now=NOW).tasks == 0
    finally:
        engine.dispose()


def test_a_task_whose_check_fails_is_set_aside_and_the_rest_of_its_batch_commits(fresh_database):
    engine, sessions, settings, statements = _setup(fresh_database)
    try:
        with engine.begin() as connection:  # rep0's hours are unreadable: every check of their tasks fails
            connection.execute(update(Owner).where(Owner.email == "rep0@bulk.example")
                               .values(working_hours={"hours": "17:00-09:00"}))
            broken = set(connection.scalars(select(Task.id).join(Owner, Owner.id == Task.owner_id)
                                            .where(Owner.email == "rep0@bulk.example")))
        assert len(broken) == 3
        report = sweep_sla(sessions=sessions, settings=settings, now=NOW, limit=50)
        assert (report.tasks, report.errors) == (6, 3)
        assert report.counts["escalations"] == 3 * RUNGS  # the failed first pass is not counted
        assert [s for s in statements if s.startswith("SAVEPOINT")]  # the second pass isolates
        with engine.connect() as connection:
            escalated = set(connection.scalars(select(SlaEvent.task_id).where(SlaEvent.kind == "escalated")))
            assert escalated and not escalated & broken
            assert connection.scalar(select(func.count()).select_from(SlaEvent)
                                     .where(SlaEvent.kind == "escalated")) == 3 * RUNGS
            items = connection.execute(select(ExceptionItem.category, ExceptionItem.detail)
                                       .where(ExceptionItem.category == "engine_error")).all()
            assert {row.detail["task_id"] for row in items} == broken
            assert set(connection.scalars(select(Task.id).where(Task.sla_check_at.is_(None)))) >= broken
        assert sweep_sla(sessions=sessions, settings=settings, now=NOW).tasks == 0
    finally:
        engine.dispose()
