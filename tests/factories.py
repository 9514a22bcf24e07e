"""Row factories (factory_boy) bound to the current test's session."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import factory
from factory.alchemy import SQLAlchemyModelFactory
from sqlalchemy.orm import Session

from orchestrator import models

_session: Session | None = None


def bind(session: Session | None) -> None:
    """Point every factory at this test's session (None to unbind)."""
    global _session
    _session = session


def _current_session() -> Session:
    assert _session is not None, "factories need the `session` fixture"
    return _session


class _Base(SQLAlchemyModelFactory):
    class Meta:
        abstract = True
        sqlalchemy_session_factory = _current_session
        sqlalchemy_session_persistence = "flush"


class OwnerFactory(_Base):
    class Meta:
        model = models.Owner

    name = factory.Sequence(lambda n: f"Owner {n}")
    email = factory.Sequence(lambda n: f"owner{n}@acme.example")
    role = "csm"
    timezone = "America/New_York"
    working_hours = factory.LazyFunction(dict)
    active = True


class AccountFactory(_Base):
    class Meta:
        model = models.Account

    name = factory.Sequence(lambda n: f"Account {n}")
    domain = factory.Sequence(lambda n: f"account{n}.example")
    segment = "mid"
    arr = Decimal("48000")
    health = 70
    owner = factory.SubFactory(OwnerFactory)
    stage = "acquire"
    stage_entered_at = datetime(2026, 1, 5, tzinfo=UTC)
    attributes = factory.LazyFunction(dict)


class ContactFactory(_Base):
    class Meta:
        model = models.Contact

    account = factory.SubFactory(AccountFactory)
    name = factory.Sequence(lambda n: f"Contact {n}")
    email = factory.Sequence(lambda n: f"contact{n}@customer.example")
    title = "VP Operations"
    role = "champion"
    is_primary = False


class DealFactory(_Base):
    class Meta:
        model = models.Deal

    account = factory.SubFactory(AccountFactory)
    name = factory.Sequence(lambda n: f"Deal {n}")
    amount = Decimal("25000")
    stage = "Closed Won"
    kind = "new"
    is_closed = True
    is_won = True
