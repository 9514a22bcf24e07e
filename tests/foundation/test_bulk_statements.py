"""`db.insert_many` and `db.among`: batch statements whose text does not grow with the batch."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update
from sqlalchemy.exc import DBAPIError

from orchestrator import models
from orchestrator.db import NO_AUTOFLUSH, among, insert_many
from tests.factories import AccountFactory

AT = datetime(2026, 11, 2, 9, 30, tzinfo=UTC)


def _rows(keys, *, account_id=None):
    return [{"type": "product.usage", "dedupe_key": key, "source": "webhook", "account_id": account_id,
             "deal_id": None, "payload": {"n": i, "note": "ü\u2028", "nested": [None, {"x": 1.5}]},
             "occurred_at": AT + timedelta(minutes=i), "received_at": AT} for i, key in enumerate(keys)]


def test_insert_many_returns_each_new_row_in_row_order_and_skips_conflicts(session):
    account = AccountFactory()
    first = insert_many(session, models.Signal.__table__, _rows(["a", "b"], account_id=account.id),
                        conflict=["dedupe_key"], returning=["dedupe_key", "id"])
    assert [key for key, _ in first] == ["a", "b"]
    assert first[0][1] < first[1][1]

    again = insert_many(session, models.Signal.__table__, _rows(["c", "a", "d", "b", "e"]),
                        conflict=["dedupe_key"], returning=["dedupe_key", "id"])

    assert [key for key, _ in again] == ["c", "d", "e"]
    assert [ident for _, ident in again] == sorted(ident for _, ident in again)
    stored = {signal.dedupe_key: signal for signal in session.scalars(
        select(models.Signal).where(models.Signal.dedupe_key.in_(["a", "c", "e"])), execution_options=NO_AUTOFLUSH)}
    assert stored["a"].account_id == account.id and stored["c"].account_id is None
    # Values arrive as given: JSON (nested, non-ASCII), timestamps (UTC), defaults filled by the database.
    assert stored["e"].payload == {"n": 4, "note": "ü\u2028", "nested": [None, {"x": 1.5}]}
    assert stored["e"].occurred_at == AT + timedelta(minutes=4)
    assert stored["c"].attempts == 0 and stored["c"].processed_at is None


def test_insert_many_without_a_conflict_target_returns_every_row_in_order(session):
    rows = _rows([f"k{i}" for i in range(7)])
    found = insert_many(session, models.Signal.__table__, rows, returning=["id", "dedupe_key"])
    assert [key for _, key in found] == [f"k{i}" for i in range(7)]


def test_insert_many_of_nothing_writes_nothing(session):
    assert insert_many(session, models.Signal.__table__, [], conflict=["dedupe_key"], returning=["id"]) == []


def test_insert_many_refuses_a_value_too_long_for_its_column_rather_than_cutting_it(session):
    rows = _rows(["long"])
    rows[0]["source"] = "s" * 41  # signals.source is VARCHAR(40)
    if session.get_bind().dialect.name == "sqlite":
        pytest.skip("SQLite does not enforce VARCHAR lengths; intake checks them before the database")
    with pytest.raises(DBAPIError):
        with session.begin_nested():
            insert_many(session, models.Signal.__table__, rows, conflict=["dedupe_key"], returning=["id"])


def test_among_matches_like_in_for_any_number_of_values(session):
    found = insert_many(session, models.Signal.__table__, _rows([f"m{i}" for i in range(5)]),
                        returning=["id", "dedupe_key"])
    ids = [ident for ident, _ in found]

    def keys(values):
        return sorted(session.scalars(select(models.Signal.dedupe_key).where(among(session, models.Signal.id, values)),
                                      execution_options=NO_AUTOFLUSH))

    assert keys(ids[1:3]) == ["m1", "m2"]
    assert keys([ids[4]]) == ["m4"]
    assert keys([]) == []
    session.execute(update(models.Signal).where(among(session, models.Signal.id, ids[:2])).values(attempts=3)
                    .execution_options(synchronize_session=False))
    assert keys(ids) == [f"m{i}" for i in range(5)]
    assert sorted(session.scalars(select(models.Signal.attempts).where(models.Signal.id.in_(ids)),
                                  execution_options=NO_AUTOFLUSH)) == [0, 0, 0, 3, 3]


def test_on_postgres_a_batch_is_one_statement_text_whatever_its_size(session):
    if session.get_bind().dialect.name != "postgresql":
        pytest.skip("SQLite has no arrays; its multi-row VALUES costs no driver parse")
    from sqlalchemy import event

    texts: list[str] = []
    connection = session.connection()
    event.listen(connection, "before_cursor_execute", lambda *args: texts.append(args[2]))
    insert_many(session, models.Signal.__table__, _rows(["t1", "t2"]), conflict=["dedupe_key"], returning=["id"])
    insert_many(session, models.Signal.__table__, _rows([f"u{i}" for i in range(300)]), conflict=["dedupe_key"],
                returning=["id"])
    session.execute(select(models.Signal.id).where(among(session, models.Signal.id, [1, 2])))
    session.execute(select(models.Signal.id).where(among(session, models.Signal.id, list(range(300)))))
    assert len(texts) == 4 and texts[0] == texts[1] and texts[2] == texts[3]


def test_insert_many_refuses_rows_that_leave_out_a_column_defaulted_in_python(session):
    rows = _rows(["no-payload"])
    del rows[0]["payload"]  # Signal.payload defaults to {} in Python, not in the database
    with pytest.raises(ValueError, match="payload"):
        insert_many(session, models.Signal.__table__, rows, conflict=["dedupe_key"], returning=["id"])
