from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError, StatementError

from orchestrator import models
from tests.factories import AccountFactory, OwnerFactory


def test_datetimes_come_back_timezone_aware_in_utc(session):
    berlin = timezone(timedelta(hours=1))
    owner = OwnerFactory(out_of_office_until=datetime(2026, 12, 1, 10, 0, tzinfo=berlin))
    session.expire_all()
    loaded = session.get(models.Owner, owner.id)
    assert loaded.out_of_office_until == datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    assert loaded.out_of_office_until.tzinfo == UTC


def test_naive_datetimes_are_refused(session):
    with pytest.raises(StatementError, match="naive datetime"):
        OwnerFactory(out_of_office_until=datetime(2026, 12, 1, 10, 0))


def test_a_dedupe_key_is_stored_once(session):
    account = AccountFactory()
    at = datetime(2026, 11, 1, tzinfo=UTC)
    session.add(models.Signal(type="product.usage", dedupe_key="k1", account_id=account.id,
                              source="webhook", occurred_at=at))
    session.flush()
    session.add(models.Signal(type="product.usage", dedupe_key="k1", account_id=account.id,
                              source="webhook", occurred_at=at))
    with pytest.raises(IntegrityError):
        session.flush()


def test_only_one_version_of_a_playbook_can_be_active(session):
    common = dict(playbook_id="p", name="P", stage="adopt", checksum="x", source_text="",
                  source_path="p.yaml")
    session.add(models.PlaybookVersion(version=1, active=True, **common))
    session.flush()
    session.add(models.PlaybookVersion(version=2, active=False, **common))
    session.flush()
    session.add(models.PlaybookVersion(version=3, active=True, **common))
    with pytest.raises(IntegrityError):
        session.flush()


def test_json_attributes_round_trip(session):
    account = AccountFactory(attributes={"plan": "enterprise", "seats": 120, "tags": ["eu"]})
    session.expire_all()
    loaded = session.scalars(select(models.Account).where(models.Account.id == account.id)).one()
    assert loaded.attributes == {"plan": "enterprise", "seats": 120, "tags": ["eu"]}


def test_owner_availability_respects_out_of_office(session, clock):
    owner = OwnerFactory(out_of_office_until=clock.now() + timedelta(days=2))
    assert not owner.available(clock.now())
    assert owner.available(clock.now() + timedelta(days=3))
    owner.active = False
    assert not owner.available(clock.now() + timedelta(days=3))


def test_flush_only_writes_the_named_models_and_leaves_the_rest_for_the_next_flush(session):
    from orchestrator.db import NO_AUTOFLUSH, flush_only

    owner = OwnerFactory(name="Before")
    account = AccountFactory(name="Before")
    owner.name = "After"
    account.name = "After"
    at = datetime(2026, 11, 1, tzinfo=UTC)
    session.add(models.Signal(type="product.usage", dedupe_key="pending", account_id=account.id, source="webhook",
                              occurred_at=at))

    flush_only(session, models.Owner)

    # Read without the autoflush that would write everything: only the owner was written.
    def stored(statement):
        return session.scalar(statement, execution_options=NO_AUTOFLUSH)
    assert stored(select(models.Owner.name).where(models.Owner.id == owner.id)) == "After"
    assert stored(select(models.Account.name).where(models.Account.id == account.id)) == "Before"
    assert stored(select(models.Signal.id).where(models.Signal.dedupe_key == "pending")) is None
    assert account in session.dirty and len(session.new) == 1

    session.flush()
    assert stored(select(models.Account.name).where(models.Account.id == account.id)) == "After"
    assert stored(select(models.Signal.id).where(models.Signal.dedupe_key == "pending")) is not None


def test_a_savepoint_buffer_drops_what_a_rolled_back_savepoint_added_and_gives_back_what_it_undid(session):
    from orchestrator.db import savepoint_buffer

    with savepoint_buffer(session) as buffer:
        buffer.append("before")
        with session.begin_nested() as kept:
            buffer.append("kept")
            kept.commit()
        with session.begin_nested() as undone:
            buffer.append("undone")
            assert buffer.take() == ["before", "kept", "undone"]  # written inside the savepoint...
            buffer.append("undone too")
            undone.rollback()  # ...and rolled back with it in the database
        buffer.append("after")

        assert buffer.rows == ["before", "kept", "after"]
        # Their insert was undone with the savepoint: the rows still kept are handed out again.
        assert buffer.take() == ["before", "kept", "after"]
        assert buffer.take() == []
        with session.begin_nested() as undone:
            buffer.append("inside")
            undone.rollback()
        assert buffer.take() == []  # written before the savepoint began: not handed out twice
