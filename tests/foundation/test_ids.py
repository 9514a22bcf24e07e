"""Ids known before the row is written (models/ids.py): unique, in order, and never a flush."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import event, select
from sqlalchemy.orm import Session

from orchestrator import models
from orchestrator.models import ExceptionItem, Journey, StepRun, Task, assign_id
from tests.factories import AccountFactory, OwnerFactory

AT = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


def _version(session):
    version = models.PlaybookVersion(playbook_id="ids", version=1, name="ids", stage="adopt", checksum="x",
                                     source_text="", source_path="ids.yaml")
    session.add(version)
    session.flush()
    return version


def _journey(session, account, version, key):
    journey = Journey(account_id=account.id, playbook_id="ids", playbook_version_id=version.id, enrollment_key=key,
                      enrolled_at=AT, context={}, status="active")
    session.add(journey)
    return journey


def _run(session, journey, step_id):
    step_run = StepRun(journey_id=journey.id, step_id=step_id, kind="automated", status="done", reason="",
                       outcome={}, started_at=AT)
    session.add(step_run)
    return step_run


def _statements(session):
    seen: list[str] = []
    event.listen(session.get_bind(), "before_cursor_execute",
                 lambda _c, _cur, statement, *_rest: seen.append(statement.split()[0].upper()))
    return seen


def test_ids_are_handed_out_in_order_without_writing_anything(session):
    account, version = AccountFactory(), _version(session)
    seen = _statements(session)

    journeys = [_journey(session, account, version, f"ids:{n}") for n in range(3)]
    ids = [assign_id(session, journey) for journey in journeys]
    runs = [_run(session, journeys[0], f"step-{n}") for n in range(40)]  # more than one PostgreSQL block
    run_ids = [assign_id(session, step_run) for step_run in runs]

    assert "INSERT" not in seen and all(journey in session.new for journey in journeys)
    assert ids == sorted(ids) and len(set(ids)) == 3
    assert run_ids == sorted(run_ids) and len(set(run_ids)) == 40
    assert assign_id(session, journeys[0]) == ids[0]  # asked again: the same id

    session.flush()
    stored = session.scalars(select(StepRun.step_id).where(StepRun.journey_id == ids[0]).order_by(StepRun.id))
    assert list(stored) == [f"step-{n}" for n in range(40)]


def test_rows_made_elsewhere_take_their_ids_from_the_same_place_and_never_collide(session):
    account, version = AccountFactory(), _version(session)
    given = _journey(session, account, version, "ids:given")
    assign_id(session, given)
    other = _journey(session, account, version, "ids:other")  # no id asked for: given one at the flush
    session.flush()
    later = _journey(session, account, version, "ids:later")
    assign_id(session, later)
    session.flush()

    assert given.id < other.id < later.id


def test_a_row_that_names_a_pending_journey_is_written_after_it(session):
    # Foreign keys are enforced on both databases: the journey must be inserted before the rows naming it,
    # though the item and the task were added to the session first.
    owner, account, version = OwnerFactory(), AccountFactory(), _version(session)
    item = ExceptionItem(category="no_assignee", owner="ops@example.com", message="m", detail={},
                         account_id=account.id, respond_by=AT)
    task = Task(account_id=account.id, owner_id=owner.id, title="t", due_at=AT, created_at=AT)
    session.add_all([item, task])
    journey = _journey(session, account, version, "ids:named")
    step_run = _run(session, journey, "named")
    item.journey_id = task.journey_id = assign_id(session, journey)
    step_run.journey_id = journey.id
    task.step_run_id = assign_id(session, step_run)

    session.flush()

    assert session.get(ExceptionItem, item.id).journey_id == journey.id
    assert session.get(Task, task.id).step_run_id == step_run.id


def test_on_sqlite_a_rolled_back_savepoint_gives_its_ids_back(session, backend):
    account, version = AccountFactory(), _version(session)
    first = _journey(session, account, version, "ids:first")
    assign_id(session, first)
    session.flush()
    with session.begin_nested() as savepoint:
        undone = _journey(session, account, version, "ids:undone")
        undone_id = assign_id(session, undone)
        savepoint.rollback()
    after = _journey(session, account, version, "ids:after")
    assign_id(session, after)

    if backend == "sqlite":
        assert after.id == undone_id == first.id + 1  # as SQLite's own rowids would be
    else:
        assert after.id > undone_id  # a sequence never gives a value back
    session.flush()
    assert session.scalar(select(Journey.enrollment_key).where(Journey.id == after.id)) == "ids:after"


def test_a_session_leaves_no_more_sequence_ids_unused_than_it_used(session, backend, db_engine):
    if backend != "postgresql":
        pytest.skip("sequences: PostgreSQL only (SQLite hands out one past the highest)")
    account, version = AccountFactory(), _version(session)
    first = _journey(session, account, version, "ids:one")
    assign_id(session, first)
    with Session(db_engine) as other:  # another worker, taking ids from the same sequence meanwhile
        assert assign_id(other, Journey()) == first.id + 1  # one used, none left waiting

    used = [assign_id(session, _journey(session, account, version, f"ids:{n}")) for n in range(6)]
    with Session(db_engine) as other:
        taken = assign_id(other, Journey())
    assert taken - used[-1] <= len(used) + 1  # what this session holds unused is at most what it used


def test_flushes_inside_one_transaction_keep_handing_out_ids_without_asking_again(session, backend):
    account, version = AccountFactory(), _version(session)
    asked: list[str] = []  # SQLite's question for the highest id written (PostgreSQL uses its sequence)
    event.listen(session.get_bind(), "before_cursor_execute",
                 lambda _c, _cur, statement, *_rest: asked.append(statement) if "max(journeys.id)" in statement
                 else None)
    sqlite = backend == "sqlite"

    ids = []
    for n in range(3):
        journey = _journey(session, account, version, f"flushed:{n}")
        ids.append(assign_id(session, journey))
        session.flush()  # written, and the transaction goes on: the next id follows without asking

    assert len(asked) == (1 if sqlite else 0)
    assert ids == [ids[0], ids[0] + 1, ids[0] + 2] if sqlite else ids == sorted(set(ids))
    with session.begin_nested() as savepoint:
        undone = assign_id(session, _journey(session, account, version, "undone"))
        session.flush()
        savepoint.rollback()
    after = assign_id(session, _journey(session, account, version, "after"))
    if sqlite:
        # A savepoint that rolled back may have given ids back: asked afresh, and the id is free again.
        assert len(asked) == 2 and after == undone
    else:
        assert asked == [] and after > undone  # sequence values are never given back


def test_on_postgres_the_next_session_takes_the_ids_the_last_one_left_without_asking(session, backend, db_engine):
    if backend != "postgresql":
        pytest.skip("sequences: PostgreSQL only (SQLite hands out one past the highest)")
    asked: list[str] = []

    def seen(_connection, _cursor, statement, *_rest):
        if "nextval" in statement:
            asked.append(statement)

    event.listen(db_engine, "before_cursor_execute", seen)
    try:
        account, version = AccountFactory(), _version(session)
        ids = []
        for n in range(80):  # blocks grow to 32; stop right after one is fetched, so values are left over
            before = len(asked)
            ids.append(assign_id(session, _journey(session, account, version, f"pool:{n}")))
            if len(asked) > before and n >= 40:
                break
        fetched = len(asked)
        with Session(db_engine) as other:  # the next engine pass, a session of its own
            taken = [assign_id(other, Journey()) for _ in range(3)]
        assert len(asked) == fetched  # no round trip: the block the first session fetched serves it
        assert taken == [ids[-1] + 1, ids[-1] + 2, ids[-1] + 3]
    finally:
        event.remove(db_engine, "before_cursor_execute", seen)
