from datetime import timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from orchestrator import schema
from orchestrator.db import make_engine
from orchestrator.delivery import outbox
from orchestrator.models import ExceptionItem, OutboxMessage, OutboxStatus
from tests.factories import AccountFactory


def _enqueue(session, key, at, **overrides):
    fields = dict(kind="crm.create_task", target="crm", payload={"subject": "Kickoff"},
                  idempotency_key=key, at=at)
    fields.update(overrides)
    return outbox.enqueue(session, **fields)


def test_the_same_idempotency_key_twice_gives_one_row(session, clock):
    account = AccountFactory()
    first = _enqueue(session, "task:1:create", clock.now(), account_id=account.id)
    again = _enqueue(session, "task:1:create", clock.now() + timedelta(minutes=1),
                     payload={"subject": "changed"})

    assert again.id == first.id
    assert again.payload == {"subject": "Kickoff"}
    assert session.scalar(select(func.count()).select_from(OutboxMessage)) == 1
    assert (first.status, first.attempts, first.next_attempt_at) == ("pending", 0, clock.now())


def test_enqueue_joins_the_callers_transaction(session, clock):
    savepoint = session.begin_nested()
    _enqueue(session, "k", clock.now())
    savepoint.rollback()

    assert session.scalar(select(func.count()).select_from(OutboxMessage)) == 0


def test_pending_returns_due_messages_earliest_first(session, clock):
    now = clock.now()
    later = _enqueue(session, "later", now - timedelta(minutes=1))
    earlier = _enqueue(session, "earlier", now - timedelta(minutes=5))
    _enqueue(session, "future", now + timedelta(minutes=5))
    delivered = _enqueue(session, "done", now - timedelta(hours=1))
    outbox.mark_delivered(message=delivered, at=now, remote_id="00T1")
    session.flush()

    assert outbox.pending(session, now=now, limit=10) == [earlier, later]
    assert outbox.pending(session, now=now, limit=1) == [earlier]
    assert (delivered.status, delivered.remote_id, delivered.attempts) == ("delivered", "00T1", 1)


@pytest.mark.parametrize(("attempts", "seconds"), [(0, 0), (1, 30), (2, 60), (3, 120), (10, 15360),
                                                   (11, 6 * 3600), (10_000, 6 * 3600)])
def test_backoff_doubles_up_to_a_cap(attempts, seconds):
    assert outbox.backoff_delay(attempts) == timedelta(seconds=seconds)


def test_a_failure_schedules_a_retry_with_backoff_or_at_the_given_time(session, settings, clock):
    now = clock.now()
    message = _enqueue(session, "k", now)

    outbox.mark_failed(session=session, settings=settings, message=message, at=now, error="503")
    assert (message.attempts, message.next_attempt_at, message.last_error) == (1, now + timedelta(seconds=30), "503")

    outbox.mark_failed(session=session, settings=settings, message=message, at=now, error="429",
                       retry_at=now + timedelta(minutes=10))
    assert message.next_attempt_at == now + timedelta(minutes=10)
    assert message.status == OutboxStatus.PENDING


def test_a_message_past_its_retry_budget_goes_dead_and_gets_an_owner(session, settings, clock):
    message = _enqueue(session, "k", clock.now())

    for _ in range(3):
        outbox.mark_failed(session=session, settings=settings, message=message, at=clock.now(),
                           error="401 unauthorized", max_attempts=3)

    assert message.status == OutboxStatus.DEAD
    item = session.scalars(select(ExceptionItem)).one()
    assert item.category == "delivery_failed" and item.owner == "ops-lead@example.com"
    assert "401 unauthorized" in item.message and item.detail["outbox_id"] == message.id
    assert outbox.pending(session, now=clock.now() + timedelta(days=1), limit=10) == []


def test_two_workers_never_claim_the_same_message(backend, fresh_database, clock):
    if backend != "postgresql":
        pytest.skip("SKIP LOCKED is PostgreSQL's; SQLite has a single writer")
    engine = make_engine(fresh_database)
    schema.upgrade(engine)
    with Session(engine) as session:
        for n in range(3):
            _enqueue(session, f"k{n}", clock.now() - timedelta(minutes=3 - n))
        session.commit()

    with Session(engine) as first, Session(engine) as second:
        claimed_first = outbox.pending(first, now=clock.now(), limit=2)
        claimed_second = outbox.pending(second, now=clock.now(), limit=2)
        assert [m.idempotency_key for m in claimed_first] == ["k0", "k1"]
        assert [m.idempotency_key for m in claimed_second] == ["k2"]
        first.rollback()
        assert [m.idempotency_key for m in outbox.pending(first, now=clock.now(), limit=5)] == ["k0", "k1"]
    engine.dispose()
